// The Kubernetes API client's errors, read the same way by the source, the status and Event writers and the
// Service provider: the HTTP code, and what the server said in one line.

/** The HTTP status of a failed request to the API server (client-node puts it in `code` or `statusCode`). */
export function statusCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** What the server said, in one short line (client-node's own message carries the whole body and headers). */
export function describeApiError(err: unknown): string {
  const code = statusCode(err);
  const body = (err as { body?: unknown }).body;
  let message: string | undefined;
  try {
    const parsed = (typeof body === 'string' ? JSON.parse(body) : body) as { message?: unknown } | undefined;
    if (typeof parsed?.message === 'string') message = parsed.message;
  } catch {
    // not JSON: fall through
  }
  if (code === undefined) return (err as Error).message ?? String(err);
  return `HTTP ${code}${message === undefined ? '' : `: ${message}`}`;
}
