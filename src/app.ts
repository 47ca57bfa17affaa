import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { readSecrets, type Config } from './config.js';
import { alertsRoutes } from './http/alerts.js';
import type { Credentials } from './http/auth.js';
import { healthRoutes } from './http/health.js';
import { metricsRoutes } from './http/metrics.js';
import { OpenApiRegistry } from './http/openapi.js';
import type { Metrics } from './metrics.js';
import type { Store } from './store/store.js';

export const VERSION = '0.1.0';

/** A check run by /readyz: resolves when fine, throws with the reason otherwise. */
export type ReadinessCheck = () => Promise<void> | void;

/** A group of routes mounted by buildApp, given the shared context. */
export type RouteModule = (app: FastifyInstance, ctx: AppContext) => void;

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
  now?: () => number;
}

export interface AppContext {
  config: Config;
  store: Store;
  metrics: Metrics;
  openapi: OpenApiRegistry;
  readiness: Record<string, ReadinessCheck>;
  now: () => number;
  webhookCredentials: () => Credentials;
  adminCredentials: () => Credentials;
}

function credentialsFrom(config: Config) {
  return {
    webhook: (): Credentials => ({
      bearer: readSecrets(config.WEBHOOK_TOKEN, config.WEBHOOK_TOKEN_FILE),
      basic:
        config.WEBHOOK_BASIC_USER !== undefined
          ? { user: config.WEBHOOK_BASIC_USER, passwords: config.WEBHOOK_BASIC_PASSWORD ?? [] }
          : null,
    }),
    admin: (): Credentials => ({ bearer: readSecrets(config.ADMIN_TOKEN, config.ADMIN_TOKEN_FILE), basic: null }),
  };
}

/**
 * Builds the Fastify instance with every route; never listens (src/main.ts does, tests use inject()).
 */
export function buildApp(deps: AppDeps): FastifyInstance {
  const { config, store, metrics } = deps;
  const logger = deps.logger ?? false;
  const isInstance = typeof logger === 'object' && logger !== null && 'child' in logger && typeof logger.child === 'function';
  const app = Fastify({
    ...(isInstance ? { loggerInstance: logger as FastifyServerOptions['loggerInstance'] } : { logger: logger as FastifyServerOptions['logger'] }),
    bodyLimit: config.BODY_LIMIT_BYTES,
    // Alertmanager sends one JSON body; deep nesting and prototype keys are refused by the parser.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // The webhook logs its own line per batch; per-request lines would double every log.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  });
  // Only JSON is accepted: everything else gets 415 rather than a confusing 400.
  app.removeContentTypeParser('text/plain');
  const creds = credentialsFrom(config);
  const ctx: AppContext = {
    config,
    store,
    metrics,
    openapi: new OpenApiRegistry(),
    readiness: { store: () => store.ping(), ...(deps.readiness ?? {}) },
    now: deps.now ?? Date.now,
    webhookCredentials: creds.webhook,
    adminCredentials: creds.admin,
  };

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) req.log.error({ err }, 'request failed');
    const error =
      status === 413 ? 'payload_too_large' : status === 415 ? 'unsupported_media_type' : status === 400 ? 'bad_request' : status >= 500 ? 'internal' : 'error';
    const message = status >= 500 && status !== 503 ? 'internal error; see the rollguard log' : err.message;
    return reply.code(status).send({ error, message });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url}` }));

  for (const mod of [healthRoutes, metricsRoutes, alertsRoutes, ...(deps.routes ?? [])]) mod(app, ctx);

  const doc = () => ctx.openapi.document(VERSION);
  app.get('/openapi.json', async () => doc());
  return app;
}
