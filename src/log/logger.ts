// One pino root for the process: JSON by default, human-readable when stderr is a TTY.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, pretty = process.stderr.isTTY === true): Logger {
  if (pretty) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { destination: 2, colorize: true, translateTime: 'HH:MM:ss.l' } },
    });
  }
  // Synchronous: an agent killed (OOM, SIGKILL) must not take its last lines, the "applying" that says what
  // it was doing, with it. The agent logs per reconcile, not per request: the cost is negligible.
  return pino({ level }, pino.destination({ dest: 2, sync: true }));
}
