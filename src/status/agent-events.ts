// Pure: what the agent has to tell Kubernetes users as Events, each on the object it is about. From
// - the desired objects' problems (invalid spec, dangling reference: on the object, naming the field);
// - the engine's reconcile outcomes (failure with its hint, provisioned, reloaded, restarted, repaired) and the
//   runtime-API changes of each member;
// - status transitions between two publishes (a member's health check failing or passing again, a pool with
//   no healthy member, a listener whose frontend is down);
// - a load balancer removed from the node (deletion done).
import type { Kind } from '../api/v1alpha1/types.js';
import { parseLbKey } from '../desired/names.js';
import type { Action } from '../plan/actions.js';
import type { AgentEvent, ObjectRef } from './event-correlator.js';
import type { StatusFile } from './status-file.js';

/** `/spec/pool` → `spec.pool`, `/spec/allowedCidrs/0` → `spec.allowedCidrs[0]` (kubectl's way of naming a field). */
export function fieldOf(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const p = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  }
  return out;
}

/** A problem of one object (desired/build.ts's ObjectProblem): a Warning on it, naming the field. */
export function problemEvent(p: { kind: Kind; namespace: string; name: string; reason: string; message: string; path?: string }): AgentEvent {
  const field = p.path === undefined || p.path === '' ? '' : `${fieldOf(p.path)}: `;
  return {
    regarding: { kind: p.kind, namespace: p.namespace, name: p.name },
    type: 'Warning',
    reason: p.reason,
    action: 'Validate',
    note: `${field}${p.message}`,
  };
}

/** An object the schema refuses ("/spec/port: must be …; /spec/x: …"): a Warning with its fields named. */
export function invalidObjectEvent(o: { kind: Kind; namespace: string; name: string; message: string }): AgentEvent {
  const note = o.message.replace(/(^|; )(\/[^:;\s]*): /g, (_, sep: string, pointer: string) => `${sep}${fieldOf(pointer)}: `);
  return { regarding: { kind: o.kind, namespace: o.namespace, name: o.name }, type: 'Warning', reason: 'InvalidSpec', action: 'Validate', note };
}

/** What the controller reports after a reconcile (its onEvent). */
export interface ReconcileReport {
  key: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  actions?: readonly Action[];
}

function loadBalancer(key: string): ObjectRef {
  const { namespace, name } = parseLbKey(key);
  return { kind: 'LoadBalancer', namespace, name };
}

// `set server pool.<pool>/<member> weight 0`: the runtime API names a member by its backend and server.
const RUNTIME_COMMAND = /^(add|del|set|enable|disable) (server|health) pool\.([^/\s]+)\/(\S+)\s*(.*)$/;

/** Each member's runtime-API change, in words. Removals are left out: their object is gone. */
export function runtimeChanges(actions: readonly Action[]): Map<string, string[]> {
  const byMember = new Map<string, string[]>();
  for (const a of actions) {
    if (a.kind !== 'haproxy.runtime') continue;
    const removed = new Set<string>();
    for (const { command } of a.commands) {
      const m = RUNTIME_COMMAND.exec(command);
      if (m === null) continue;
      const [, verb, what, pool = '', member = '', rest = ''] = m;
      let words: string | undefined;
      if (verb === 'add' && what === 'server') words = `added to pool ${pool}`;
      else if (verb === 'del' && what === 'server') removed.add(member);
      else if (verb === 'set') {
        const weight = /^weight (\d+)/.exec(rest);
        const addr = /^addr (\S+) port (\d+)/.exec(rest);
        if (weight !== null) words = `weight set to ${weight[1]}`;
        else if (addr !== null) words = `address set to ${addr[1]} port ${addr[2]}`;
        else if (rest === 'state maint') words = 'disabled (maintenance)';
        else if (rest === 'state ready') words = 'enabled';
      }
      if (words === undefined) continue;
      const list = byMember.get(member) ?? [];
      if (!list.includes(words)) list.push(words);
      byMember.set(member, list);
    }
    for (const member of removed) byMember.delete(member);
  }
  return byMember;
}

