// Which load balancers this node serves. Today: every one the agent watches (all namespaces, or --namespace).
// Scheduling across nodes (a node label, a lease, a VIP's segment) will change only this function.
import type { DesiredLoadBalancer } from '../desired/model.js';

export function servedHere(_lb: DesiredLoadBalancer, _nodeName: string): boolean {
  return true;
}
