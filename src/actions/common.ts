// Pieces every action shares: refusals, the write loop with its single conflict re-plan, 404s.
import type { Kube, KubeObject, RequestOptions, ResourceType } from '../kube/client.js';
import { KubeApiError } from '../kube/errors.js';
import type { Action, ActionContext, ExecuteResult, PlannedWrite, RefusalCode, RollbackPlan, TargetRef } from './action.js';

/** At most this many attempts of one execute(): the first, and up to two after a 409 Conflict. */
export const MAX_ATTEMPTS = 3;

export function refused(ref: TargetRef, code: RefusalCode, message: string, extra: Partial<RollbackPlan> = {}): RollbackPlan {
  return { target: ref, kind: ref.kind, summary: `refused: ${message}`, ...extra, refusal: { code, message }, plannedAt: Date.now() };
}

export function noCluster(ref: TargetRef): RollbackPlan {
  return refused(ref, 'no_cluster', `no Kubernetes cluster configured; cannot roll back ${ref.kind} ${ref.namespace}/${ref.name}`);
}

export function reqOpts(ctx: ActionContext): RequestOptions {
  return ctx.signal ? { signal: ctx.signal } : {};
}

/** GET that answers null for 404 (the caller turns it into a 'not_found' refusal); other errors throw. */
export async function getOrNull(kube: Kube, rt: ResourceType, ns: string, name: string, ctx: ActionContext): Promise<KubeObject | null> {
  try {
    return await kube.get(rt, ns, name, reqOpts(ctx));
  } catch (err) {
    if (err instanceof KubeApiError && err.isNotFound) return null;
    throw err;
  }
}

/** kubectl's NotFound wording: deployments.apps "web" not found */
export function notFoundMessage(rt: ResourceType, name: string): string {
  return `${rt.plural}${rt.group ? `.${rt.group}` : ''} "${name}" not found`;
}

/** The API server's words for a JSON Patch that could not be applied (a failed `test` op among others). */
const PATCH_NOT_APPLICABLE = 'the server rejected our request due to an error in our request';

/** A 409 Conflict, or the 422 of a failed JSON Patch `test` precondition. */
export function isConflict(err: unknown, write?: PlannedWrite): err is KubeApiError {
  if (!(err instanceof KubeApiError)) return false;
  if (err.isConflict) return true;
  return write?.precondition === 'json-test' && err.status === 422 && err.message.includes(PATCH_NOT_APPLICABLE);
}

/**
 * Sends the plan's writes in order, calling checkFence() before each. A conflict (409, or a
 * failed precondition: someone changed the object since plan() read it) re-plans from a fresh read
 * and tries again, at most MAX_ATTEMPTS attempts in all. The fresh plan must roll away from the
 * same revision: if a new revision was deployed meanwhile, nothing is written and the result says
 * so (refusal 'changed_since_plan'); a fresh plan that refuses (e.g. the template already matches
 * because someone else rolled back) ends with applied=false and that refusal. Every other error
 * throws (KubeApiError) at once: nothing is retried in a loop.
 */
export async function executeWrites(action: Action, plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult> {
  if (plan.refusal) throw new Error(`cannot execute a refused plan (${plan.refusal.code}: ${plan.refusal.message})`);
  if (!ctx.kube) throw new Error('no Kubernetes cluster configured');
  const kube = ctx.kube;
  let current = plan;
  for (let attempt = 1; ; attempt++) {
    let w: PlannedWrite | undefined;
    const done: string[] = [];
    try {
      let generation: number | undefined;
      for (w of current.writes ?? []) {
        await ctx.checkFence();
        const res = await kube.patch(w.resource, w.namespace, w.name, w.patch, w.patchType, {
          ...reqOpts(ctx),
          ...(w.subresource ? { subresource: w.subresource } : {}),
          ...(ctx.dryRun ? { dryRun: true } : {}),
        });
        ctx.logger.info(
          { kind: current.kind, target: `${w.namespace}/${w.name}`, write: w.description, dryRun: !!ctx.dryRun },
          'rollback write accepted',
        );
        done.push(w.description);
        if (generation === undefined && typeof res.metadata?.generation === 'number') generation = res.metadata.generation;
      }
      return {
        applied: !ctx.dryRun,
        message: `${ctx.dryRun ? '(server dry run) ' : ''}${current.summary}`,
        ...(generation !== undefined ? { newGeneration: generation } : {}),
        at: Date.now(),
        attempts: attempt,
        ...(current !== plan ? { replanned: current } : {}),
      };
    } catch (err) {
      if (!isConflict(err, w) || attempt >= MAX_ATTEMPTS) {
        if (done.length > 0) {
          ctx.logger.error({ applied: done, failed: w?.description, err: (err as Error).message }, 'rollback partly applied: a later write failed');
        }
        throw err;
      }
      ctx.logger.warn({ attempt, err: err.message }, 'conflict on rollback write; re-planning from a fresh read');
      const fresh = await action.plan(plan.target, ctx);
      if (!fresh.refusal && fresh.fromRevision !== plan.fromRevision) {
        const refusal = {
          code: 'changed_since_plan' as const,
          message: `${plan.kind} ${plan.target.namespace}/${plan.target.name} moved from revision ${plan.fromRevision} to ${fresh.fromRevision} after the rollback was planned; not rolling back the new revision automatically`,
        };
        return { applied: false, message: `not applied: ${refusal.message}`, at: Date.now(), attempts: attempt, replanned: fresh, refusal };
      }
      if (fresh.refusal) {
        return {
          applied: false,
          message: `not applied: after a conflict the fresh plan refused: ${fresh.refusal.message}`,
          at: Date.now(),
          attempts: attempt,
          replanned: fresh,
          refusal: fresh.refusal,
        };
      }
      current = fresh;
    }
  }
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
