#!/usr/bin/env node
import { pino, type Logger } from 'pino';
import { createActions } from './actions/index.js';
import { buildApp, closeListeners, shutdownGrace, VERSION } from './app.js';
import { drillCommand } from './cli/drill.js';
import { processIo as io } from './cli/io.js';
import { rollbacksCommand } from './cli/rollbacks.js';
import { replayCommand } from './cli/replay/command.js';
import { rulesCheckCommand, rulesTestCommand } from './cli/rules.js';
import { simulateCommand } from './cli/simulate.js';
import { statusCommand } from './cli/status.js';
import { clusterSource, ConfigError, flagsToSettings, loadConfig, type Config } from './config.js';
import { Drills } from './drills/run.js';
import { Engine } from './engine/pipeline.js';
import { QueueWorker } from './engine/worker.js';
import { announceAuth, openLiveWebhook } from './http/auth.js';
import { controlRoutes } from './http/control.js';
import { drillsRoutes } from './http/drills.js';
import { rollbacksRoutes } from './http/rollbacks.js';
import { statusRoutes } from './http/status.js';
import { createKube, type KubeSource } from './kube/config.js';
import type { Kube } from './kube/kube.js';
import { ConfigSnapshots } from './config-deps/watch.js';
import { createMetrics } from './metrics.js';
import { createNotifications } from './notify/index.js';
import { PrometheusClient } from './prometheus/client.js';
import { RuleHolder } from './rules/holder.js';
import { createStore } from './store/index.js';

const USAGE = `rollguard ${VERSION}: Prometheus alerts to guarded, audited Kubernetes rollbacks

usage:
  rollguard serve [--port N] [--redis-url URL] [--rules-path DIR] [--prometheus-url URL] [--kubeconfig FILE] [--dry-run] ...
  rollguard rules check [PATH...]
  rollguard rules test FILE...
  rollguard simulate PAYLOAD.json [--rules-path DIR] [--prometheus-url URL]
  rollguard rollbacks list|get|report|approve|reject|create|resume-gitops|watch ...   (the API, for people and scripts)
  rollguard status | pause [--reason TEXT] | resume
  rollguard drill run|list|get|report ...   (rollback drills in DRILL_NAMESPACES)
  (API commands: --url / ROLLGUARD_URL, token from ROLLGUARD_TOKEN or --token-file, -o table|json|yaml, --help)
  rollguard replay --prometheus URL --from TIME [--to TIME] [--rules PATH]... [--format text|markdown|json] [--out FILE] [--fail-on COND]...
  rollguard version

Every setting is an environment variable (REDIS_URL) or the matching flag (--redis-url); see README.md.`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return serve(rest);
    case 'rules':
      if (rest[0] === 'check') return rulesCheckCommand(rest.slice(1), io);
      if (rest[0] === 'test') return rulesTestCommand(rest.slice(1), io);
      io.err(`rollguard rules: expected "check" or "test"\n\n${USAGE}`);
      return 2;
    case 'simulate':
      return simulateCommand(rest, io);
    case 'rollbacks':
      return rollbacksCommand(rest, apiEnv());
    case 'drill':
      return drillCommand(rest, apiEnv());
    case 'status':
    case 'pause':
    case 'resume':
      return statusCommand(cmd, rest, apiEnv());
    case 'replay':
      return replayCommand(rest, io);
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

/** What the API commands read: the process's env and clock; Ctrl-C ends `rollbacks watch` cleanly. */
function apiEnv() {
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  return { io, env: process.env, now: Date.now, signal: stop.signal };
}

