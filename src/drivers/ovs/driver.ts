// Open vSwitch as one object of the node driver: it holds the OVSDB monitor session (monitor.ts), through which
// an observation asks no process, and merges the port additions of load balancers reconciled at once into one
// `ovs-vsctl` transaction (exec/batcher.ts). The argv builders and parsers are in ovs.ts.
import { resolve } from 'node:path';
import { netnsOfKey } from '../../desired/names.js';
import { Batcher } from '../../exec/batcher.js';
import { Coalescer } from '../../loop/coalescer.js';
import type { Runner } from '../../exec/run.js';
import type { Action } from '../../plan/actions.js';
import { OvsMonitor } from './monitor.js';
import {
  addPortOperations,
  addPortsCommitted,
  argvAddPorts,
  argvDeletePorts,
  deletePort,
  ensurePort,
  observeOvs,
  type AddPort,
  type ObservedOvs,
} from './ovs.js';

export type OvsAction = Extract<Action, { kind: `ovs.${string}` }>;

export class OvsDriver {
  readonly monitor = new OvsMonitor();
  readonly #run: Runner;
  readonly #stateDir: string;
  readonly #observe: Coalescer<ObservedOvs>;
  readonly #addPort: Batcher<AddPort>;
  readonly #deletePort: Batcher<string>;

  constructor(run: Runner, stateDir: string) {
    this.#run = run;
    this.#stateDir = stateDir;
    this.#observe = new Coalescer(() => this.monitor.read(() => observeOvs(run)));
    this.#addPort = new Batcher(
      async (ports) => {
        if (!(await this.#addOnSession(ports))) await run(argvAddPorts(ports));
      },
      async (p) => {
        if (!(await this.#addOnSession([p]))) await ensurePort(run, p);
      },
    );
    // Deletions of load balancers removed together: one transaction (`--if-exists` makes a replay harmless).
    this.#deletePort = new Batcher(
      async (ifaces) => void (await run(argvDeletePorts(ifaces))),
      (iface) => deletePort(run, iface),
      { serial: true },
    );
  }

  /**
   * New ports added by a transaction on the monitor's OVSDB session, without a process. Only ports the monitor
   * knows nothing of: anything else (a row to update, a session that is down, a transaction that did not go
   * through or whose answer was lost) is left to ovs-vsctl --may-exist, which is idempotent over whatever the
   * transaction did.
   */
  async #addOnSession(ports: readonly AddPort[]): Promise<boolean> {
    if (!this.monitor.active || ports.some((p) => this.monitor.hasPortNamed(p.iface))) return false;
    const results = await this.monitor.transact(addPortOperations(ports));
    return results !== undefined && addPortsCommitted(results, ports);
  }

  /** Bridges and nslb's ports: from the monitor, or one `ovs-vsctl` shared by the callers that ask at once. */
  observe(): Promise<ObservedOvs> {
    return this.#observe.run();
  }

  /**
   * The port was added with --no-wait: ovs-vswitchd makes its device when it gets to it, and it must be done
   * setting it up (an OpenFlow port number) before the device leaves the host.
   */
  async waitForDevice(iface: string, timeoutMs: number): Promise<void> {
    await this.monitor.waitForOfport(iface, timeoutMs);
  }

  /** We changed OVS: the next observation waits until the monitor has seen it. */
  changed(): void {
    this.monitor.invalidate();
  }

  async apply(a: OvsAction): Promise<void> {
    switch (a.kind) {
      case 'ovs.addPort':
        if (a.recreate) await deletePort(this.#run, a.iface);
        return this.#addPort.submit({
          stateDir: resolve(this.#stateDir),
          bridge: a.bridge,
          iface: a.iface,
          lb: a.lb,
          mac: a.mac,
          // No Neutron port here: the netns name is this port's stable, unique identity.
          ifaceId: a.network === undefined ? netnsOfKey(a.lb) : `${netnsOfKey(a.lb)}-${a.network}`,
          ...(a.vlan === undefined ? {} : { vlan: a.vlan }),
        });
      case 'ovs.deletePort':
        return this.#deletePort.submit(a.iface);
    }
  }
}
