// A throw-away PKI for TLS tests, made with the openssl CLI: CAs, server and client certificates, expired
// ones, revocations and CRLs. EC P-256 keys: quick to make, and every TLS stack in the tests takes them.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface Leaf {
  name: string;
  certFile: string;
  keyFile: string;
}

export interface LeafOptions {
  /** subjectAltName DNS names; none when omitted. */
  dnsNames?: string[];
  /** serverAuth (default) or clientAuth. */
  usage?: 'server' | 'client';
  /** Valid from 2020-01-01 to 2020-01-02: long expired. */
  expired?: boolean;
}

export class TestCa {
  readonly certFile: string;
  readonly keyFile: string;
  readonly #config: string;

  private constructor(
    readonly dir: string,
    readonly name: string,
  ) {
    this.certFile = join(dir, 'ca.pem');
    this.keyFile = join(dir, 'ca.key');
    this.#config = join(dir, 'ca.cnf');
  }

  /** A new CA in `dir` (created) with CN = name. */
  static async create(dir: string, name: string): Promise<TestCa> {
    await mkdir(join(dir, 'issued'), { recursive: true, mode: 0o700 });
    const ca = new TestCa(dir, name);
    await run('openssl', [
      'req',
      '-x509',
      ...EC_KEY,
      '-keyout',
      ca.keyFile,
      '-out',
      ca.certFile,
      '-days',
      '3',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    await writeFile(join(dir, 'index.txt'), '');
    await writeFile(join(dir, 'crlnumber'), '01\n');
    await writeFile(join(dir, 'serial'), `${randomBytes(8).toString('hex')}\n`);
    await writeFile(
      ca.#config,
      [
        '[ca]',
        'default_ca = d',
        '[d]',
        `database = ${join(dir, 'index.txt')}`,
        `crlnumber = ${join(dir, 'crlnumber')}`,
        `serial = ${join(dir, 'serial')}`,
        `new_certs_dir = ${join(dir, 'issued')}`,
        'default_md = sha256',
        'default_crl_days = 3',
        'policy = p',
        'unique_subject = no',
        'copy_extensions = none',
        '[p]',
        'commonName = supplied',
        '',
      ].join('\n'),
    );
    return ca;
  }

  /** A certificate with CN = name signed by this CA. */
  async issue(name: string, options: LeafOptions = {}): Promise<Leaf> {
    const base = join(this.dir, name.replace(/[^A-Za-z0-9.-]/g, '_'));
    await run('openssl', ['req', '-new', ...EC_KEY, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${name}`]);
    const ext = [
      ...(options.dnsNames && options.dnsNames.length > 0 ? [`subjectAltName=${options.dnsNames.map((n) => `DNS:${n}`).join(',')}`] : []),
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature',
      `extendedKeyUsage=${options.usage === 'client' ? 'clientAuth' : 'serverAuth'}`,
      '',
    ].join('\n');
    await writeFile(`${base}.ext`, ext);
    const dates = options.expired ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '3'];
    await run('openssl', [
      'ca',
      '-batch',
      '-notext',
      '-config',
      this.#config,
      '-keyfile',
      this.keyFile,
      '-cert',
      this.certFile,
      '-in',
      `${base}.csr`,
      '-out',
      `${base}.pem`,
      '-extfile',
      `${base}.ext`,
      ...dates,
    ]);
    return { name, certFile: `${base}.pem`, keyFile: `${base}.key` };
  }

  /** Marks a certificate of this CA revoked; writeCrl() then lists it. */
  async revoke(leaf: Leaf): Promise<void> {
    await run('openssl', ['ca', '-config', this.#config, '-keyfile', this.keyFile, '-cert', this.certFile, '-revoke', leaf.certFile]);
  }

  /** A CRL (PEM) of every certificate revoked so far, at `file` (default <dir>/crl.pem). */
  async writeCrl(file = join(this.dir, 'crl.pem')): Promise<string> {
    await run('openssl', ['ca', '-gencrl', '-config', this.#config, '-keyfile', this.keyFile, '-cert', this.certFile, '-out', file]);
    return file;
  }
}

/** A self-signed certificate and its PKCS#8 key (PEM text), made synchronously: for module-level fixtures. */
export function selfSignedSync(cn: string, options: { keyPem?: string } = {}): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'nslb-pem-'));
  try {
    const keyFile = join(dir, 'k.pem');
    if (options.keyPem === undefined) {
      execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', keyFile]);
    } else {
      writeFileSync(keyFile, options.keyPem);
    }
    const certFile = join(dir, 'c.pem');
    execFileSync('openssl', ['req', '-x509', '-key', keyFile, '-out', certFile, '-days', '3650', '-subj', `/CN=${cn}`], { stdio: 'ignore' });
    return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The same key in OpenSSL's traditional form (-----BEGIN EC PRIVATE KEY-----). */
export function traditionalKeySync(keyPem: string): string {
  return execFileSync('openssl', ['ec', '-outform', 'PEM'], { input: keyPem, stdio: ['pipe', 'pipe', 'ignore'] }).toString('utf8');
}
