import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AppContext } from './context.js';
import { route } from './route.js';

/** GET /metrics: the Prometheus exposition of the app's registry. */
export function metricsRoutes(app: FastifyInstance, ctx: AppContext): void {
  route(app, ctx, {
    method: 'get',
    url: '/metrics',
    summary: 'Prometheus metrics',
    tags: ['ops'],
    responses: { 200: { description: 'text exposition format', schema: z.string(), contentType: 'text/plain' } },
    handler: async (_input, req, reply) => {
      try {
        ctx.metrics.queueDepth.set(await ctx.store.queueDepth());
      } catch (err) {
        // The last known depth stays; the store error is counted and logged.
        ctx.metrics.storeErrors.inc({ op: 'queueDepth' });
        req.log.warn({ err }, 'queue depth unavailable for /metrics');
      }
      const body = await ctx.metrics.registry.metrics();
      return reply.type(ctx.metrics.registry.contentType).send(body);
    },
  });
}
