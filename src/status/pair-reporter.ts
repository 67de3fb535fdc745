// Who writes an ACTIVE_STANDBY load balancer's status in Kubernetes mode. Both agents of a pair compute the
// status of the load balancer and its children (each from what its own node sees), and both would write them to
// the same status subresources: a merge patch replaces status.nodes whole, so the two views would overwrite each
// other on every publish, and the object would flap between them.
//
// The rule: the node that holds the VIP speaks for the pair. An agent sends the status of a pair (the load
// balancer and every object under it) to the API server when its own node is MASTER, or when it knows of no
// MASTER at all, is not BACKUP and has converged (its own provisioning status is not PENDING_*): then nobody else
// would say that the pair is down, or one node speaks for itself while the other is gone. A BACKUP stays quiet,
// whether or not it talks to its MASTER: VRRP keeps a node BACKUP only while it hears a MASTER's adverts (or, just
// after keepalived started, for one master-down interval, after which it is MASTER or still hears one). A BACKUP
// whose `peers` session is not up yet (a pair just built, a new BACKUP, the peer's HAProxy reloading) sees no
// MASTER, and writing its view then made status.nodes flap between the two views. The MASTER's view includes the
// BACKUP (ready when their HAProxies hold their `peers` session), so status.nodes still shows both nodes.
// status.json on each node keeps its own view of everything.
//
// Split brain (both MASTER) makes both write, each its own view: that is what there is to see.
import type { ObjectStatus } from '../api/v1alpha1/types.js';
import type { StatusFile, StatusFileObject } from './status-file.js';

type Spec = Record<string, unknown> | undefined;

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The load balancer each object of the file belongs to (`<namespace>/<name>`), from the specs it carries. */
export function ownersOf(objects: readonly StatusFileObject[]): Map<StatusFileObject, string> {
  const byName = new Map<string, StatusFileObject>();
  for (const o of objects) byName.set(`${o.kind}/${o.namespace}/${o.name}`, o);
  const specOf = (kind: string, namespace: string, name: string | undefined): Spec =>
    name === undefined ? undefined : (byName.get(`${kind}/${namespace}/${name}`)?.spec as Spec);
  const owners = new Map<StatusFileObject, string>();
  for (const o of objects) {
    const spec = o.spec as Spec;
    let lb: string | undefined;
    switch (o.kind) {
      case 'LoadBalancer':
        lb = o.name;
        break;
      case 'Listener':
      case 'Pool':
        lb = str(spec?.loadBalancer);
        break;
      case 'Member':
      case 'HealthMonitor':
        lb = str(specOf('Pool', o.namespace, str(spec?.pool))?.loadBalancer);
        break;
      case 'L7Policy':
        lb = str(specOf('Listener', o.namespace, str(spec?.listener))?.loadBalancer);
        break;
      case 'L7Rule': {
        const listener = str(specOf('L7Policy', o.namespace, str(spec?.l7Policy))?.listener);
        lb = str(specOf('Listener', o.namespace, listener)?.loadBalancer);
        break;
      }
    }
    if (lb !== undefined) owners.set(o, `${o.namespace}/${lb}`);
  }
  return owners;
}

/** Whether this node speaks for a load balancer whose status it computed (see the rule above). */
export function speaksFor(status: ObjectStatus, spec: unknown, nodeName: string): boolean {
  if ((spec as Spec)?.topology !== 'ACTIVE_STANDBY') return true;
  const nodes = status.nodes;
  if (nodes === undefined || nodes.length === 0) return true;
  if (nodes.some((n) => n.name === nodeName && n.role === 'MASTER')) return true;
  if (nodes.some((n) => n.role === 'MASTER')) return false;
  if (nodes.some((n) => n.name === nodeName && n.role === 'BACKUP')) return false;
  return !status.provisioningStatus.startsWith('PENDING_');
}

/** The part of a status file this node writes to the API server: all but the pairs another node speaks for. */
export function reportedToApi(file: StatusFile, nodeName: string): StatusFile {
  const quiet = new Set<string>();
  for (const o of file.objects) {
    if (o.kind === 'LoadBalancer' && !speaksFor(o.status, o.spec, nodeName)) quiet.add(`${o.namespace}/${o.name}`);
  }
  if (quiet.size === 0) return file;
  const owners = ownersOf(file.objects);
  return { ...file, objects: file.objects.filter((o) => !quiet.has(owners.get(o) ?? '')) };
}
