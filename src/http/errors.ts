import type { FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { describeZodError } from '../alertmanager/schema.js';
import type { Metrics } from '../metrics.js';
import { StoreFullError, StoreUnavailableError } from '../store/store.js';

/**
 * The one place a failed request becomes an HTTP answer (buildApp installs errorHandler): every
 * refusal is a JSON `{error, message}` whose message says what to change.
 */

/** A refusal a handler throws: its status, a stable error code and a message saying what to change. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** A request part that does not match its route's zod schema (400, the message names each field). */
export class InvalidRequestError extends Error {
  readonly statusCode = 400;
  constructor(part: 'body' | 'query' | 'params', zodError: z.ZodError) {
    super(describeZodError(zodError, part));
    this.name = 'InvalidRequestError';
  }
}

/** Seconds a client should wait before retrying while the store is unavailable. */
export const STORE_RETRY_AFTER_S = 5;

/** Per-route settings the error handler reads (Fastify route `config`). */
export interface RouteConfig {
  /** what a store failure on this route is counted under: rollguard_store_errors_total{op} */
  storeOp?: string;
}

const CODES: Record<number, string> = { 400: 'bad_request', 404: 'not_found', 413: 'payload_too_large', 415: 'unsupported_media_type' };

export function errorHandler(metrics: Metrics) {
  return (err: Error & { statusCode?: number }, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof StoreUnavailableError) {
      // Alertmanager retries 5xx (never 4xx or 429): nothing accepted is lost while the store is down.
      metrics.storeErrors.inc({ op: (req.routeOptions.config as RouteConfig).storeOp ?? 'api' });
      req.log.error({ err, route: req.routeOptions.url }, 'store unavailable: answering 503 with Retry-After (Alertmanager retries)');
      return reply
        .code(503)
        .header('retry-after', String(STORE_RETRY_AFTER_S))
        .send(
          err instanceof StoreFullError
            ? { error: 'store_full', message: `${err.message}; retry later` }
            : { error: 'store_unavailable', message: 'the store is unavailable; nothing was stored or changed; retry' },
        );
    }
    if (err instanceof HttpError) return reply.code(err.statusCode).send({ error: err.code, message: err.message });
    // InvalidRequestError, and Fastify's own: unparsable JSON (400), body too large (413), content type (415)
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) req.log.error({ err }, 'request failed');
    const code = CODES[status] ?? (status >= 500 ? 'internal' : 'error');
    const message = status >= 500 && status !== 503 ? 'internal error; see the rollguard log' : err.message;
    return reply.code(status).send({ error: code, message });
  };
}
