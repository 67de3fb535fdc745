// <state-dir>/status.json (DESIGN §3): written atomically (temp file + rename), and only when it changed.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AnyObject, Condition, ObjectStatus } from '../api/v1alpha1/types.js';
import { API_VERSION, objectId } from '../api/v1alpha1/types.js';
import { statusFilePath } from '../desired/state-dir.js';

/** A member's traffic and check figures from HAProxy's `show stat` (see traffic.ts). */
export interface MemberStats {
  /** Sessions open now (scur). */
  currentSessions: number;
  /** Sessions since HAProxy's current worker started (stot): a reload starts a new count. */
  totalSessions: number;
  /** Bytes from clients to the member, and back (bin, bout); since the worker started, too. */
  bytesIn: number;
  bytesOut: number;
  /** The last check's result code (L4OK, L7STS, L4CON…); absent when the member has no check. */
  checkStatus?: string;
  /** What the last check found, in HAProxy's words ("Layer4 connection problem: Connection refused"). */
  lastCheck?: string;
  /** HAProxy's own state for the server: UP, DOWN, "UP 1/3", MAINT, DRAIN, "no check"… */
  state: string;
}

export interface StatusFileObject {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  /** Not in DESIGN §3's minimum: lets `nslb status` draw the tree without the watched directory. */
  spec: unknown;
  status: ObjectStatus;
  /**
   * Members only, while HAProxy runs them: traffic and check figures from `show stat`. Beside `status`, not
   * in it: they change on every poll and must not reach the Kubernetes status subresource (DESIGN §1 is
   * silent on them; status.json and /metrics carry them).
   */
  stats?: MemberStats;
}

export interface StatusFileError {
  file: string;
  document: number;
  message: string;
}

/** One kernel limit as the agent last checked it (see src/controller/kernel-limits.ts). */
export interface NodeLimitStatus {
  name: string;
  current?: number;
  required: number;
  target: number;
  verdict: 'ok' | 'raise' | 'insufficient' | 'unknown';
  why: string;
  raisedFrom?: number;
  failure?: string;
}

/**
 * The node itself (not in DESIGN §3's minimum): its name, its conditions (KernelLimitsSufficient), and the kernel
 * limits its load depends on with the neighbour tables' fill.
 */
export interface NodeStatus {
  name: string;
  conditions: Condition[];
  kernelLimits?: {
    mode: string;
    limits: NodeLimitStatus[];
    neighbours: Partial<Record<'ipv4' | 'ipv6', { entries: number; tableFulls: number }>>;
  };
}

export interface StatusFile {
  objects: StatusFileObject[];
  errors: StatusFileError[];
  /** Absent in files written before it existed, and from one-shot commands. */
  node?: NodeStatus;
}

export function renderStatusFile(
  objects: readonly AnyObject[],
  statuses: ReadonlyMap<string, ObjectStatus>,
  errors: readonly StatusFileError[],
  node?: NodeStatus,
): StatusFile {
  return {
    objects: objects.flatMap((o) => {
      const status = statuses.get(objectId(o));
      if (status === undefined) return [];
      return [{ apiVersion: API_VERSION, kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name, spec: o.spec, status }];
    }),
    errors: [...errors],
    ...(node === undefined ? {} : { node }),
  };
}

export class StatusFileWriter {
  readonly #path: string;
  #last = '';

  constructor(stateDir: string) {
    this.#path = statusFilePath(stateDir);
  }

  /** Returns whether the file was written. */
  async write(file: StatusFile): Promise<boolean> {
    const text = `${JSON.stringify(file, null, 2)}\n`;
    if (text === this.#last) return false;
    await mkdir(join(this.#path, '..'), { recursive: true, mode: 0o700 });
    const tmp = `${this.#path}.tmp`;
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, this.#path);
    this.#last = text;
    return true;
  }
}

/**
 * status.json written newest-only, never in the publisher's way. The publisher spaces its publishes by ten times
 * what the last one took (controller/status-publisher.ts); awaited there, a write on a busy node (hundreds of
 * reconciles queueing their own file work in libuv's pool) took a second or more, so status.json lagged the node by
 * 10 s and more (bench (h): 11.8 s after 500 load balancers were gone, still listed ACTIVE). Here the text is made at
 * once (JSON.stringify: the publish's own cost), the write goes on behind it, and a newer file replaces one still
 * waiting.
 */
export class LatestStatusFile {
  readonly #writer: StatusFileWriter;
  readonly #onError: (err: unknown) => void;
  #writing: Promise<void> | undefined;
  #next: StatusFile | undefined;

  constructor(writer: StatusFileWriter, onError: (err: unknown) => void) {
    this.#writer = writer;
    this.#onError = onError;
  }

  write(file: StatusFile): void {
    this.#next = file;
    this.#writing ??= (async () => {
      while (this.#next !== undefined) {
        const f = this.#next;
        this.#next = undefined;
        await this.#writer.write(f).catch(this.#onError);
      }
      this.#writing = undefined;
    })();
  }

  /** Until the newest file handed over is on disk. */
  async settled(): Promise<void> {
    await this.#writing;
  }
}

export async function readStatusFile(stateDir: string): Promise<StatusFile> {
  return JSON.parse(await readFile(statusFilePath(stateDir), 'utf8')) as StatusFile;
}
