// Plain counters the engine bumps as it works; /metrics (prom-client) reads them when scraped. Kept free
// of prom-client so drivers and `nslb` one-shot commands do not load it.

export const engineCounters = {
  /** HAProxy reloads signalled (SIGUSR2 to the master), by outcome. */
  haproxyReloads: { ok: 0, failed: 0 },
  /** HAProxy processes started (new load balancer, or a restart). */
  haproxyStarts: 0,
  /** Runtime-API changes applied without a reload (one per command sent: add/del server, weight, state…). */
  runtimeUpdates: 0,
  /** Runtime-API change sets that HAProxy refused, so a reload was done instead. */
  runtimeFallbacks: 0,
};

/** Processes spawned, by the program's base name (`ip`, `ovs-vsctl`, `haproxy`…). */
export const spawnsByTool = new Map<string, number>();
