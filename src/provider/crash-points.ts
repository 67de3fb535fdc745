// Fault injection for the provider's crash tests: NSLB_PROVIDER_CRASH_AT=N makes the agent SIGKILL itself at the
// provider's N-th API write (allocation, objects, status, finalizer), counted apart from the engine's crash
// points (controller/crash-points.ts) so that a test can crash it whatever the engine does meanwhile.
let passed = 0;
const at = Number.parseInt(process.env.NSLB_PROVIDER_CRASH_AT ?? '', 10);

export function providerCrashPoint(): void {
  if (!Number.isInteger(at)) return;
  passed++;
  if (passed === at) process.kill(process.pid, 'SIGKILL');
}
