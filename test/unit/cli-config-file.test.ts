import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkMode, diffFlags, fileKey, flagName, FlagsFileError, mergeFlags, parseFlagsFile, readFlagsFile } from '../../src/cli/config-file.js';
import type { RunFlags } from '../../src/cli/flags.js';

const base: RunFlags = {
  stateDir: '/var/lib/nslb',
  bridge: 'br-int',
  nodeName: 'node-1',
  listen: '127.0.0.1:9910',
  resync: 30,
  concurrency: 4,
  logLevel: 'info',
  statusInterval: 1000,
  kernelLimits: 'raise',
  kubeApiQps: 50,
  kubeApiBurst: 100,
};

describe('nslb run --config: the flags file', () => {
  it('reads KEY=VALUE lines with comments, blank lines and quotes', () => {
    const text = [
      '# nslb flags',
      '; also a comment',
      '',
      'NSLB_WATCH=/etc/nslb/lb.d',
      '  NSLB_LOG_LEVEL = "debug"  ',
      "NSLB_RESYNC='10'",
      'NSLB_CONCURRENCY=8',
      'NSLB_STATUS_INTERVAL=500',
      'NSLB_STATE_DIR=/var/lib/nslb',
      'NSLB_BRIDGE=br-ex',
      'NSLB_LISTEN=[::1]:9910',
      'NSLB_NODE_NAME=net-1',
      'NSLB_KUBERNETES=false',
      'NSLB_KUBE_API_QPS=12.5',
      'NSLB_KUBE_API_BURST=30',
    ].join('\n');
    expect(parseFlagsFile(text, 'f.env')).toEqual({
      watch: '/etc/nslb/lb.d',
      logLevel: 'debug',
      resync: 10,
      concurrency: 8,
      statusInterval: 500,
      stateDir: '/var/lib/nslb',
      bridge: 'br-ex',
      listen: '[::1]:9910',
      nodeName: 'net-1',
      kubernetes: false,
      kubeApiQps: 12.5,
      kubeApiBurst: 30,
    });
  });

  it('ignores the process environment (non-NSLB_ keys, NSLB_HAPROXY) that systemd reads from the same file', () => {
    expect(parseFlagsFile('PATH=/usr/sbin:/usr/bin\nNODE_OPTIONS=--max-old-space-size=256\nNSLB_HAPROXY=/usr/sbin/haproxy\n', 'f')).toEqual({});
  });

  it.each([
    ['NSLB_LOG_LEVEL=loud', 'f.env:1: NSLB_LOG_LEVEL: must be one of trace, debug, info, warn, error, fatal, silent (got "loud")'],
    ['\nNSLB_RESYNC=0', 'f.env:2: NSLB_RESYNC: --resync must be a positive integer (got "0")'],
    ['NSLB_CONCURRENCY=two', 'f.env:1: NSLB_CONCURRENCY: --concurrency must be a positive integer (got "two")'],
    ['NSLB_LISTEN=9910', 'f.env:1: NSLB_LISTEN: --listen must be HOST:PORT (got "9910")'],
    ['NSLB_LOGLEVEL=debug', /^f\.env:1: unknown key NSLB_LOGLEVEL; allowed: NSLB_WATCH, .*NSLB_LOG_LEVEL/],
    ['NSLB_LOG_LEVEL=info\nNSLB_LOG_LEVEL=debug', 'f.env:2: NSLB_LOG_LEVEL is already set on line 1'],
    ['--log-level debug', /^f\.env:1: expected KEY=VALUE \(e\.g\. NSLB_LOG_LEVEL=info\)/],
    ['NSLB_WATCH="/a"b"', 'f.env:1: a value may be wrapped in one pair of quotes but contain no quotes or backslashes'],
    ['NSLB_WATCH=', 'f.env:1: NSLB_WATCH: a directory must not be empty'],
    ['NSLB_KUBERNETES=maybe', 'f.env:1: NSLB_KUBERNETES: must be true or false (got "maybe")'],
    ['NSLB_KUBE_API_QPS=0', 'f.env:1: NSLB_KUBE_API_QPS: --kube-api-qps must be a positive number (got "0")'],
    ['NSLB_KUBE_API_BURST=2.5', 'f.env:1: NSLB_KUBE_API_BURST: --kube-api-burst must be a positive integer (got "2.5")'],
  ])('refuses %j with file, line and what is allowed', (text, message) => {
    expect(() => parseFlagsFile(text, 'f.env')).toThrow(FlagsFileError);
    expect(() => parseFlagsFile(text, 'f.env')).toThrow(message);
  });

  it('says so when the file cannot be read', async () => {
    await expect(readFlagsFile('/nonexistent/nslb.env')).rejects.toThrow('/nonexistent/nslb.env: cannot read the flags file (ENOENT)');
  });

  it('the command line wins over the file; the file wins over defaults; a key removed from the file falls back', () => {
    const file = parseFlagsFile('NSLB_LOG_LEVEL=debug\nNSLB_RESYNC=5\nNSLB_WATCH=/w\n', 'f');
    const merged = mergeFlags({ ...base, resync: 7 }, file, new Set(['resync']));
    expect(merged).toEqual({ ...base, resync: 7, logLevel: 'debug', watch: '/w' });
    expect(mergeFlags(base, parseFlagsFile('NSLB_WATCH=/w', 'f'), new Set())).toEqual({ ...base, watch: '/w' });
  });

  it('tells the flags a running agent applies from those that need a restart', () => {
    const next = {
      ...base,
      logLevel: 'debug',
      resync: 5,
      concurrency: 2,
      statusInterval: 200,
      stateDir: '/elsewhere',
      watch: '/w',
      kubeApiQps: 5,
      kubeApiBurst: 10,
    };
    const { live, restart } = diffFlags({ ...base, watch: '/v' }, next);
    expect(live.sort()).toEqual(['concurrency', 'kubeApiBurst', 'kubeApiQps', 'logLevel', 'resync', 'statusInterval']);
    expect(restart.sort()).toEqual(['stateDir', 'watch']);
    expect(diffFlags(base, { ...base })).toEqual({ live: [], restart: [] });
  });

  it('names flags as the command line and the file spell them', () => {
    expect(flagName('statusInterval')).toBe('--status-interval');
    expect(fileKey('statusInterval')).toBe('NSLB_STATUS_INTERVAL');
    expect(fileKey('stateDir')).toBe('NSLB_STATE_DIR');
  });

  it('needs exactly one of --watch and --kubernetes after merging', () => {
    expect(() => checkMode(base)).toThrow('nslb run needs --watch DIR');
    expect(() => checkMode({ ...base, watch: '/w', kubernetes: true })).toThrow('exclude each other');
    expect(() => checkMode({ ...base, watch: '/w', kubernetes: false })).not.toThrow();
  });

  it('deploy/nslb.env, the file the systemd unit ships with, parses', async () => {
    const text = await readFile(join(import.meta.dirname, '..', '..', 'deploy', 'nslb.env'), 'utf8');
    const flags = parseFlagsFile(text, 'deploy/nslb.env');
    expect(() => checkMode(mergeFlags(base, flags, new Set()))).not.toThrow();
  });
});