/** The Events of one reconcile report. */
export function reconcileEvents(r: ReconcileReport, node: string): AgentEvent[] {
  const lb = loadBalancer(r.key);
  if (r.type === 'Warning' || r.reason === 'Waiting') return [{ regarding: lb, type: r.type, reason: r.reason, action: 'Reconcile', note: r.message }];
  if (r.reason === 'Provisioned' || r.actions === undefined) return [{ regarding: lb, type: 'Normal', reason: r.reason, action: 'Provision', note: r.message }];
  const events: AgentEvent[] = [];
  const kinds = new Set(r.actions.map((a) => a.kind));
  const written = r.actions.find((a) => a.kind === 'haproxy.writeConfig');
  const started = r.actions.find((a) => a.kind === 'haproxy.start');
  if (started !== undefined) {
    events.push({
      regarding: lb,
      type: 'Normal',
      reason: 'Restarted',
      action: 'Reconcile',
      note: `HAProxy started again on ${node} (${started.reason}): ${r.message}`,
    });
  } else if (kinds.has('haproxy.reload')) {
    const why = written?.kind === 'haproxy.writeConfig' ? ` (configuration ${written.reason})` : '';
    events.push({ regarding: lb, type: 'Normal', reason: 'Reloaded', action: 'Reload', note: `HAProxy reloaded on ${node}${why}: ${r.message}` });
  }
  const { namespace } = lb;
  for (const [member, words] of runtimeChanges(r.actions)) {
    events.push({
      regarding: { kind: 'Member', namespace, name: member },
      type: 'Normal',
      reason: 'RuntimeUpdated',
      action: 'RuntimeUpdate',
      note: `${words.join(', ')} through HAProxy's runtime API on ${node}, without a reload`,
    });
  }
  if (kinds.has('keepalived.switchOver')) {
    events.push({
      regarding: lb,
      type: 'Normal',
      reason: 'SwitchedOver',
      action: 'Drain',
      note: `${node} is drained: it handed the MASTER role to the other node of the pair (keepalived stays up here, BACKUP, until the scheduler moves this node's slot)`,
    });
  }
  // Anything else (the VIP port or link repaired, a netns made again): the load balancer was updated.
  const other = r.actions.some((a) => !a.kind.startsWith('haproxy.') && a.kind !== 'keepalived.switchOver');
  if (other && started === undefined) events.push({ regarding: lb, type: 'Normal', reason: 'Updated', action: 'Reconcile', note: r.message });
  return events;
}

/** Deletion done: the load balancer is gone from the node, its finalizer is about to be dropped. */
export function deletedEvent(key: string, node: string): AgentEvent {
  return {
    regarding: loadBalancer(key),
    type: 'Normal',
    reason: 'Deleted',
    action: 'Delete',
    note: `removed from ${node}: network namespace, OVS port and HAProxy are gone; releasing the finalizer`,
  };
}

/** The part of a status file's object that transitions are read from. */
interface Seen {
  operatingStatus: string;
  provisioningStatus: string;
}

export type StatusMemory = Map<string, Seen>;

/**
 * Events for health transitions since the previous status file (`memory`, updated in place). Only transitions
 * seen by this agent: an object's first status is remembered, not reported (a restarted agent must not
 * repeat what its predecessor said).
 */
export function transitionEvents(memory: StatusMemory, file: StatusFile): AgentEvent[] {
  const events: AgentEvent[] = [];
  const present = new Set<string>();
  for (const o of file.objects) {
    const id = `${o.kind}/${o.namespace}/${o.name}`;
    present.add(id);
    const now: Seen = { operatingStatus: o.status.operatingStatus, provisioningStatus: o.status.provisioningStatus };
    const before = memory.get(id);
    memory.set(id, now);
    // Only objects the node serves: an object in ERROR for its spec is reported by its problem.
    if (before === undefined || now.provisioningStatus !== 'ACTIVE' || before.provisioningStatus !== 'ACTIVE') continue;
    const down = now.operatingStatus === 'ERROR';
    const wasDown = before.operatingStatus === 'ERROR';
    if (down === wasDown) continue;
    const regarding: ObjectRef = { kind: o.kind as Kind, namespace: o.namespace, name: o.name };
    const check = o.stats?.checkStatus?.replace(/^\*\s*/, '');
    switch (o.kind) {
      case 'Member':
        events.push(
          down
            ? {
                regarding,
                type: 'Warning',
                reason: 'MemberDown',
                action: 'HealthCheck',
                note: `health check failing${check === undefined || check === '' ? '' : ` (${check})`}: no traffic is sent to it`,
              }
            : { regarding, type: 'Normal', reason: 'MemberUp', action: 'HealthCheck', note: 'health check passing again: traffic is sent to it' },
        );
        break;
      case 'Pool':
        events.push(
          down
            ? {
                regarding,
                type: 'Warning',
                reason: 'NoHealthyMembers',
                action: 'HealthCheck',
                note: 'every member of the pool is down: its listeners answer 503 or close connections',
              }
            : { regarding, type: 'Normal', reason: 'MembersHealthy', action: 'HealthCheck', note: 'the pool has healthy members again' },
        );
        break;
      case 'Listener':
        events.push(
          down
            ? { regarding, type: 'Warning', reason: 'ListenerDown', action: 'HealthCheck', note: "HAProxy's frontend for this listener is not open" }
            : { regarding, type: 'Normal', reason: 'ListenerUp', action: 'HealthCheck', note: "HAProxy's frontend for this listener is open again" },
        );
        break;
      default:
        break;
    }
  }
  for (const id of memory.keys()) if (!present.has(id)) memory.delete(id);
  return events;
}
