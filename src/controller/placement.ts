// Which load balancers this node serves (DESIGN §6): those placed on it (spec.placement.nodes names its
// --node-name), and those placed nowhere (every agent that sees them serves them, as before placement existed).
import type { DesiredLoadBalancer } from '../desired/model.js';

export function servedHere(lb: DesiredLoadBalancer, nodeName: string): boolean {
  return lb.placement === undefined || lb.placement.includes(nodeName);
}
