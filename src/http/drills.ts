import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { parseDuration } from '../config.js';
import { faultSchema } from '../drills/fault.js';
import { drillReport } from '../drills/report.js';
import { DrillRefusal, type Drills } from '../drills/run.js';
import type { DrillRecord } from '../drills/store.js';
import { DRILL_KINDS } from '../drills/workload.js';
import { nameSchema } from '../kube/names.js';
import type { AppContext, RouteModule } from './context.js';
import { HttpError } from './errors.js';
import { errorSchema } from './openapi.js';
import { recordRoutes, route } from './route.js';

const deadline = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === null || ms < 10_000 || ms > 3_600_000) {
    ctx.addIssue({ code: 'custom', message: `expected a duration from 10s to 1h (e.g. 5m), got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return ms;
});

export const drillRequestSchema = z.strictObject({
  target: z.strictObject({ kind: z.enum(DRILL_KINDS), namespace: nameSchema('label'), name: nameSchema('subdomain') }),
  fault: faultSchema,
  /** from the fault to back on the pre-drill revision, healthy and the trigger cleared (default 5m, the runbook's drill target) */
  deadline: deadline.optional(),
  requestedBy: z.string().min(1).max(100).default('api'),
});

const idParams = z.strictObject({ id: z.string().regex(/^dr-[a-z0-9]{1,40}$/, 'expected a drill id (dr-…)') });
const listQuery = z.strictObject({
  target: z.string().max(600).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
const drillSchema = z.looseObject({ id: z.string(), target: z.string(), state: z.enum(['running', 'passed', 'failed']), source: z.literal('drill'), links: z.record(z.string(), z.unknown()) });

/** POST /v1/drills (admin), GET /v1/drills, /v1/drills/:id, /v1/drills/:id/report (read): rollback drills. */
export function drillsRoutes(drills: Drills): RouteModule {
  return (app: FastifyInstance, ctx: AppContext) => {
    // Drills left by a stopped replica are ended and restored; this replica's own end (restored) on close.
    app.addHook('onReady', async () => drills.startRecovery(ctx.config.SCHEDULER_INTERVAL));
    app.addHook('onClose', async () => drills.stop(Math.min(15_000, ctx.config.SHUTDOWN_TIMEOUT / 2)));

    route(app, ctx, {
      method: 'post',
      url: '/v1/drills',
      summary: 'start a rollback drill: apply a fault to a workload in DRILL_NAMESPACES and watch the whole chain roll it back',
      tags: ['drills'],
      auth: 'admin',
      body: drillRequestSchema,
      storeOp: 'drills',
      responses: {
        202: { description: 'started: the fault is applied (or its write failed without saying whether it landed: the drill ends failed and restores the workload if the fault is live); follow the drill', schema: drillSchema },
        404: { description: 'no such workload', schema: errorSchema },
        409: { description: 'not now: paused, a drill or rollback of the target running, its cooldown, an alert already firing, the workload not healthy', schema: errorSchema },
        422: { description: 'not allowed or not possible here: drills off or the namespace outside DRILL_NAMESPACES, DRY_RUN, no cluster or Prometheus, a fault the API server refuses; nothing was changed', schema: errorSchema },
      },
      handler: async ({ body }, req, reply) => {
        let d: DrillRecord;
        try {
          d = await drills.start({ ref: body.target, fault: body.fault, requestedBy: body.requestedBy, ...(body.deadline !== undefined ? { deadlineMs: body.deadline } : {}) });
        } catch (err) {
          if (err instanceof DrillRefusal) {
            req.log.warn({ target: `${body.target.kind}/${body.target.namespace}/${body.target.name}`, code: err.code, reason: err.message }, 'drill refused');
            throw new HttpError(err.status, err.code, err.message);
          }
          throw err;
        }
        return reply.code(202).header('location', `/v1/drills/${d.id}`).send(d);
      },
    });

    route(app, ctx, {
      method: 'get',
      url: '/v1/drills',
      summary: 'rollback drills, newest first',
      tags: ['drills'],
      auth: 'read',
      query: listQuery,
      storeOp: 'drills',
      responses: { 200: { description: 'drills', schema: z.object({ drills: z.array(drillSchema) }) } },
      handler: async ({ query }) => ({ drills: await drills.list({ limit: query.limit, ...(query.target ? { target: query.target } : {}) }) }),
    });

    recordRoutes(app, ctx, {
      base: '/v1/drills', noun: 'drill', tags: ['drills'], params: idParams, storeOp: 'drills', schema: drillSchema,
      one: { summary: 'one drill: every link of the chain with its time, the result, the restore', description: 'the drill' },
      report: { summary: "markdown drill report (the incident report's layout)", render: drillReport },
      get: (id) => drills.get(id),
    });
  };
}
