// Fault injection for the crash tests: NSLB_CRASH_AT=N makes the agent SIGKILL itself at the N-th crash point
// (before and after every action it applies). Unset in production; reading it costs one env lookup.
let passed = 0;
const at = Number.parseInt(process.env.NSLB_CRASH_AT ?? '', 10);

export function crashPoint(): void {
  if (!Number.isInteger(at)) return;
  passed++;
  if (passed === at) process.kill(process.pid, 'SIGKILL');
}
