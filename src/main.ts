#!/usr/bin/env node
import { pino, type Logger } from 'pino';
import { buildApp, VERSION } from './app.js';
import { ConfigError, flagsToSettings, loadConfig, type Config } from './config.js';
import { QueueWorker } from './engine/worker.js';
import { createMetrics } from './metrics.js';
import { createStore } from './store/index.js';

const USAGE = `rollguard ${VERSION}: Prometheus alerts to guarded, audited Kubernetes rollbacks

usage:
  rollguard serve [--port N] [--redis-url URL] [--rules-path DIR] [--prometheus-url URL] [--kubeconfig FILE] [--dry-run] ...
  rollguard rules check [PATH...]
  rollguard rules test FILE...
  rollguard simulate PAYLOAD.json [--rules-path DIR] [--prometheus-url URL]
  rollguard version

Every setting is an environment variable (REDIS_URL) or the matching flag (--redis-url); see README.md.`;

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

const io: Io = { out: (s) => process.stdout.write(`${s}\n`), err: (s) => process.stderr.write(`${s}\n`) };

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return serve(rest);
    case 'version':
    case '--version':
      io.out(VERSION);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.out(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      io.err(`rollguard: unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
}

function configOrExit(args: string[]): { config: Config; rest: string[] } | null {
  const { settings, rest } = flagsToSettings(args);
  try {
    return { config: loadConfig(process.env, settings), rest };
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`rollguard: ${err.message}`);
      return null;
    }
    throw err;
  }
}

async function serve(args: string[]): Promise<number> {
  const loaded = configOrExit(args);
  if (!loaded) return 2;
  if (loaded.rest.length > 0) {
    io.err(`rollguard serve: unknown arguments: ${loaded.rest.join(' ')}`);
    return 2;
  }
  const { config } = loaded;
  const logger: Logger = pino({ level: config.LOG_LEVEL, base: { service: 'rollguard' } });
  const metrics = createMetrics();
  const store = createStore(config, logger);

  const worker = new QueueWorker({
    store,
    metrics,
    logger: logger.child({ component: 'worker' }),
    consumer: config.CONSUMER_NAME,
    claimIdleMs: config.QUEUE_CLAIM_IDLE,
    maxDeliveries: config.QUEUE_MAX_DELIVERIES,
    handler: async (ev) => {
      logger.child({ component: 'engine' }).info({ fingerprint: ev.alert.fingerprint, status: ev.alert.status, labels: ev.alert.labels }, 'alert event');
    },
  });

  const app = buildApp({ config, store, metrics, logger });
  await app.listen({ host: config.HOST, port: config.PORT });
  worker.start();
  logger.info({ version: VERSION, store: store.kind, port: config.PORT }, 'rollguard serving');

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      const deadline = Date.now() + config.SHUTDOWN_TIMEOUT;
      const hard = setTimeout(() => {
        logger.error({ signal, timeoutMs: config.SHUTDOWN_TIMEOUT }, 'shutdown took too long; exiting');
        resolve(1);
      }, config.SHUTDOWN_TIMEOUT + 1000);
      hard.unref();
      logger.info({ signal }, 'shutting down: no new requests, draining the queue');
      try {
        await app.close();
        const left = await worker.drain(deadline);
        if (left > 0 && store.kind === 'memory') logger.error({ left }, 'queued events not handled before the shutdown deadline are lost (in-memory store)');
        else if (left > 0) logger.warn({ left }, 'queued events left in Redis for the other replicas');
        await store.close();
        clearTimeout(hard);
        logger.info('stopped');
        resolve(0);
      } catch (err) {
        logger.error({ err }, 'shutdown failed');
        resolve(1);
      }
    };
    process.once('SIGTERM', () => void shutdown('SIGTERM'));
    process.once('SIGINT', () => void shutdown('SIGINT'));
  });
}

const isEntry = process.argv[1] !== undefined && /main\.(ts|js)$/.test(process.argv[1]);
if (isEntry) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`rollguard: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
