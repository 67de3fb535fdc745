// The examples in the README and the demo are valid as shipped (TLS material made as the demo makes it).
import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { buildDesired } from '../../src/desired/build.js';
import { ManifestDirectory } from '../../src/sources/file-source.js';

const repo = join(import.meta.dirname, '..', '..');
let dir = '';

afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('examples/', () => {
  it('every document validates and every load balancer builds', async () => {
    dir = await mkdtemp(join(tmpdir(), 'nslb-examples-'));
    await cp(join(repo, 'examples'), dir, { recursive: true, filter: (src) => !src.includes(`${join('examples', 'certs')}`) });
    await promisify(execFile)('bash', [join(repo, 'scripts', 'make-demo-certs.sh'), join(dir, 'certs')]);
    const snapshot = await new ManifestDirectory(dir).read();
    expect(snapshot.issues).toEqual([]);
    const desired = buildDesired(snapshot.objects, { defaultBridge: 'br-int', materials: snapshot.materials });
    expect(desired.problems).toEqual([]);
    expect([...desired.lbs.keys()].sort()).toEqual(['default/dns', 'default/web', 'default/web-l7', 'default/web-tls']);
    expect(desired.lbs.get('default/web-tls')?.listeners[0]?.tls?.sniCertificates).toHaveLength(1);
  });
});
