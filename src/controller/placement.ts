// Which load balancers this node serves (DESIGN §6): those placed on it (spec.placement.nodes names its
// --node-name), and those placed nowhere (every agent that sees them serves them, as before placement existed).
import type { AnyObject, LbKey } from '../api/v1alpha1/types.js';
import { lbKey } from '../desired/names.js';

/** The load balancers of the snapshot that are placed, but not on this node. */
export function placedElsewhere(objects: readonly AnyObject[], nodeName: string): Set<LbKey> {
  const keys = new Set<LbKey>();
  for (const o of objects) {
    if (o.kind !== 'LoadBalancer') continue;
    const nodes = o.spec.placement?.nodes;
    if (nodes !== undefined && !nodes.includes(nodeName)) keys.add(lbKey(o.metadata.namespace, o.metadata.name));
  }
  return keys;
}
