import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Server as NetServer, Socket } from 'node:net';
import { z } from 'zod';
import type { Config } from './config.js';
import { alertsRoutes } from './http/alerts.js';
import { authHooks } from './http/auth.js';
import type { AppContext, ReadinessCheck, RouteModule } from './http/context.js';
import { errorHandler } from './http/errors.js';
import { healthRoutes } from './http/health.js';
import { metricsRoutes } from './http/metrics.js';
import { OpenApiRegistry } from './http/openapi.js';
import { route } from './http/route.js';
import type { Metrics } from './metrics.js';
import type { RuleSet } from './rules/ruleset.js';
import type { Store } from './store/store.js';

export const VERSION = '0.1.0';

export interface AppDeps {
  config: Config;
  store: Store;
  metrics: Metrics;
  /** pino options or an existing logger; false for none (tests) */
  logger?: FastifyServerOptions['logger'] | FastifyServerOptions['loggerInstance'];
  /** extra readiness checks besides the store's (e.g. rules loaded) */
  readiness?: Record<string, ReadinessCheck>;
  /** extra route modules (rollbacks API, control, reload) */
  routes?: RouteModule[];
  /** the rules in force: intake ranks each alert by the highest priority it matches (its queue lane) */
  rules?: { readonly rules: RuleSet };
  now?: () => number;
}

/**
 * Builds the Fastify instance with every route; never listens (src/main.ts does, tests use inject()).
 * Every route is registered through route() (src/http/route.ts), so /openapi.json lists it: a route
 * registered any other way makes ready() fail, naming it.
 * With METRICS_PORT set, GET /metrics moves to its own instance (`listener: 'metrics'`, nothing
 * else on it), so that a NetworkPolicy, which tells ports apart but not paths, can let Prometheus
 * reach the metrics and nothing else, and Alertmanager the webhook and not the metrics.
 */
