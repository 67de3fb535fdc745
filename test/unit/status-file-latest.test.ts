// status.json written newest-only, behind the publisher (src/status/status-file.ts LatestStatusFile): write()
// returns at once, files handed over while one is being written are replaced by the newest, settled() waits for
// it on disk, and a write that fails is reported without stopping the next.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LatestStatusFile, readStatusFile, type StatusFile, StatusFileWriter } from '../../src/status/status-file.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const file = (name: string): StatusFile => ({ objects: [], errors: [{ file: name, document: 0, message: name }] });

/** A StatusFileWriter whose writes wait until the test lets them go, and which says what it was asked to write. */
class HeldWriter extends StatusFileWriter {
  readonly asked: string[] = [];
  readonly #gates: (() => void)[] = [];
  fail = false;

  override async write(f: StatusFile): Promise<boolean> {
    this.asked.push(f.errors[0]?.file ?? '');
    await new Promise<void>((r) => this.#gates.push(r));
    if (this.fail) throw new Error('disk full');
    return super.write(f);
  }

  release(): void {
    for (const g of this.#gates.splice(0)) g();
  }
}

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'nslb-status-latest-'));
  dirs.push(dir);
  const writer = new HeldWriter(dir);
  const errors: unknown[] = [];
  const latest = new LatestStatusFile(writer, (err) => errors.push(err));
  return { dir, writer, errors, latest };
}

async function until(f: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
}

describe('status.json written newest-only, behind the publisher', () => {
  it('returns at once; files handed over during a write are replaced by the newest; settled() waits for it on disk', async () => {
    const { dir, writer, latest } = setup();
    latest.write(file('a'));
    latest.write(file('b'));
    latest.write(file('c'));
    // a is being written (held); b was replaced by c before its turn.
    expect(writer.asked).toEqual(['a']);
    let settled = false;
    const s = latest.settled().then(() => {
      settled = true;
    });
    writer.release();
    await until(() => writer.asked.length === 2);
    expect(writer.asked).toEqual(['a', 'c']);
    expect(settled).toBe(false);
    writer.release();
    await s;
    expect((await readStatusFile(dir)).errors[0]?.file).toBe('c');
  });

  it('a write that fails is reported, and the next file is written', async () => {
    const { dir, writer, errors, latest } = setup();
    writer.fail = true;
    latest.write(file('a'));
    writer.release();
    await latest.settled();
    expect(errors).toHaveLength(1);
    writer.fail = false;
    latest.write(file('b'));
    writer.release();
    await latest.settled();
    expect((await readStatusFile(dir)).errors[0]?.file).toBe('b');
  });
});
