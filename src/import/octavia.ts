// `nslb import octavia FILE…`: Octavia's JSON → nslb objects. Pure: JSON values in, objects and warnings out.
//
// Octavia's data comes in several shapes, and a migration usually has a mix of them:
//   - the v2 API's responses: `{"loadbalancer": {…}}`, `{"listeners": […]}`, `{"members": […]}`, `{"rules": […]}`…
//     (GET /v2/lbaas/loadbalancers/{id}, /listeners, /pools, /pools/{id}/members, /healthmonitors,
//     /l7policies, /l7policies/{id}/rules), and fully populated create bodies (objects nested in objects);
//   - the status tree (`GET …/loadbalancers/{id}/status` or `openstack loadbalancer status show`): the only
//     place that says which pool a member belongs to when members are listed on their own;
//   - the openstack CLI's `show -f json` (a bare object) and `list -f json` (a bare array, fewer columns).
// Every object is indexed by id and its relations are taken from whichever side names them. Each nslb field is
// mapped from its Octavia field; a field nslb has no place for produces a warning naming the object and the
// field. An object that cannot be built (a required field missing, UDP, a value the schema refuses) is skipped
// with a warning, and so is everything under it: the output always validates.
import type { AnyObject } from '../api/v1alpha1/types.js';
import { ImportContext } from './octavia-context.js';
import { importL7Policy, importLeftoverRules } from './octavia-l7.js';
import { importListener } from './octavia-listener.js';
import { importLoadBalancer } from './octavia-loadbalancer.js';
import { importHealthMonitor, importMember, importPool } from './octavia-pool.js';
import { collect, Collector, type OctaviaInput } from './octavia-read.js';

export interface ImportOptions {
  /** metadata.namespace of every object (default `default`). */
  namespace?: string;
}

export interface ImportResult {
  objects: AnyObject[];
  warnings: string[];
  /** Octavia objects that could not be imported (each also has a warning). */
  skipped: number;
}

/** Octavia JSON documents → nslb objects (schema-valid), warnings for what does not carry over. */
export function importOctavia(inputs: readonly OctaviaInput[], opts: ImportOptions = {}): ImportResult {
  const c = new Collector();
  for (const input of inputs) collect(c, input);
  const cx = new ImportContext(c, opts.namespace ?? 'default');
  // Parents first; pools before listeners (defaultPool) and policies (redirectPool).
  for (const r of cx.recsOf('loadbalancer')) importLoadBalancer(cx, r);
  for (const r of cx.recsOf('pool')) importPool(cx, r);
  for (const r of cx.recsOf('listener')) importListener(cx, r);
  for (const r of cx.recsOf('member')) importMember(cx, r);
  for (const r of cx.recsOf('healthmonitor')) importHealthMonitor(cx, r);
  for (const r of cx.recsOf('l7policy')) importL7Policy(cx, r);
  importLeftoverRules(cx);
  return { objects: cx.objects, warnings: cx.warnings, skipped: cx.skipped };
}
