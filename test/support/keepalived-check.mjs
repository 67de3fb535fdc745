// `keepalived -t` for golden configs, run as `unshare --net -- node keepalived-check.mjs IFACES FILE…`: in a
// private network namespace (nothing shared is touched) it creates the interfaces the configs name, since
// keepalived -t refuses a config whose interface it cannot see, then checks each file. Prints JSON:
// [{file, code, output}].
import { execFileSync, spawnSync } from 'node:child_process';

const [ifaces = '', ...files] = process.argv.slice(2);
for (const [i, name] of ifaces.split(',').filter(Boolean).entries()) {
  // No dummy driver on every kernel: a veth pair whose peer has a throwaway name.
  execFileSync('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', `kchk${i}`]);
  execFileSync('ip', ['link', 'set', 'dev', name, 'up']);
}
const results = files.map((file) => {
  const r = spawnSync('keepalived', ['-t', '-f', file], { encoding: 'utf8', timeout: 10_000 });
  return { file, code: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
});
process.stdout.write(JSON.stringify(results));
