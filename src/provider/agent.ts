// The provider inside `nslb run --kubernetes --service-provider`: it runs only while this agent holds the
// Lease nslb-provider in its own namespace, so that among several agents exactly one writes.
import type { KubeConfig } from '@kubernetes/client-node';
import type { PoolMembers } from '../api/v1alpha1/addresspool.js';
import type { Logger } from '../log/logger.js';
import { ServiceProvider, type ProviderEvents } from './controller.js';
import { agentNamespace, LeaderElector } from '../kube/leader.js';
import { PROVIDER_LEASE } from './names.js';

export interface ProviderAgentOptions {
  kubeConfig: KubeConfig;
  /** Only Services of this namespace (all when undefined). */
  namespace?: string;
  nodeName: string;
  withoutClass: boolean;
  members: PoolMembers;
  leaseSeconds: number;
  logger: Logger;
  events: ProviderEvents;
}

export interface ProviderAgent {
  resync(): void;
  stop(): Promise<void>;
  readonly leading: boolean;
}

export function startProviderAgent(opts: ProviderAgentOptions): ProviderAgent {
  const logger = opts.logger.child({ component: 'provider' });
  let provider: ServiceProvider | undefined;
  const elector = new LeaderElector({
    kubeConfig: opts.kubeConfig,
    namespace: agentNamespace(opts.kubeConfig),
    role: 'provider',
    name: PROVIDER_LEASE,
    identity: opts.nodeName,
    leaseSeconds: opts.leaseSeconds,
    logger,
    onStartedLeading: async () => {
      provider = new ServiceProvider({
        kubeConfig: opts.kubeConfig,
        ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
        withoutClass: opts.withoutClass,
        members: opts.members,
        logger,
        events: opts.events,
      });
      // Not awaited: start() waits until every informer has listed, and the Lease must be renewed meanwhile.
      const p = provider;
      void p.start().catch((err: unknown) => logger.error({ err: String(err) }, 'provider: cannot start'));
    },
    onStoppedLeading: async () => {
      const p = provider;
      provider = undefined;
      await p?.stop();
    },
  });
  elector.start();
  return {
    resync: () => provider?.resync(),
    stop: () => elector.stop(),
    get leading() {
      return elector.leading;
    },
  };
}
