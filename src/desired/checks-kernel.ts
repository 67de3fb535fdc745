// The cross-object rules of DESIGN §8's protocols: UDP and SCTP listeners and pools (forwarded by the kernel,
// checked by HAProxy), and PROMETHEUS listeners (HAProxy's exporter). Like checks.ts, each adds what it finds
// to `problems` and never throws.
import { KERNEL_ALGORITHMS, KERNEL_PROTOCOLS } from './defaults.js';
import { find, type Index, type Problems } from './object-index.js';

/** A UDP flow's idle timeout comes from timeouts.clientData, in whole seconds (conntrack's unit). */
export const MIN_KERNEL_IDLE_MS = 1_000;

/** Monitors a UDP or SCTP pool may have: HAProxy checks the member, the kernel forwards. */
const KERNEL_MONITORS: Readonly<Record<'UDP' | 'SCTP', readonly string[]>> = {
  UDP: ['UDP-CONNECT', 'PING', 'TCP', 'HTTP'],
  SCTP: ['SCTP', 'PING', 'TCP', 'HTTP'],
};

export function checkKernelProtocols(ix: Index, problems: Problems, sctpUnsupported?: string): void {
  for (const l of ix.listeners) {
    const { spec } = l;
    // Validated and rendered as anywhere else, but not applied half: the load balancer keeps what it had.
    if (spec.protocol === 'SCTP' && sctpUnsupported !== undefined) {
      problems.add(l, 'NotSupported', `SCTP listeners cannot be served on this node: ${sctpUnsupported}`, '/spec/protocol');
    }
    if (KERNEL_PROTOCOLS.has(spec.protocol)) {
      if ((spec.connectionLimit ?? -1) !== -1) {
        problems.add(
          l,
          'NotSupported',
          `is not enforced on ${spec.protocol} listeners (the kernel forwards them, flow by flow); leave it at -1`,
          '/spec/connectionLimit',
        );
      }
      const idle = spec.timeouts?.clientData;
      if (idle !== undefined && idle < MIN_KERNEL_IDLE_MS) {
        problems.add(
          l,
          'InvalidSpec',
          `is a ${spec.protocol} flow's idle timeout, kept by conntrack in whole seconds: at least ${MIN_KERNEL_IDLE_MS} (got ${idle})`,
          '/spec/timeouts/clientData',
        );
      }
    }
  }
  for (const p of ix.pools) {
    const { spec } = p;
    const kernel = KERNEL_PROTOCOLS.has(spec.protocol);
    if (kernel && !(KERNEL_ALGORITHMS as readonly string[]).includes(spec.lbAlgorithm)) {
      problems.add(
        p,
        'NotSupported',
        `${spec.lbAlgorithm} is not available for ${spec.protocol} pools: the kernel balances flows without counting them per member; use ${KERNEL_ALGORITHMS.join(', ')}`,
        '/spec/lbAlgorithm',
      );
    }
    if (!kernel && spec.lbAlgorithm === 'SOURCE_IP_PORT') {
      problems.add(p, 'InvalidSpec', `SOURCE_IP_PORT is for UDP and SCTP pools (protocol is ${spec.protocol})`, '/spec/lbAlgorithm');
    }
    if (kernel && spec.sessionPersistence !== undefined && spec.sessionPersistence.type !== 'SOURCE_IP') {
      problems.add(
        p,
        'InvalidSpec',
        `${spec.sessionPersistence.type} persistence needs HTTP; a ${spec.protocol} pool can only stick by SOURCE_IP`,
        '/spec/sessionPersistence/type',
      );
    }
    if (kernel && spec.tls?.enabled === true) {
      problems.add(
        p,
        'InvalidSpec',
        `TLS to members is not available for ${spec.protocol} pools (the kernel forwards the packets as they are)`,
        '/spec/tls/enabled',
      );
    }
  }
  for (const hm of ix.healthMonitors) {
    const pool = find(ix, 'Pool', hm.metadata.namespace, hm.spec.pool);
    if (pool === undefined) continue;
    const protocol = pool.spec.protocol;
    if (protocol === 'UDP' || protocol === 'SCTP') {
      const allowed = KERNEL_MONITORS[protocol];
      if (!allowed.includes(hm.spec.type)) {
        problems.add(hm, 'InvalidSpec', `a ${protocol} pool can be checked by ${allowed.join(', ')} (got ${hm.spec.type})`, '/spec/type');
      }
    } else if (hm.spec.type === 'UDP-CONNECT' || hm.spec.type === 'SCTP') {
      problems.add(
        hm,
        'InvalidSpec',
        `${hm.spec.type} monitors are for ${hm.spec.type === 'SCTP' ? 'SCTP' : 'UDP'} pools (pool "${pool.metadata.name}" is ${protocol})`,
        '/spec/type',
      );
    }
  }
}