function configOrExit(args: string[]): { config: Config; rest: string[] } | null {
  try {
    const { settings, rest } = flagsToSettings(args);
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
  const open = openLiveWebhook(config);
  if (open) {
    io.err(`rollguard: ${open}`);
    return 2;
  }
  // Asynchronous logging: lines are written to stdout in the background (pino's sonic-boom), not one
  // write(2) per line in the request path; flushed at shutdown (see flushLogs).
  const logDestination = pino.destination({ dest: 1, sync: false });
  const logger: Logger = pino({ level: config.LOG_LEVEL, base: { service: 'rollguard' } }, logDestination);
  const flushLogs = () => {
    try {
      logDestination.flushSync();
    } catch {
      // stdout not writable now (closed pipe): nothing more can be said
    }
  };
  const metrics = createMetrics();

  let rules: RuleHolder;
  try {
    rules = await RuleHolder.create({ paths: config.RULES_PATH.split(',').map((p) => p.trim()).filter(Boolean), metrics, logger: logger.child({ component: 'rules' }) });
  } catch (err) {
    io.err(`rollguard: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
  await rules.watch();

  const cluster = clusterSource(config);
  const source: KubeSource = cluster === 'kubeconfig' ? { mode: 'kubeconfig', path: config.KUBECONFIG! } : { mode: cluster };
  let kube;
  try {
    kube = await createKube(source, { maxConcurrentReads: config.KUBE_MAX_CONCURRENT_READS, metrics });
  } catch (err) {
    io.err(`rollguard: KUBECONFIG (--kubeconfig): ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
  if (kube === null) {
    logger.warn(
      config.DRY_RUN
        ? 'no Kubernetes cluster configured (set KUBECONFIG, or run in a pod): dry-run, nothing will be changed'
        : 'no Kubernetes cluster configured (set KUBECONFIG, or run in a pod) and DRY_RUN=false: every rollback will be refused',
    );
  }
  const prometheus = config.PROMETHEUS_URL ? new PrometheusClient({ url: config.PROMETHEUS_URL, timeoutMs: config.PROMETHEUS_TIMEOUT, maxConcurrent: config.PROMETHEUS_MAX_CONCURRENT, maxResponseBytes: config.PROMETHEUS_MAX_RESPONSE_BYTES, metrics }) : null;
  if (!prometheus) logger.warn("PROMETHEUS_URL not set: triggers cannot be confirmed; each rule's onPrometheusDown applies");
  announceAuth(config, logger.child({ component: 'auth' }));

  const notifications = createNotifications(config, logger.child({ component: 'notify' }), metrics);

  const store = createStore(config, logger, metrics);
  // Give Redis a moment before answering webhooks (each would get 503 until it is reachable).
  for (const until = Date.now() + 10_000; ; ) {
    try {
      await store.ping();
      break;
    } catch (err) {
      if (Date.now() > until) {
        logger.error({ err }, 'the store is not reachable yet: webhooks get 503 (Alertmanager retries) until it is');
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const actions = createActions({ helm: { helmBin: config.HELM_BIN, ...(config.KUBECONFIG ? { kubeconfig: config.KUBECONFIG } : {}) } });
  const engine = new Engine({ config, store, metrics, logger, rules, prometheus, kube, actions, notifications, owner: config.CONSUMER_NAME });

  const snapshots = startSnapshots(config, kube, logger);

  await engine.heartbeat().catch((err) => logger.warn({ err }, 'could not write the replica heartbeat yet'));
  // on its own timer: a scheduler tick held up must not make this replica look gone
  const stopHeartbeat = engine.keepAlive();

  const worker = new QueueWorker({
    store,
    metrics,
    logger: logger.child({ component: 'worker' }),
    consumer: config.CONSUMER_NAME,
    claimIdleMs: config.QUEUE_CLAIM_IDLE,
    maxDeliveries: config.QUEUE_MAX_DELIVERIES,
    concurrency: config.QUEUE_CONCURRENCY,
    deadlineMs: config.EVENT_DEADLINE ?? config.QUEUE_CLAIM_IDLE,
    handler: (ev) => engine.handle(ev),
    coalesceKey: (ev) => engine.coalesceKey(ev),
    onCoalesced: (ev, into) => engine.coalesced(ev, into),
    targetsOf: (ev) => engine.targetsOf(ev),
    onDead: async (ev, err) => {
      await engine.deadLettered(ev, err);
    },
  });

  const reload = () => rules.reload('api');
  const app = buildApp({
    config,
    store,
    metrics,
    logger,
    readiness: { rules: () => rules.assertLoaded() },
    rules,
    routes: [
      rollbacksRoutes(engine),
      controlRoutes({ reload }),
      statusRoutes({ engine, prometheus, rules: () => rules.rules.rules.length, version: VERSION, dryRun: config.DRY_RUN }),
      drillsRoutes(new Drills({ config, store, metrics, logger, kube, prometheus, records: engine.records, rules, actions, owner: config.CONSUMER_NAME })),
    ],
  });
  await app.listen({ host: config.HOST, port: config.PORT });
  const metricsApp = config.METRICS_PORT === undefined ? null : buildApp({ config, store, metrics, logger }, 'metrics');
  await metricsApp?.listen({ host: config.HOST, port: config.METRICS_PORT! });
  worker.start();
  let ticking: Promise<void> | null = null;
  const scheduler = setInterval(() => {
    if (ticking) return;
    ticking = engine
      .tick()
      .catch((err) => logger.error({ err }, 'scheduler tick failed'))
      .finally(() => (ticking = null));
  }, config.SCHEDULER_INTERVAL);
  process.on('SIGHUP', () => void rules.reload('SIGHUP'));
  logger.info({ version: VERSION, store: store.kind, port: config.PORT, metricsPort: config.METRICS_PORT ?? config.PORT, dryRun: config.DRY_RUN, rules: rules.rules.rules.length, cluster: kube !== null, prometheus: prometheus !== null }, 'rollguard serving');

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      const deadline = Date.now() + config.SHUTDOWN_TIMEOUT;
      const hard = setTimeout(() => {
        logger.error({ signal, timeoutMs: config.SHUTDOWN_TIMEOUT }, 'shutdown took too long; exiting');
        flushLogs();
        resolve(1);
      }, config.SHUTDOWN_TIMEOUT + 1000);
      hard.unref();
      logger.info({ signal }, 'shutting down: no new requests, draining the queue');
      try {
        clearInterval(scheduler);
        // requests still arriving or being answered get a grace, then their connections are closed
        await closeListeners([app, metricsApp], shutdownGrace(config.SHUTDOWN_TIMEOUT));
        await rules.close();
        await snapshots?.stop();
        const left = await worker.drain(deadline);
        engine.stop();
        await ticking;
        await engine.idle();
        // what is still to be sent gets until half a second before the hard exit (the rest is for leaving the store)
        await notifications.flush(deadline + 500);
        // alive to the other replicas until here: a record still being decided in the drain is not taken over;
        // then gone at once (its claims and records are taken up without waiting for the heartbeat's TTL)
        stopHeartbeat();
        const gone = await engine.leave().catch((err) => (logger.warn({ err }, 'could not remove the replica heartbeat'), false));
        if (!gone) logger.info('the replica heartbeat is left to expire: other replicas take up what this one claimed once it has (a handler past its deadline may still be running, or the heartbeat is not this process\'s)');
        if (left > 0 && store.kind === 'memory') logger.error({ left }, 'queued events not handled before the shutdown deadline are lost (in-memory store)');
        else if (left > 0) logger.warn({ left }, 'queued events left in Redis for the other replicas');
        await store.close();
        clearTimeout(hard);
        logger.info('stopped');
        flushLogs();
        resolve(0);
      } catch (err) {
        logger.error({ err }, 'shutdown failed');
        flushLogs();
        resolve(1);
      }
    };
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    process.on('SIGINT', () => void shutdown('SIGINT'));
  });
}

/** The configuration snapshots' watcher, when CONFIG_SNAPSHOTS is on and a cluster is configured. */
function startSnapshots(config: Config, kube: Kube | null, logger: Logger): ConfigSnapshots | null {
  if (!config.CONFIG_SNAPSHOTS) return null;
  if (!kube) {
    logger.warn('CONFIG_SNAPSHOTS is on but no Kubernetes cluster is configured (set KUBECONFIG, or run in a pod): no configuration snapshots are taken');
    return null;
  }
  const snapshots = new ConfigSnapshots({ kube, logger: logger.child({ component: 'config-snapshots' }), namespaces: config.SCOPE_NAMESPACES, denyNamespaces: config.SCOPE_DENY_NAMESPACES, max: config.CONFIG_SNAPSHOTS_MAX, secrets: config.CONFIG_SNAPSHOTS_SECRETS, key: config.CONFIG_SNAPSHOTS_KEY! });
  // not awaited: a watch the API server refuses retries (logging what to change) without holding up the webhook
  snapshots.start().catch((err) => logger.error({ err }, 'configuration snapshots could not start'));
  return snapshots;
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
