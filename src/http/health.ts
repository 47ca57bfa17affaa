import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { checkAuthorization, gates } from './auth.js';
import type { AppContext } from './context.js';
import { route } from './route.js';
import { withTimeout } from '../timeout.js';

const readySchema = z.object({ ready: z.boolean(), checks: z.record(z.string(), z.string()) });

/** What an unauthenticated /readyz says of a failing check: its reason is in the log (and for a reader, here). */
export const FAILING = 'failing';

/**
 * /healthz: the process is alive. /readyz: every readiness check passes (store reachable, rules
 * loaded); it needs no credential (the kubelet sends none), so each check's reason, which may name
 * Redis' address or the rule files' paths, is given only to a caller who may read (READ_TOKEN or
 * ADMIN_TOKEN, or anyone while reads are open); everyone else gets the check's name and `failing`.
 * The reason is logged when it changes. Until 2026-12-07 anyone reaching the port got the reasons.
 */
export function healthRoutes(app: FastifyInstance, ctx: AppContext): void {
  const readGate = gates(ctx.config).read;
  const mayRead = (authorization: string | undefined): boolean => {
    const g = readGate();
    return g.kind === 'open' || (g.kind === 'check' && checkAuthorization(authorization, g.creds).ok);
  };
  const lastReason = new Map<string, string>();
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
    responses: {
      200: { description: 'ready', schema: readySchema },
      503: { description: `not ready; each check is ok or ${FAILING}, or its reason for a caller with the read or admin token (or while reads are open)`, schema: readySchema },
    },
    handler: async (_input, req, reply) => {
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
      for (const [name, reason] of Object.entries(checks)) {
        if (reason === (lastReason.get(name) ?? 'ok')) continue;
        if (reason === 'ok') req.log.info({ check: name }, `readiness check ${name} passes again`);
        else req.log.warn({ check: name, reason }, `readiness check ${name} failing: ${reason}`);
        lastReason.set(name, reason);
      }
      if (!ready && !mayRead(req.headers.authorization)) {
        for (const name of Object.keys(checks)) if (checks[name] !== 'ok') checks[name] = FAILING;
      }
      return reply.code(ready ? 200 : 503).send({ ready, checks });
    },
  });
}
