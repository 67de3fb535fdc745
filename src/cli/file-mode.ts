// `nslb run --watch DIR`: desired objects from a watched directory (sources/file-source.ts), status to
// <state-dir>/status.json. A file that breaks is logged once when it breaks; a directory that cannot be read
// keeps the last snapshot in force, and status.json says why.
import type { Logger } from '../log/logger.js';
import { FileSource } from '../sources/file-source.js';
import { describeIssue } from '../sources/parse.js';
import type { LatestStatusFile } from '../status/status-file.js';
import type { AgentMode, Engine } from './agent-mode.js';

export function fileMode(watch: string, engine: () => Engine, statusFile: LatestStatusFile, logger: Logger): AgentMode {
  let logged = new Set<string>();
  let settling = new Set<string>();
  const files = new FileSource(watch, {
    onSnapshot: (s) => {
      // Said once per file, so that a removal applied a second late, or not at all (the rest of the file came),
      // has an explanation in the log.
      const nowSettling = new Set(s.settling.map((x) => x.file));
      const message = 'file modified within the last second would remove objects; they stay until it is left alone for a second';
      for (const file of nowSettling) if (!settling.has(file)) logger.info({ file }, message);
      settling = nowSettling;
      // Each broken file is logged once when it breaks, not on every resync's re-read.
      const now = new Set<string>();
      for (const issue of s.issues) {
        const text = describeIssue(issue);
        if (!logged.has(text)) logger.warn({ file: issue.file, document: issue.document }, text);
        now.add(text);
      }
      logged = now;
      engine().setSourceError(undefined);
      engine().setSnapshot(s.objects, s.issues, s.materials);
    },
    onError: (err) => {
      logger.error({ err }, 'cannot read the watched directory; keeping the last snapshot');
      engine().setSourceError(`cannot read the watched directory ${watch}: ${err.message}; nothing is torn down, the last valid snapshot stays in force`);
    },
  });
  return {
    describe: { watch },
    start: () => files.start(),
    refresh: () => files.refresh(),
    stop: () => files.stop(),
    publish: async (file) => {
      statusFile.write(file);
    },
    onRemoved: async () => {},
    onEvent: () => {},
    onProblem: () => {},
    setRateLimit: () => {},
    watchedPaths: () => files.watchedPaths(),
    addMetrics: async () => {},
  };
}
