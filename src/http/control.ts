import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AppContext, RouteModule } from '../app.js';
import { describeZodError } from '../alertmanager/schema.js';
import { PAUSE_KEY } from '../guards/pause.js';
import type { ReloadResult } from '../rules/holder.js';
import { errorSchema } from './openapi.js';
import { requireAdmin } from './rollbacks.js';

const pauseBody = z.strictObject({ by: z.string().min(1).max(100).default('api'), reason: z.string().max(500).optional() });
const pauseState = z.object({ paused: z.boolean(), by: z.string().optional(), at: z.number().optional(), reason: z.string().optional() });

/** POST /v1/pause, /v1/resume (the global kill switch, shared by all replicas), GET /v1/pause, POST /-/reload. */
export function controlRoutes(opts: { reload: () => Promise<ReloadResult> }): RouteModule {
  return (app: FastifyInstance, ctx: AppContext) => {
    const admin = requireAdmin(ctx);
    ctx.openapi.add({ method: 'get', path: '/v1/pause', summary: 'whether rollguard is paused', tags: ['control'], responses: { 200: { description: 'state', schema: pauseState } } });
    ctx.openapi.add({ method: 'post', path: '/v1/pause', summary: 'pause every rollback (kill switch)', tags: ['control'], security: 'admin', body: pauseBody, responses: { 200: { description: 'paused', schema: pauseState }, 401: { description: 'unauthorized', schema: errorSchema } } });
    ctx.openapi.add({ method: 'post', path: '/v1/resume', summary: 'resume rollbacks', tags: ['control'], security: 'admin', responses: { 200: { description: 'resumed', schema: pauseState }, 401: { description: 'unauthorized', schema: errorSchema } } });
    ctx.openapi.add({ method: 'post', path: '/-/reload', summary: 'reload the rule files (as SIGHUP)', tags: ['control'], security: 'admin', responses: { 200: { description: 'reloaded', schema: z.object({ ok: z.literal(true), rules: z.number() }) }, 422: { description: 'a rule file is broken; the last good rules stay in force', schema: z.object({ ok: z.literal(false), rules: z.number(), error: z.string() }) } } });

    app.get('/v1/pause', async () => {
      const v = await ctx.store.getValue(PAUSE_KEY);
      return v ? { paused: true, ...(JSON.parse(v) as object) } : { paused: false };
    });
    app.post('/v1/pause', { onRequest: admin }, async (req, reply) => {
      const b = pauseBody.safeParse(req.body ?? {});
      if (!b.success) return reply.code(400).send({ error: 'bad_request', message: describeZodError(b.error) });
      const state = { by: b.data.by, at: ctx.now(), ...(b.data.reason ? { reason: b.data.reason } : {}) };
      await ctx.store.setValue(PAUSE_KEY, JSON.stringify(state));
      req.log.warn(state, 'rollguard paused: no rollback will run until resumed');
      return { paused: true, ...state };
    });
    app.post('/v1/resume', { onRequest: admin }, async (req) => {
      await ctx.store.deleteValue(PAUSE_KEY);
      req.log.warn('rollguard resumed');
      return { paused: false };
    });
    app.post('/-/reload', { onRequest: admin }, async (_req, reply) => {
      const r = await opts.reload();
      if (r.ok) return { ok: true, rules: r.rules };
      return reply.code(422).send({ ok: false, rules: r.rules, error: r.error ?? 'reload failed' });
    });
  };
}
