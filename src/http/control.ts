import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { clearPause, readPause, writePause } from '../guards/pause.js';
import type { ReloadResult } from '../rules/holder.js';
import type { AppContext, RouteModule } from './context.js';
import { route } from './route.js';

const pauseBody = z.strictObject({ by: z.string().min(1).max(100).default('api'), reason: z.string().max(500).optional() });
const pauseState = z.object({ paused: z.boolean(), by: z.string().optional(), at: z.number().optional(), reason: z.string().optional() });

/** POST /v1/pause, /v1/resume (the global kill switch, shared by all replicas), GET /v1/pause, POST /-/reload. */
export function controlRoutes(opts: { reload: () => Promise<ReloadResult> }): RouteModule {
  return (app: FastifyInstance, ctx: AppContext) => {
    route(app, ctx, {
      method: 'get',
      url: '/v1/pause',
      summary: 'whether rollguard is paused',
      tags: ['control'],
      auth: 'read',
      storeOp: 'pause',
      responses: { 200: { description: 'state', schema: pauseState } },
      handler: async () => {
        const p = await readPause(ctx.store);
        return p ? { paused: true, ...p } : { paused: false };
      },
    });
    route(app, ctx, {
      method: 'post',
      url: '/v1/pause',
      summary: 'pause every rollback (kill switch)',
      tags: ['control'],
      auth: 'admin',
      body: pauseBody,
      storeOp: 'pause',
      responses: { 200: { description: 'paused', schema: pauseState } },
      handler: async ({ body }, req) => {
        const state = { by: body.by, at: ctx.now(), ...(body.reason ? { reason: body.reason } : {}) };
        await writePause(ctx.store, state);
        req.log.warn(state, 'rollguard paused: no rollback will run until resumed');
        return { paused: true, ...state };
      },
    });
    route(app, ctx, {
      method: 'post',
      url: '/v1/resume',
      summary: 'resume rollbacks',
      tags: ['control'],
      auth: 'admin',
      storeOp: 'pause',
      responses: { 200: { description: 'resumed', schema: pauseState } },
      handler: async (_input, req) => {
        await clearPause(ctx.store);
        req.log.warn('rollguard resumed');
        return { paused: false };
      },
    });
    route(app, ctx, {
      method: 'post',
      url: '/-/reload',
      summary: 'reload the rule files (as SIGHUP)',
      tags: ['control'],
      auth: 'admin',
      responses: {
        200: { description: 'reloaded', schema: z.object({ ok: z.literal(true), rules: z.number() }) },
        422: { description: 'a rule file is broken; the last good rules stay in force', schema: z.object({ ok: z.literal(false), rules: z.number(), error: z.string() }) },
      },
      handler: async (_input, _req, reply) => {
        const r = await opts.reload();
        if (r.ok) return { ok: true, rules: r.rules };
        return reply.code(422).send({ ok: false, rules: r.rules, error: r.error ?? 'reload failed' });
      },
    });
  };
}
