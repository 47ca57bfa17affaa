import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApprovalResult, Engine } from '../engine/pipeline.js';
import type { ResumeResult } from '../gitops/resume.js';
import { STATES } from '../engine/record.js';
import { incidentReport } from '../engine/report.js';
import { OptionsError, parseOptions, targetKinds, type TargetRef } from '../actions/index.js';
import { isCursor } from '../store/cursor.js';
import type { AppContext, RouteModule } from './context.js';
import { HttpError } from './errors.js';
import { errorSchema } from './openapi.js';
import { recordRoutes, route } from './route.js';

const k8sName = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'expected a Kubernetes name (lower-case DNS-1123)').max(253);

export const manualRollbackSchema = z.strictObject({
  kind: z.enum(targetKinds),
  namespace: k8sName,
  name: k8sName,
  toRevision: z.number().int().min(1).optional(),
  /** the kind's own options (src/actions/<kind>.ts), validated by its schema */
  options: z.record(z.string(), z.unknown()).optional(),
  reason: z.string().min(1, 'say why (it goes into the record and kubernetes.io/change-cause)').max(500),
  requestedBy: z.string().min(1).max(100).default('api'),
  dryRun: z.boolean().default(false),
});

const listQuery = z.strictObject({
  target: z.string().max(600).optional(),
  state: z.enum(STATES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(600).refine(isCursor, 'expected the nextCursor of an earlier page').optional(),
});
const idParams = z.strictObject({ id: z.string().regex(/^rb-[a-z0-9-]{1,40}$/, 'expected a rollback id (rb-…)') });
const decisionBody = z.strictObject({ by: z.string().min(1).max(100).default('api'), comment: z.string().max(1000).optional() });
const rollbackId = idParams.shape.id;
/** resume-gitops: also the other rollbacks relying on the owners that the caller says are reverted in git too, or all of them (gitops/resume.ts) */
const resumeBody = decisionBody.extend({ reverted: z.array(rollbackId).max(1000).default([]), allReverted: z.boolean().default(false) });
const recordSchema = z.looseObject({ id: z.string(), target: z.string(), state: z.enum(STATES), createdAt: z.number(), timeline: z.array(z.unknown()) });
const notFound = { description: 'no such rollback', schema: errorSchema };
/** approve, reject and resume-gitops, as the admin routes answer them (the approvals' conflict put in words) */
type RecordRequestResult = ResumeResult;

/** GET/POST /v1/rollbacks…: the records, their reports, manual rollbacks, approvals. */
export function rollbacksRoutes(engine: Engine): RouteModule {
  return (app: FastifyInstance, ctx: AppContext) => {
    route(app, ctx, {
      method: 'get',
      url: '/v1/rollbacks',
      summary: 'list rollback records, newest first, a page at a time (pass nextCursor as cursor for the next)',
      tags: ['rollbacks'],
      auth: 'read',
      query: listQuery,
      storeOp: 'records',
      responses: { 200: { description: 'records; nextCursor null on the last page', schema: z.object({ rollbacks: z.array(recordSchema), nextCursor: z.string().nullable() }) } },
      handler: async ({ query }) => {
        const filter: { target?: string; state?: string; limit: number; cursor?: string } = { limit: query.limit };
        if (query.target) filter.target = query.target;
        if (query.state) filter.state = query.state;
        if (query.cursor) filter.cursor = query.cursor;
        const page = await engine.records.page(filter);
        return { rollbacks: page.records, nextCursor: page.nextCursor };
      },
    });

    recordRoutes(app, ctx, {
      base: '/v1/rollbacks', noun: 'rollback', tags: ['rollbacks'], params: idParams, storeOp: 'records', schema: recordSchema,
      one: { summary: 'one rollback record with its timeline', description: 'the record' },
      report: { summary: 'markdown incident report', render: incidentReport },
      get: (id) => engine.records.get(id),
    });

    route(app, ctx, {
      method: 'post',
      url: '/v1/rollbacks',
      summary: 'manual rollback, through the same guards',
      tags: ['rollbacks'],
      auth: 'admin',
      body: manualRollbackSchema,
      storeOp: 'records',
      responses: { 202: { description: 'accepted; follow the record', schema: recordSchema } },
      handler: async ({ body }, req, reply) => {
        const { kind, namespace, name, toRevision, reason, requestedBy, dryRun } = body;
        let options;
        try {
          options = parseOptions(kind, body.options);
        } catch (err) {
          if (err instanceof OptionsError) throw new HttpError(400, 'bad_request', `body.${err.message}`);
          throw err;
        }
        // parseOptions validated the options against this kind's own schema
        const ref = { kind, namespace, name, ...(toRevision !== undefined ? { toRevision } : {}), ...(options ? { options } : {}) } as TargetRef;
        const rec = await engine.manual({ ref, reason, requestedBy, dryRun });
        req.log.info({ record: rec.id, target: rec.target, requestedBy }, 'manual rollback requested');
        return reply.code(202).header('location', `/v1/rollbacks/${rec.id}`).send(rec);
      },
    });

    // The admin's requests on one record: each engine answer is the record, not_found (404) or a conflict (409, its reason).
    const pending = (id: string, res: ApprovalResult): RecordRequestResult =>
      res.kind !== 'conflict' ? res
      : res.paused !== undefined ? { kind: 'conflict', message: `${res.paused}: rollback ${id} stays pending approval${res.dueAt !== undefined ? ` (its approval is due by ${new Date(res.dueAt).toISOString()})` : ''}; approve it after POST /v1/resume` }
      : res.reason !== undefined ? { kind: 'conflict', message: `rollback ${id} is closed expired and nothing was run: ${res.reason}` }
      : res.expiredAt !== undefined ? { kind: 'conflict', message: `rollback ${id} expired: its approval was due by ${new Date(res.expiredAt).toISOString()}; it is closed expired and nothing was run` }
      : { kind: 'conflict', message: `rollback ${id} is ${res.state}, not pending approval` };
    const requests: { verb: string; summary: string; done: string; conflict: string; body?: typeof resumeBody; run: (id: string, body: z.output<typeof decisionBody> & { reverted?: string[]; allReverted?: boolean }) => Promise<RecordRequestResult> }[] = [
      { verb: 'approve', summary: 'approve a rollback pending approval', done: 'done', conflict: 'not pending approval, past its approval expiry, or its rule no longer loaded (then closed expired, nothing run); or rollguard is paused (it stays pending: approve it after POST /v1/resume)', run: async (id, b) => pending(id, await engine.approve(id, b.by, b.comment)) },
      { verb: 'reject', summary: 'reject a rollback pending approval', done: 'done', conflict: 'not pending approval, or past its approval expiry (then closed expired)', run: async (id, b) => pending(id, await engine.reject(id, b.by, b.comment)) },
      {
        verb: 'resume-gitops',
        summary: "put back exactly what a rollback suspended on its GitOps owners (Argo CD automated sync, Flux spec.suspend); after the bad commit is reverted in git",
        done: 'resumed',
        conflict: 'nothing suspended, already resumed, still in progress, or other rollbacks rely on the owners and `reverted` does not name them',
        body: resumeBody,
        run: (id, b) => engine.resumeGitOps(id, b.by, b.reverted ?? [], b.allReverted === true),
      },
    ];
    for (const r of requests) {
      route(app, ctx, {
        method: 'post',
        url: `/v1/rollbacks/:id/${r.verb}`,
        summary: r.summary,
        tags: ['rollbacks'],
        auth: 'admin',
        params: idParams,
        body: r.body ?? decisionBody,
        storeOp: 'records',
        responses: { 200: { description: r.done, schema: recordSchema }, 404: notFound, 409: { description: r.conflict, schema: errorSchema } },
        handler: async ({ params, body }) => {
          const res = await r.run(params.id, body);
          if (res.kind === 'not_found') throw new HttpError(404, 'not_found', `no rollback ${params.id}`);
          if (res.kind === 'conflict') throw new HttpError(409, 'conflict', res.message);
          return res.record;
        },
      });
    }
  };
}
