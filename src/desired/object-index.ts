// The objects of one build, indexed: every kind in namespace/name order (so that "the second one" of a
// conflict is well defined and the output does not depend on input order), and the problems found in them.
import { KINDS, objectId, type AnyObject, type ApiObject, type Kind, type LbKey } from '../api/v1alpha1/types.js';
import type { ObjectProblem } from './model.js';
import { lbKey } from './names.js';

export class Problems {
  readonly #list: ObjectProblem[] = [];

  add(o: AnyObject, reason: ObjectProblem['reason'], message: string, path?: string): void {
    const { namespace, name } = o.metadata;
    this.#list.push({ kind: o.kind, namespace, name, reason, message, ...(path === undefined ? {} : { path }) });
  }

  /** In object order; the problems of one object stay in the order the rules found them. */
  sorted(): ObjectProblem[] {
    return [...this.#list].sort(
      (a, b) => KINDS.indexOf(a.kind) - KINDS.indexOf(b.kind) || compareStrings(a.namespace, b.namespace) || compareStrings(a.name, b.name),
    );
  }
}

export interface Index {
  loadBalancers: ApiObject<'LoadBalancer'>[];
  listeners: ApiObject<'Listener'>[];
  pools: ApiObject<'Pool'>[];
  members: ApiObject<'Member'>[];
  healthMonitors: ApiObject<'HealthMonitor'>[];
  l7Policies: ApiObject<'L7Policy'>[];
  l7Rules: ApiObject<'L7Rule'>[];
  byId: Map<string, AnyObject>;
}

export function indexObjects(objects: readonly AnyObject[], problems: Problems): Index {
  const ix: Index = {
    loadBalancers: [],
    listeners: [],
    pools: [],
    members: [],
    healthMonitors: [],
    l7Policies: [],
    l7Rules: [],
    byId: new Map(),
  };
  for (const o of objects) {
    const id = objectId(o);
    if (ix.byId.has(id)) {
      problems.add(o, 'Conflict', `${o.kind} ${o.metadata.namespace}/${o.metadata.name} is defined more than once`);
      continue;
    }
    ix.byId.set(id, o);
  }
  const sorted = [...ix.byId.values()].sort(compareNames);
  for (const o of sorted) {
    switch (o.kind) {
      case 'LoadBalancer':
        ix.loadBalancers.push(o);
        break;
      case 'Listener':
        ix.listeners.push(o);
        break;
      case 'Pool':
        ix.pools.push(o);
        break;
      case 'Member':
        ix.members.push(o);
        break;
      case 'HealthMonitor':
        ix.healthMonitors.push(o);
        break;
      case 'L7Policy':
        ix.l7Policies.push(o);
        break;
      case 'L7Rule':
        ix.l7Rules.push(o);
        break;
    }
  }
  return ix;
}

export function find<K extends Kind>(ix: Index, kind: K, namespace: string, name: string): ApiObject<K> | undefined {
  return ix.byId.get(`${kind}/${namespace}/${name}`) as ApiObject<K> | undefined;
}

export function keyOf(o: AnyObject): LbKey {
  return lbKey(o.metadata.namespace, o.metadata.name);
}

export function missing(what: string, name: string, namespace: string): string {
  return `${what} "${name}" does not exist in namespace "${namespace}"`;
}

export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareNames(a: AnyObject, b: AnyObject): number {
  return compareStrings(a.metadata.namespace, b.metadata.namespace) || compareStrings(a.metadata.name, b.metadata.name);
}
