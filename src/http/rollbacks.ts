import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AppContext, RouteModule } from '../app.js';
import { describeZodError } from '../alertmanager/schema.js';
import type { Engine } from '../engine/pipeline.js';
import { STATES, type RollbackRecord } from '../engine/record.js';
import { incidentReport } from '../engine/report.js';
import { targetKinds } from '../rules/targets.js';
import { StoreUnavailableError } from '../store/store.js';
import { requireAuth } from './auth.js';
import { errorSchema } from './openapi.js';

const k8sName = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'expected a Kubernetes name (lower-case DNS-1123)').max(253);

export const manualRollbackSchema = z.strictObject({
  kind: z.enum(targetKinds),
  namespace: k8sName,
  name: k8sName,
  toRevision: z.number().int().min(1).optional(),
  options: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  reason: z.string().min(1, 'say why (it goes into the record and kubernetes.io/change-cause)').max(500),
  requestedBy: z.string().min(1).max(100).default('api'),
  dryRun: z.boolean().default(false),
});

const listQuery = z.strictObject({
  target: z.string().max(600).optional(),
  state: z.enum(STATES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
const idParams = z.strictObject({ id: z.string().regex(/^rb-[a-z0-9-]{1,40}$/, 'expected a rollback id (rb-…)') });
const decisionBody = z.strictObject({ by: z.string().min(1).max(100).default('api'), comment: z.string().max(1000).optional() });
const recordSchema = z.looseObject({ id: z.string(), target: z.string(), state: z.enum(STATES), createdAt: z.number(), timeline: z.array(z.unknown()) });

function bad(err: z.ZodError, root: string) {
  return { error: 'bad_request', message: describeZodError(err, root) };
}

/** GET/POST /v1/rollbacks…: the records, their reports, manual rollbacks, approvals. */
export function rollbacksRoutes(engine: Engine): RouteModule {
  return (app: FastifyInstance, ctx: AppContext) => {
    const admin = requireAdmin(ctx);
    const reg = ctx.openapi;
    reg.add({ method: 'get', path: '/v1/rollbacks', summary: 'list rollback records, newest first', tags: ['rollbacks'], query: listQuery, responses: { 200: { description: 'records', schema: z.object({ rollbacks: z.array(recordSchema) }) }, 400: { description: 'bad filter', schema: errorSchema } } });
    reg.add({ method: 'get', path: '/v1/rollbacks/:id', summary: 'one rollback record with its timeline', tags: ['rollbacks'], params: idParams, responses: { 200: { description: 'the record', schema: recordSchema }, 404: { description: 'no such rollback', schema: errorSchema } } });
    reg.add({ method: 'get', path: '/v1/rollbacks/:id/report', summary: 'markdown incident report', tags: ['rollbacks'], params: idParams, responses: { 200: { description: 'text/markdown', schema: z.string(), contentType: 'text/markdown' }, 404: { description: 'no such rollback', schema: errorSchema } } });
    reg.add({ method: 'post', path: '/v1/rollbacks', summary: 'manual rollback, through the same guards', tags: ['rollbacks'], security: 'admin', body: manualRollbackSchema, responses: { 202: { description: 'accepted; follow the record', schema: recordSchema }, 400: { description: 'bad request', schema: errorSchema }, 401: { description: 'admin token missing or wrong', schema: errorSchema }, 403: { description: 'admin API disabled (no ADMIN_TOKEN)', schema: errorSchema } } });
    for (const verb of ['approve', 'reject'] as const) {
      reg.add({ method: 'post', path: `/v1/rollbacks/:id/${verb}`, summary: `${verb} a rollback pending approval`, tags: ['rollbacks'], security: 'admin', params: idParams, body: decisionBody, responses: { 200: { description: 'done', schema: recordSchema }, 404: { description: 'no such rollback', schema: errorSchema }, 409: { description: 'not pending approval', schema: errorSchema } } });
    }

    app.get('/v1/rollbacks', async (req, reply) => {
      const q = listQuery.safeParse(req.query);
      if (!q.success) return reply.code(400).send(bad(q.error, 'query'));
      const filter: { target?: string; state?: string; limit: number } = { limit: q.data.limit };
      if (q.data.target) filter.target = q.data.target;
      if (q.data.state) filter.state = q.data.state;
      return { rollbacks: await engine.records.list(filter) };
    });

    const load = async (req: FastifyRequest): Promise<{ rec?: RollbackRecord; status: number; body?: unknown }> => {
      const p = idParams.safeParse(req.params);
      if (!p.success) return { status: 400, body: bad(p.error, 'params') };
      const rec = await engine.records.get(p.data.id);
      if (!rec) return { status: 404, body: { error: 'not_found', message: `no rollback ${p.data.id}` } };
      return { rec, status: 200 };
    };

    app.get('/v1/rollbacks/:id', async (req, reply) => {
      const r = await load(req);
      return r.rec ? r.rec : reply.code(r.status).send(r.body);
    });

    app.get('/v1/rollbacks/:id/report', async (req, reply) => {
      const r = await load(req);
      if (!r.rec) return reply.code(r.status).send(r.body);
      return reply.type('text/markdown; charset=utf-8').send(incidentReport(r.rec));
    });

    app.post('/v1/rollbacks', { onRequest: admin }, async (req, reply) => {
      const b = manualRollbackSchema.safeParse(req.body);
      if (!b.success) return reply.code(400).send(bad(b.error, 'body'));
      const { kind, namespace, name, toRevision, options, reason, requestedBy, dryRun } = b.data;
      const ref = { kind, namespace, name, ...(toRevision !== undefined ? { toRevision } : {}), ...(options ? { options } : {}) };
      const rec = await engine.manual({ ref, reason, requestedBy, dryRun });
      req.log.info({ record: rec.id, target: rec.target, requestedBy }, 'manual rollback requested');
      return reply.code(202).header('location', `/v1/rollbacks/${rec.id}`).send(rec);
    });

    for (const verb of ['approve', 'reject'] as const) {
      app.post(`/v1/rollbacks/:id/${verb}`, { onRequest: admin }, async (req, reply) => {
        const p = idParams.safeParse(req.params);
        if (!p.success) return reply.code(400).send(bad(p.error, 'params'));
        const b = decisionBody.safeParse(req.body ?? {});
        if (!b.success) return reply.code(400).send(bad(b.error, 'body'));
        const res = verb === 'approve' ? await engine.approve(p.data.id, b.data.by, b.data.comment) : await engine.reject(p.data.id, b.data.by, b.data.comment);
        if (!('record' in res)) return reply.code(res.status).send({ error: res.status === 404 ? 'not_found' : 'conflict', message: res.error });
        return res.record;
      });
    }

    app.addHook('onError', async (_req, _reply, err) => {
      if (err instanceof StoreUnavailableError) (err as { statusCode?: number }).statusCode = 503;
    });
  };
}

/** Mutating endpoints need the admin token; without ADMIN_TOKEN configured they are off (403). */
export function requireAdmin(ctx: AppContext) {
  const check = requireAuth(ctx.adminCredentials, 'rollguard-admin');
  return async (req: FastifyRequest, reply: import('fastify').FastifyReply) => {
    const creds = ctx.adminCredentials();
    if (creds.bearer.length === 0) {
      return reply.code(403).send({ error: 'forbidden', message: 'the admin API is disabled: set ADMIN_TOKEN (or ADMIN_TOKEN_FILE)' });
    }
    return check(req, reply);
  };
}
