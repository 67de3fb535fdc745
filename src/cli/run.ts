// `nslb run --watch DIR`: the agent. Stopping it (SIGTERM, SIGINT, a crash) leaves load balancers serving.
import { createServer, type Server } from 'node:http';
import { mkdir, chmod } from 'node:fs/promises';
import { Manager } from '../controller/manager.js';
import { runCommand } from '../exec/run.js';
import { createLogger } from '../log/logger.js';
import { FileSource } from '../sources/file-source.js';
import { describeIssue } from '../sources/parse.js';
import { StatusFileWriter, type StatusFile } from '../status/status-file.js';
import { parseListen } from './options.js';

export interface RunFlags {
  watch?: string;
  kubernetes?: boolean;
  stateDir: string;
  bridge: string;
  nodeName: string;
  listen: string;
  resync: number;
  concurrency: number;
  logLevel: string;
  /** Milliseconds between HAProxy stats polls (operating status). */
  statusInterval: number;
}

function serveHttp(listen: string, manager: Manager, lastStatus: () => StatusFile | undefined): Server {
  const { host, port } = parseListen(listen);
  const server = createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    switch (req.url) {
      case '/healthz':
        return send(200, 'ok\n');
      case '/readyz':
        return manager.synced ? send(200, 'ok\n') : send(503, 'initial sync in progress\n');
      case '/status':
        return send(200, `${JSON.stringify(lastStatus() ?? { objects: [], errors: [] }, null, 2)}\n`, 'application/json');
      default:
        return send(404, 'not found\n');
    }
  });
  server.listen(port, host);
  return server;
}

export async function runAgent(flags: RunFlags): Promise<void> {
  const logger = createLogger(flags.logLevel);
  if (flags.kubernetes === true) {
    throw new Error('Kubernetes mode is not available in this version yet; use --watch DIR');
  }
  if (flags.watch === undefined) throw new Error('nslb run needs --watch DIR (file-watch mode)');
  await mkdir(flags.stateDir, { recursive: true, mode: 0o700 });
  await chmod(flags.stateDir, 0o700);

  const writer = new StatusFileWriter(flags.stateDir);
  let lastStatus: StatusFile | undefined;
  const manager = new Manager({
    run: runCommand,
    stateDir: flags.stateDir,
    bridge: flags.bridge,
    nodeName: flags.nodeName,
    concurrency: flags.concurrency,
    logger,
    publish: async (file) => {
      lastStatus = file;
      await writer.write(file);
    },
  });
  let logged = new Set<string>();
  const source = new FileSource(flags.watch, {
    onSnapshot: (s) => {
      // Each broken file is logged once when it breaks, not on every resync's re-read.
      const now = new Set<string>();
      for (const issue of s.issues) {
        const text = describeIssue(issue);
        if (!logged.has(text)) logger.warn({ file: issue.file, document: issue.document }, text);
        now.add(text);
      }
      logged = now;
      manager.setSnapshot(s.objects, s.issues, s.materials);
    },
    onError: (err) => logger.error({ err }, 'cannot read the watched directory; keeping the last snapshot'),
  });

  logger.info({ watch: flags.watch, stateDir: flags.stateDir, bridge: flags.bridge }, 'nslb starting');
  const server = serveHttp(flags.listen, manager, () => lastStatus);
  server.on('error', (err) => logger.error({ err, listen: flags.listen }, 'cannot serve health endpoints'));
  await source.start();
  await manager.initialSyncDone();
  logger.info('initial sync done');

  const resync = setInterval(() => {
    void (async () => {
      await source.refresh();
      await manager.resync();
    })().catch((err: unknown) => logger.error({ err }, 'resync failed'));
  }, flags.resync * 1000);
  const poll = setInterval(() => {
    manager.pollStats().catch((err: unknown) => logger.error({ err }, 'stats poll failed'));
  }, flags.statusInterval);

  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'stopping; load balancers keep serving');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  clearInterval(resync);
  clearInterval(poll);
  server.close();
  await source.stop();
  await manager.stop();
  logger.flush();
}
