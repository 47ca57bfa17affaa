import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AppContext } from './context.js';
import { route } from './route.js';
import { withTimeout } from '../timeout.js';

const readySchema = z.object({ ready: z.boolean(), checks: z.record(z.string(), z.string()) });

/** /healthz: the process is alive. /readyz: every readiness check passes (store reachable, rules loaded). */
export function healthRoutes(app: FastifyInstance, ctx: AppContext): void {
  route(app, ctx, {
    method: 'get',
    url: '/healthz',
    summary: 'liveness',
    tags: ['ops'],
    responses: { 200: { description: 'alive', schema: z.object({ status: z.literal('ok') }) } },
    handler: async () => ({ status: 'ok' as const }),
  });

  route(app, ctx, {
    method: 'get',
    url: '/readyz',
    summary: 'readiness: store reachable, rules loaded',
    tags: ['ops'],
    responses: { 200: { description: 'ready', schema: readySchema }, 503: { description: 'not ready; checks say why', schema: readySchema } },
    handler: async (_input, _req, reply) => {
      const checks: Record<string, string> = {};
      let ready = true;
      await Promise.all(
        Object.entries(ctx.readiness).map(async ([name, check]) => {
          try {
            await withTimeout(Promise.resolve(check()), 2000);
            checks[name] = 'ok';
          } catch (err) {
            ready = false;
            checks[name] = err instanceof Error ? err.message : String(err);
          }
        }),
      );
      return reply.code(ready ? 200 : 503).send({ ready, checks });
    },
  });
}
