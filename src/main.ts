#!/usr/bin/env node
import { pino, type Logger } from 'pino';
import { createActions } from './actions/index.js';
import { buildApp, VERSION } from './app.js';
import { ConfigError, flagsToSettings, loadConfig, type Config } from './config.js';
import { Engine } from './engine/pipeline.js';
import { QueueWorker } from './engine/worker.js';
import { controlRoutes } from './http/control.js';
import { rollbacksRoutes } from './http/rollbacks.js';
import { createKube, type KubeSource } from './kube/config.js';
import { createMetrics } from './metrics.js';
import { Notifications, type Notifier } from './notify/notifier.js';
import { SlackNotifier } from './notify/slack.js';
import { WebhookNotifier } from './notify/webhook.js';
import { PrometheusClient } from './prometheus/client.js';
import { rulesCheckCommand, rulesTestCommand, simulateCommand } from './rules/cli.js';
import { RuleHolder } from './rules/holder.js';
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
    case 'rules':
      if (rest[0] === 'check') return rulesCheckCommand(rest.slice(1), io);
      if (rest[0] === 'test') return rulesTestCommand(rest.slice(1), io);
      io.err(`rollguard rules: expected "check" or "test"\n\n${USAGE}`);
      return 2;
    case 'simulate':
      return simulateCommand(rest, io);
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

  let rules: RuleHolder;
  try {
    rules = await RuleHolder.create({ paths: config.RULES_PATH.split(',').map((p) => p.trim()).filter(Boolean), metrics, logger: logger.child({ component: 'rules' }) });
  } catch (err) {
    io.err(`rollguard: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
  await rules.watch();

  const source: KubeSource = config.KUBECONFIG ? { mode: 'kubeconfig', path: config.KUBECONFIG } : process.env.KUBERNETES_SERVICE_HOST ? { mode: 'in-cluster' } : { mode: 'none' };
  let kube;
  try {
    kube = createKube(source);
  } catch (err) {
    io.err(`rollguard: KUBECONFIG (--kubeconfig): ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
  if (config.DRY_RUN === undefined) {
    config.DRY_RUN = kube === null;
    if (kube === null) logger.warn('no cluster configured (KUBECONFIG, or in-cluster): dry-run, nothing will be changed');
  }
  const prometheus = config.PROMETHEUS_URL ? new PrometheusClient({ url: config.PROMETHEUS_URL, timeoutMs: config.PROMETHEUS_TIMEOUT, metrics }) : null;
  if (!prometheus) logger.warn("PROMETHEUS_URL not set: triggers cannot be confirmed; each rule's onPrometheusDown applies");

  const notifiers: Notifier[] = [];
  if (config.NOTIFY_SLACK_URL) notifiers.push(new SlackNotifier(config.NOTIFY_SLACK_URL));
  if (config.NOTIFY_WEBHOOK_URL) notifiers.push(new WebhookNotifier(config.NOTIFY_WEBHOOK_URL));
  const notifications = new Notifications(notifiers, logger.child({ component: 'notify' }), metrics, config.NOTIFY_TIMEOUT);

  const store = createStore(config, logger);
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
  const engine = new Engine({ config, store, metrics, logger, rules, prometheus, kube, actions: createActions({ helm: config.KUBECONFIG ? { kubeconfig: config.KUBECONFIG } : {} }), notifications, owner: config.CONSUMER_NAME });

  await engine.heartbeat().catch((err) => logger.warn({ err }, 'could not write the replica heartbeat yet'));

  const worker = new QueueWorker({
    store,
    metrics,
    logger: logger.child({ component: 'worker' }),
    consumer: config.CONSUMER_NAME,
    claimIdleMs: config.QUEUE_CLAIM_IDLE,
    maxDeliveries: config.QUEUE_MAX_DELIVERIES,
    handler: (ev) => engine.handle(ev),
    onDead: async (ev, err) => {
      metrics.escalations.inc({ reason: 'event_dead' });
      notifications.emit({
        kind: 'event_dead',
        severity: 'critical',
        title: `rollguard could not handle alert ${ev.alert.labels.alertname ?? ev.alert.fingerprint}`,
        lines: [`failed ${ev.deliveries} times: ${err instanceof Error ? err.message : String(err)}`, 'check the rollguard log and act by hand'],
        at: Date.now(),
      });
    },
  });

  const reload = () => rules.reload('api');
  const app = buildApp({
    config,
    store,
    metrics,
    logger,
    readiness: { rules: () => { if (!rules.last?.ok && rules.rules.rules.length === 0) throw new Error('no rules loaded'); } },
    routes: [rollbacksRoutes(engine), controlRoutes({ reload })],
  });
  await app.listen({ host: config.HOST, port: config.PORT });
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
  logger.info({ version: VERSION, store: store.kind, port: config.PORT, dryRun: config.DRY_RUN, rules: rules.rules.rules.length, cluster: kube !== null, prometheus: prometheus !== null }, 'rollguard serving');

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
        clearInterval(scheduler);
        await app.close();
        await rules.close();
        const left = await worker.drain(deadline);
        engine.stop();
        await ticking;
        await engine.idle();
        await notifications.flush();
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
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    process.on('SIGINT', () => void shutdown('SIGINT'));
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
