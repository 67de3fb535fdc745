// What an operator should do about a failed command, in words, from what the tool said.
import { CommandError } from './errors.js';

const HINTS: { tool: RegExp; said: RegExp; hint: (m: RegExpMatchArray) => string; spawnFailed?: boolean }[] = [
  {
    tool: /ovs-vsctl/,
    said: /database connection failed|No such file or directory.*db\.sock|unix:.*db\.sock/i,
    hint: () => 'Open vSwitch is not running: start ovsdb-server and ovs-vswitchd (scripts/setup-node.sh does)',
  },
  {
    tool: /ovs-vsctl/,
    said: /no bridge named (\S+)/i,
    hint: (m) => `the OVS bridge ${m[1] ?? ''} does not exist: create it (ovs-vsctl add-br ${m[1] ?? 'BRIDGE'}) or set vip.bridge / --bridge`,
  },
  { tool: /ovs-vsctl/, said: /timed out|Alarm clock/i, hint: () => 'ovs-vswitchd does not answer: is it running? (ovs-appctl -t ovs-vswitchd version)' },
  {
    tool: /haproxy/,
    said: /ENOENT|failed to run/,
    hint: () => 'haproxy is not installed or not on PATH (apt-get install haproxy, or set NSLB_HAPROXY)',
    spawnFailed: true,
  },
  // Started through `ip netns exec`, which is found: its exec of haproxy is what fails.
  {
    tool: /haproxy/,
    said: /exec of "[^"]*haproxy" failed: No such file or directory/,
    hint: () => 'haproxy is not installed or not on PATH (apt-get install haproxy, or set NSLB_HAPROXY)',
  },
  {
    tool: /haproxy/,
    said: /cannot bind socket|Address already in use/i,
    hint: () => "a VIP port is already in use in the load balancer's netns: another process is bound to it",
  },
  {
    tool: /^ip$/,
    said: /Cannot find device "?(\w+)/i,
    hint: (m) => `the device ${m[1] ?? ''} vanished (deleted by hand, or OVS restarted); the next resync recreates it`,
  },
];

/** The error, with a hint prepended when one applies. */
export function explain(err: unknown): Error {
  if (!(err instanceof CommandError)) return err instanceof Error ? err : new Error(String(err));
  const tool = (err.argv.find((a) => /haproxy|ovs-vsctl/.test(a)) ?? err.argv[0] ?? '').split('/').pop() ?? '';
  for (const h of HINTS) {
    const m = err.message.match(h.said);
    if (h.spawnFailed === true && err.exitCode !== undefined) continue;
    if (h.tool.test(tool) && m !== null) return new Error(`${h.hint(m)} (${err.message})`, { cause: err });
  }
  return err;
}
