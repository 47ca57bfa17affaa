import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Engine } from '../engine/pipeline.js';
import { OPEN_STATES, type RollbackRecord, type RollbackState } from '../engine/record.js';
import { readPause } from '../guards/pause.js';
import { PrometheusUnavailableError, type PrometheusApi } from '../prometheus/client.js';
import type { AppContext, RouteModule } from './context.js';
import { route } from './route.js';

/** Records that changed (or were meant to change) the cluster: the "last rollback". */
const ROLLBACK_STATES: readonly RollbackState[] = ['in_progress', 'succeeded', 'failed', 'unverified', 'interrupted', 'dry_run'];
/** Counted up to this many per state; more shows as this number and `capped`. */
const COUNT_CAP = 1000;
const PROMETHEUS_CHECK_MS = 3000;

const check = z.object({ ok: z.boolean(), detail: z.string() });
const summary = z.object({ id: z.string(), target: z.string(), state: z.string(), createdAt: z.number(), updatedAt: z.number().optional(), rule: z.string().optional(), dueAt: z.number().optional() });
export const statusSchema = z.object({
  version: z.string(),
  replica: z.string(),
  dryRun: z.boolean(),
  store: check.extend({ kind: z.enum(['memory', 'redis']) }),
  prometheus: check.extend({ configured: z.boolean() }),
  rules: z.object({ loaded: z.number() }),
  paused: z.object({ paused: z.boolean(), by: z.string().optional(), at: z.number().optional(), reason: z.string().optional() }).nullable(),
  open: z.record(z.string(), z.number()).nullable(),
  capped: z.boolean(),
  pendingApprovals: z.array(summary).nullable(),
  lastRollback: summary.nullable(),
});
export type Status = z.infer<typeof statusSchema>;

export interface StatusOptions {
  engine: Engine;
  prometheus: PrometheusApi | null;
  rules: () => number;
  version: string;
  /** whether this replica changes nothing (DRY_RUN, or no cluster configured) */
  dryRun: boolean;
}

const brief = (r: RollbackRecord): z.infer<typeof summary> => ({
  id: r.id,
  target: r.target,
  state: r.state,
  createdAt: r.createdAt,
  updatedAt: r.updatedAt,
  ...(r.rule ? { rule: r.rule } : {}),
  ...(r.dueAt !== undefined ? { dueAt: r.dueAt } : {}),
});

/**
 * GET /v1/status: what an operator asks first (`rollguard status`), in one answer: paused or not,
 * rollbacks open by state, those pending approval, the last rollback, and whether the store and
 * Prometheus answer. Always 200: a store that cannot be read is reported, not an error, so that
 * Prometheus' health is still shown.
 */
export function statusRoutes(opts: StatusOptions): RouteModule {
  return (app: FastifyInstance, ctx: AppContext) => {
    route(app, ctx, {
      method: 'get',
      url: '/v1/status',
      summary: 'paused, open rollbacks by state, pending approvals, the last rollback, store and Prometheus health',
      tags: ['control'],
      auth: 'read',
      responses: { 200: { description: 'the status', schema: statusSchema } },
      handler: async (): Promise<Status> => {
        const [store, prometheus] = await Promise.all([storeView(ctx, opts), prometheusCheck(opts.prometheus, ctx.now())]);
        return {
          version: opts.version,
          replica: ctx.config.CONSUMER_NAME,
          dryRun: opts.dryRun,
          rules: { loaded: opts.rules() },
          prometheus,
          ...store,
        };
      },
    });
  };
}

async function storeView(ctx: AppContext, opts: StatusOptions): Promise<Pick<Status, 'store' | 'paused' | 'open' | 'capped' | 'pendingApprovals' | 'lastRollback'>> {
  const kind = ctx.store.kind;
  try {
    const list = (state: RollbackState, limit: number) => opts.engine.records.list({ state, limit });
    const [pause, open, last] = await Promise.all([
      readPause(ctx.store),
      Promise.all(OPEN_STATES.map(async (s) => [s, await list(s, COUNT_CAP)] as const)),
      Promise.all(ROLLBACK_STATES.map((s) => list(s, 1))),
    ]);
    const lastRollback = last.flat().sort((a, b) => b.createdAt - a.createdAt)[0];
    const pending = open.find(([s]) => s === 'pending_approval')?.[1] ?? [];
    return {
      store: { kind, ok: true, detail: 'ok' },
      paused: pause ? { paused: true, ...pause } : { paused: false },
      open: Object.fromEntries(open.map(([s, recs]) => [s, recs.length])),
      capped: open.some(([, recs]) => recs.length >= COUNT_CAP),
      pendingApprovals: pending.slice(0, 50).map(brief),
      lastRollback: lastRollback ? brief(lastRollback) : null,
    };
  } catch (err) {
    return { store: { kind, ok: false, detail: err instanceof Error ? err.message : String(err) }, paused: null, open: null, capped: false, pendingApprovals: null, lastRollback: null };
  }
}

async function prometheusCheck(prom: PrometheusApi | null, now: number): Promise<Status['prometheus']> {
  if (!prom) return { configured: false, ok: false, detail: "PROMETHEUS_URL not set: triggers are not confirmed; each rule's onPrometheusDown applies" };
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      // a health check: it does not wait its turn behind the alerts' queries (PROMETHEUS_MAX_CONCURRENT)
      prom.query('vector(1)', now, { precedence: 'check' }),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new PrometheusUnavailableError(`no answer within ${PROMETHEUS_CHECK_MS} ms`)), PROMETHEUS_CHECK_MS))),
    ]);
    return { configured: true, ok: true, detail: 'ok' };
  } catch (err) {
    return { configured: true, ok: false, detail: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}