export function buildApp(deps: AppDeps, listener: 'api' | 'metrics' = 'api'): FastifyInstance {
  const { config, store, metrics } = deps;
  const logger = deps.logger ?? false;
  const isInstance = typeof logger === 'object' && logger !== null && 'child' in logger && typeof logger.child === 'function';
  const app = Fastify({
    ...(isInstance ? { loggerInstance: logger as FastifyServerOptions['loggerInstance'] } : { logger: logger as FastifyServerOptions['logger'] }),
    bodyLimit: config.BODY_LIMIT_BYTES,
    // Alertmanager sends one JSON body. A `__proto__` key (or `constructor.prototype`) is removed by
    // the parser, never refused: anyone who can post to Alertmanager can give an alert such a label
    // or annotation, and a refused batch (4xx) is dropped by Alertmanager with every alert of its
    // group. No rule can name such a label (src/rules/schema.ts refuses it), so nothing it decides changes.
    onProtoPoisoning: 'remove',
    onConstructorPoisoning: 'remove',
    // The webhook logs its own line per batch; per-request lines would double every log.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    // Fastify leaves requestTimeout at 0 (none): a client sending its body a byte at a time held a
    // connection (and ~9 KB) for ever, a refused one included. HTTP_REQUEST_TIMEOUT bounds the whole
    // request (a silent connection too: 408, then closed), checked at least every 5 s rather than
    // Node's 30 s; HTTP_IDLE_TIMEOUT closes a kept-alive connection left idle (Fastify's default: 72 s).
    requestTimeout: config.HTTP_REQUEST_TIMEOUT,
    keepAliveTimeout: config.HTTP_IDLE_TIMEOUT,
    http: {
      headersTimeout: config.HTTP_REQUEST_TIMEOUT,
      connectionsCheckingInterval: Math.max(25, Math.min(5_000, Math.floor(config.HTTP_REQUEST_TIMEOUT / 4))),
    },
  });
  // Beyond this, Node closes a new connection at once: however many a client opens, what they take is bounded.
  // Each refusal is counted by the setting that made it, so that an operator sees a full listener
  // (Alertmanager's deliveries refused with it) rather than only Alertmanager's retries.
  app.server.maxConnections = config.HTTP_MAX_CONNECTIONS;
  // both settings' series exported from the start at 0, so that increase() sees the first refusal
  for (const setting of ['HTTP_MAX_CONNECTIONS', 'HTTP_MAX_CONNECTIONS_PER_ADDRESS']) metrics.httpConnectionsRefused.inc({ setting, listener }, 0);
  app.server.on('drop', () => metrics.httpConnectionsRefused.inc({ setting: 'HTTP_MAX_CONNECTIONS', listener }));
  capPerAddress(app.server, config.HTTP_MAX_CONNECTIONS_PER_ADDRESS, () =>
    metrics.httpConnectionsRefused.inc({ setting: 'HTTP_MAX_CONNECTIONS_PER_ADDRESS', listener }),
  );
  // Only JSON is accepted: everything else gets 415 rather than a confusing 400.
  app.removeContentTypeParser('text/plain');
  const ctx: AppContext = {
    config,
    store,
    metrics,
    openapi: new OpenApiRegistry(),
    readiness: { store: () => store.ping(), ...(deps.readiness ?? {}) },
    now: deps.now ?? Date.now,
    auth: authHooks(config),
    ...(deps.rules ? { rules: deps.rules } : {}),
  };

  const registered: string[] = [];
  app.addHook('onRoute', (r) => {
    for (const m of [r.method].flat()) if (m !== 'HEAD') registered.push(`${m} ${r.url}`);
  });
  app.addHook('onReady', async () => {
    const undocumented = registered.filter((r) => !ctx.openapi.has(r.slice(0, r.indexOf(' ')), r.slice(r.indexOf(' ') + 1)));
    if (undocumented.length) throw new Error(`routes missing from /openapi.json (register them with route() from src/http/route.ts): ${undocumented.join(', ')}`);
  });

  app.setErrorHandler(errorHandler(metrics));
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url}` }));

  if (listener === 'metrics') {
    metricsRoutes(app, ctx);
    return app;
  }
  const metricsHere = config.METRICS_PORT === undefined ? [metricsRoutes] : [];
  for (const mod of [healthRoutes, ...metricsHere, alertsRoutes, ...(deps.routes ?? [])]) mod(app, ctx);

  route(app, ctx, {
    method: 'get',
    url: '/openapi.json',
    summary: 'this document (OpenAPI 3, generated from the zod schemas the routes validate with)',
    tags: ['ops'],
    responses: { 200: { description: 'the OpenAPI document', schema: z.record(z.string(), z.unknown()) } },
    handler: async () => ctx.openapi.document(VERSION),
  });
  return app;
}

/**
 * Closes a new connection at once when its remote address already holds `cap` of them (0: no cap).
 * The global cap (HTTP_MAX_CONNECTIONS) bounds memory, but a kept-alive connection is never ended
 * while its client keeps sending requests: without this, one client could hold every place and
 * shut out Alertmanager and the kubelet's probes for as long as it liked.
 */
export function capPerAddress(server: NetServer, cap: number, onRefused: () => void = () => {}): void {
  if (cap <= 0) return;
  const held = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) return; // already gone
    const n = held.get(address) ?? 0;
    if (n >= cap) {
      socket.destroy();
      onRefused();
      return;
    }
    held.set(address, n + 1);
    socket.once('close', () => {
      const left = (held.get(address) ?? 1) - 1;
      if (left > 0) held.set(address, left);
      else held.delete(address);
    });
  });
}

/**
 * Stops the listeners for a shutdown: no new connections, idle ones closed at once, and after
 * `graceMs` every connection still open closed, answered or not. Node's server.close() stops the
 * timer that enforces HTTP_REQUEST_TIMEOUT: until 2026-12-07 a request still arriving at SIGTERM
 * (a body sent slowly) was never answered 408, app.close() never resolved, and every such shutdown
 * ended in the hard exit before the queue's drain, the notifications and the store were seen to.
 */
export async function closeListeners(apps: readonly (FastifyInstance | null | undefined)[], graceMs: number): Promise<void> {
  const open = apps.filter((a): a is FastifyInstance => !!a);
  const closing = open.map((a) => a.close());
  for (const a of open) a.server.closeIdleConnections();
  const force = setTimeout(() => open.forEach((a) => a.server.closeAllConnections()), graceMs);
  force.unref();
  try {
    await Promise.all(closing);
  } finally {
    clearTimeout(force);
  }
}

/** How long a shutdown leaves requests still being received or answered: min(5 s, SHUTDOWN_TIMEOUT / 3). */
export const shutdownGrace = (shutdownTimeoutMs: number): number => Math.min(5_000, Math.floor(shutdownTimeoutMs / 3));
