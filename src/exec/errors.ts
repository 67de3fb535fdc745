/** A command exited non-zero, timed out or could not start. Carries what an operator needs to act on it. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  readonly argv: readonly string[];
  readonly exitCode: number | undefined;
  readonly stderrTail: string;

  constructor(argv: readonly string[], exitCode: number | undefined, stderr: string, options?: { cause?: unknown }) {
    const tail = stderr.trim().split('\n').slice(-5).join('\n');
    const how = exitCode === undefined ? 'failed to run' : `exited ${exitCode}`;
    super(`${argv.join(' ')} ${how}${tail === '' ? '' : `: ${tail}`}`, options);
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderrTail = tail;
  }
}
