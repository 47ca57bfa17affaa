// Pieces every action shares: refusals, the write loop with its single conflict re-plan, 404s,
// the verification poll, and the helpers a kind's definition (options, rule params) is made of.
import { z } from 'zod';
import { putBackRestored, verifyRestored } from '../config-deps/restore.js';
import { getOrNull, type Kube, type KubeObject, type ResourceType } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { invalidName, type NameKind } from '../kube/names.js';
import { pollUntil, sleep } from '../kube/rollout-status.js';
import { semanticEqual } from '../kube/revision.js';
import {
  MIGRATION_ANNOTATION,
  reqOpts,
  type Action,
  type ActionContext,
  type ExecuteResult,
  type KindDefinition,
  type ParamCheck,
  type PlannedWrite,
  type RefusalCode,
  type RollbackPlan,
  type TargetKind,
  type TargetRef,
  type VerifyOptions,
  type VerifyResult,
} from './action.js';

/** At most this many attempts of one execute(): the first, and up to two after a 409 Conflict. */
export const MAX_ATTEMPTS = 3;

/**
 * The annotations of the current revision, from its sources in order (the object, its current
 * ReplicaSet, its pod template: a later one wins), except the schema-migration mark: "true" in any
 * source stands, so that a copy not yet synced (the controller copies the Deployment's annotations
 * to its ReplicaSet a moment later) never hides it from the approval guard.
 */
export function currentAnnotations(...sources: (Record<string, string> | undefined)[]): Record<string, string> {
  const out: Record<string, string> = Object.assign({}, ...sources.map((a) => a ?? {}));
  if (sources.some((a) => a?.[MIGRATION_ANNOTATION] === 'true')) out[MIGRATION_ANNOTATION] = 'true';
  return out;
}

export function refused(ref: TargetRef, code: RefusalCode, message: string, extra: Partial<RollbackPlan> = {}): RollbackPlan {
  return { target: ref, kind: ref.kind, summary: `refused: ${message}`, ...extra, refusal: { code, message }, plannedAt: Date.now() };
}

/** What to change when there is no cluster: rollguard found neither KUBECONFIG nor an in-cluster ServiceAccount. */
export const NO_CLUSTER = 'no Kubernetes cluster configured: set KUBECONFIG (--kubeconfig) to a kubeconfig file, or run rollguard in a pod with its ServiceAccount';

export function noCluster(ref: TargetRef): RollbackPlan {
  return refused(ref, 'no_cluster', `${NO_CLUSTER}; cannot roll back ${ref.kind} ${ref.namespace}/${ref.name}`);
}

export { reqOpts };

/** kubectl's NotFound wording: deployments.apps "web" not found */
export function notFoundMessage(rt: ResourceType, name: string): string {
  return `${rt.plural}${rt.group ? `.${rt.group}` : ''} "${name}" not found`;
}

/** A refusal found deep in plan(): clusterAction answers its plan. */
export class PlanRefusal extends Error {
  constructor(readonly plan: RollbackPlan) {
    super(plan.summary);
  }
}

/** GET of an object plan() needs: a 404 refuses the plan ('not_found', kubectl's wording); other errors throw. */
export async function readOrRefuse(ctx: ClusterContext, rt: ResourceType, ref: TargetRef, name: string): Promise<KubeObject> {
  const obj = await getOrNull(ctx.kube, rt, ref.namespace, name, reqOpts(ctx));
  if (!obj) throw new PlanRefusal(refused(ref, 'not_found', notFoundMessage(rt, name)));
  return obj;
}

/**
 * The workload rolled back, read (readOrRefuse); refused ('controller_owned') when another
 * controller controls it (an ownerReference with controller: true: an operator's custom resource,
 * Flagger's Canary for its primary Deployment). That controller owns the template and puts it
 * back on its next reconcile, so the rollback would not stick; its own resource is what to roll
 * back. kubectl's undo does not look: rollguard, acting unattended, does.
 */
export async function readWorkloadOrRefuse(ctx: ClusterContext, rt: ResourceType, ref: TargetRef): Promise<KubeObject> {
  const obj = await readOrRefuse(ctx, rt, ref, ref.name);
  const owner = (obj.metadata.ownerReferences ?? []).find((o) => o.controller === true);
  if (owner) {
    const what = rt.kind.toLowerCase();
    throw new PlanRefusal(
      refused(
        ref,
        'controller_owned',
        `${what} "${ref.name}" is controlled by ${owner.kind} ${owner.name} (${owner.apiVersion}), which owns its template and would put it back: roll back the ${owner.kind} instead; rollguard does not roll back a workload another controller owns`,
      ),
    );
  }
  return obj;
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
 * same revision: if a new revision was deployed meanwhile, nothing more is written and the result
 * says so (refusal 'changed_since_plan'); a fresh plan that refuses (e.g. the template already
 * matches because someone else rolled back) ends with applied=false and that refusal. Either way a
 * configuration restore that landed before is written back (putBack / notPutBack), unless the
 * workload already runs the revision it was restored for (already_matches). Every other error
 * throws (KubeApiError) at once: nothing is retried in a loop.
 */
export async function executeWrites(action: Action, plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult> {
  if (plan.refusal) throw new Error(`cannot execute a refused plan (${plan.refusal.code}: ${plan.refusal.message})`);
  if (!ctx.kube) throw new Error(NO_CLUSTER);
  const kube = ctx.kube;
  let current = plan;
  /** writes accepted by the API server, over every attempt */
  const landed: string[] = [];
  /** configuration restores that landed (config-deps/restore.ts), as the API server answered them */
  const restored: { w: PlannedWrite; after: KubeObject }[] = [];
  /** not applied: the configuration restored for it is written back (putBackRestored), said in the result */
  const undoRestores = async () => (restored.length > 0 ? putBackRestored(kube, restored, ctx) : {});
  for (let attempt = 1; ; attempt++) {
    let w: PlannedWrite | undefined;
    const done: string[] = [];
    /** the current write was sent (its error may not prove it did not land) */
    let sent = false;
    try {
      let generation: number | undefined;
      for (w of current.writes ?? []) {
        if (w.pauseBeforeMs && !ctx.dryRun) {
          await sleep(w.pauseBeforeMs, ctx.signal);
          if (ctx.signal?.aborted) throw new Error(`stopped before "${w.description}": cancelled during the pause between steps`);
        }
        await ctx.checkFence();
        sent = true;
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
        if (!ctx.dryRun) landed.push(w.description);
        if (!ctx.dryRun && w.configBefore) restored.push({ w, after: res });
        sent = false;
        // the workload's generation, not that of configuration restored before it (restore.ts)
        if (generation === undefined && !isConfigWrite(w) && typeof res.metadata?.generation === 'number') generation = res.metadata.generation;
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
        // nothing of this rollback reached the cluster, for certain: the write that failed was never
        // sent (the fence, a pause cut short), or the API server refused it (a 4xx but 408)
        if (landed.length === 0 && (!sent || refusedByServer(err))) markNothingWritten(err);
        // the workload's write did not land, for certain (never sent, or refused: an admission
        // webhook, RBAC, a conflict past the last attempt): the configuration restored for it is written back
        if (restored.length > 0 && w && !isConfigWrite(w) && (!sent || refusedByServer(err)) && typeof err === 'object' && err !== null) {
          putBackAfter.set(err, await undoRestores());
        }
        throw err;
      }
      ctx.logger.warn({ attempt, err: err.message }, 'conflict on rollback write; re-planning from a fresh read');
      const fresh = await action.plan(plan.target, ctx);
      const moved = fresh.refusal ? undefined : movedSincePlan(plan, fresh);
      if (moved) {
        const refusal = { code: 'changed_since_plan' as const, message: moved };
        return { applied: false, message: `not applied: ${refusal.message}`, at: Date.now(), attempts: attempt, replanned: fresh, refusal, ...partly(landed), ...(await undoRestores()) };
      }
      if (fresh.refusal) {
        return {
          applied: false,
          message: `not applied: after a conflict the fresh plan refused: ${fresh.refusal.message}`,
          at: Date.now(),
          attempts: attempt,
          replanned: fresh,
          refusal: fresh.refusal,
          ...partly(landed),
          // already_matches: the workload runs the revision the configuration was restored for (someone
          // else rolled it back): the restore stays; any other refusal leaves the revision it ran
          ...(fresh.refusal.code === 'already_matches' ? {} : await undoRestores()),
        };
      }
      current = fresh;
    }
  }
}

/**
 * Why the fresh plan after a conflict is not the same rollback as `plan`, or undefined when it is:
 * the object rolled away from moved to another revision; an object the plan writes was deleted and
 * created again under the same name (another uid: another object, which the alert was not about);
 * or, for a kind with revisions, the pod template being rolled away from changed though its
 * revision number did not yet (a deploy the controller has not numbered: the Deployment
 * controller writes deployment.kubernetes.io/revision, and the StatefulSet controller its new
 * ControllerRevision, a moment after the template changed; the fresh plan would roll that deploy
 * back to the revision before the bad one).
 */
export function movedSincePlan(plan: RollbackPlan, fresh: RollbackPlan): string | undefined {
  const what = `${plan.kind} ${plan.target.namespace}/${plan.target.name}`;
  if (fresh.fromRevision !== plan.fromRevision) {
    return `${what} moved from revision ${plan.fromRevision} to ${fresh.fromRevision} after the rollback was planned; not rolling back the new revision automatically`;
  }
  for (const w of plan.writes ?? []) {
    const now = fresh.writes?.find((f) => f.resource.plural === w.resource.plural && f.resource.group === w.resource.group && f.namespace === w.namespace && f.name === w.name);
    const uid = w.before?.metadata.uid;
    const freshUid = now?.before?.metadata.uid;
    if (uid && freshUid && uid !== freshUid) {
      return `${w.resource.kind} ${w.namespace}/${w.name} was deleted and created again after the rollback was planned (uid ${uid}, now ${freshUid}): not rolling back the new object automatically`;
    }
    if (plan.fromRevision !== undefined && !isConfigWrite(w) && w.before && now?.before && !semanticEqual(w.before.spec?.template, now.before.spec?.template)) {
      return `${what}'s pod template changed after the rollback was planned (a deploy not yet numbered as a revision): not rolling back the new template automatically`;
    }
  }
  return undefined;
}

const partly = (landed: string[]) => (landed.length > 0 ? { partlyWritten: [...landed] } : {});

/** An API server answer that refused the write: a 4xx, but 408 (the request timed out: it may have landed). */
/** The API server refused the write for good (a 4xx, not 408): nothing of it landed. Any other failure (no answer, 408, 5xx) may have come after it landed. */
export const refusedByServer = (err: unknown): err is KubeApiError & { status: number } => err instanceof KubeApiError && typeof err.status === 'number' && err.status >= 400 && err.status < 500 && err.status !== 408;

const putBackAfter = new WeakMap<object, { putBack?: string[]; notPutBack?: string[]; leftAsIs?: string[] }>();
/**
 * For an error thrown by execute() after a configuration restore landed and the workload's write
 * then did not: what executeWrites wrote back (putBack), what it left to newer content (leftAsIs)
 * and what it could not put back (notPutBack).
 */
export const putBackBefore = (err: unknown): { putBack?: string[]; notPutBack?: string[]; leftAsIs?: string[] } | undefined => (typeof err === 'object' && err !== null ? putBackAfter.get(err) : undefined);

const unwritten = new WeakSet<object>();
function markNothingWritten(err: unknown): void {
  if (typeof err === 'object' && err !== null) unwritten.add(err);
}
/**
 * `err`, marked as proving that nothing of the rollback reached the cluster (wroteNothing): for an
 * action's own read before its write (helm.ts reads the release again before helm rollback).
 */
export function nothingWritten(err: unknown): unknown {
  markNothingWritten(err);
  return err;
}
/**
 * Whether an error thrown by execute() proves that nothing of the rollback reached the cluster
 * (executeWrites marks it so). An error it does not mark may have come after a write landed.
 */
export const wroteNothing = (err: unknown): boolean => typeof err === 'object' && err !== null && unwritten.has(err);

/**
 * A write of a ConfigMap or Secret (configDrift: restore, config-deps/restore.ts), beside the
 * workload's and before it: not the plan's main object (no metadata.generation to watch).
 */
export function isConfigWrite(w: Pick<PlannedWrite, 'resource'>): boolean {
  return w.resource.group === '' && (w.resource.plural === 'configmaps' || w.resource.plural === 'secrets');
}

/**
 * Polls `check` for verify(): every opts.pollMs (default 1 s) until it returns a result, the time
 * runs out or ctx.signal aborts (both 'unverified', saying which, with `last()`: the state seen
 * last). A throwing check ends the wait as 'unverified' with the error, prefixed by `readError`.
 */
export async function verifyUntil(
  ctx: ActionContext,
  opts: VerifyOptions,
  check: (elapsedMs: number) => Promise<VerifyResult | undefined>,
  last: () => string,
  readError: string,
): Promise<VerifyResult> {
  try {
    const r = await pollUntil(check, { timeoutMs: opts.timeoutMs, ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}) });
    if (r.ok) return r.value;
    return { outcome: 'unverified', message: `${r.reason === 'aborted' ? `cancelled after ${r.elapsedMs} ms` : `not settled after ${opts.timeoutMs} ms`}: ${last()}` };
  } catch (err) {
    return { outcome: 'unverified', message: `${readError}: ${(err as Error).message}` };
  }
}

/** An action's context once a cluster is configured. */
export type ClusterContext = ActionContext & { kube: Kube };

/** What a kind that reads and writes the cluster's objects defines itself (see clusterAction). */
export interface ClusterActionSpec {
  kind: TargetKind;
  plan(ref: TargetRef, ctx: ClusterContext): Promise<RollbackPlan>;
  verify(plan: RollbackPlan, ctx: ClusterContext, opts: VerifyOptions): Promise<VerifyResult>;
  /** default: executeWrites, the plan's writes in order */
  execute?(plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult>;
}

/**
 * An action on the cluster's objects: without a cluster (no KUBECONFIG, no ServiceAccount) plan()
 * refuses ('no_cluster'), as it does on a PlanRefusal (readOrRefuse), and verify() answers 'unverified'
 * (NO_CLUSTER); execute() sends the plan's
 * writes (executeWrites, re-planning through this action on a conflict) unless the kind has its own.
 */
export function clusterAction(spec: ClusterActionSpec): Action {
  const withCluster = (ctx: ActionContext): ctx is ClusterContext => !!ctx.kube;
  const action: Action = {
    kind: spec.kind,
    plan: async (ref, ctx) => {
      if (!withCluster(ctx)) return noCluster(ref);
      try {
        return await spec.plan(ref, ctx);
      } catch (err) {
        if (err instanceof PlanRefusal) return err.plan;
        throw err;
      }
    },
    execute: (plan, ctx) => (spec.execute ? spec.execute(plan, ctx) : executeWrites(action, plan, ctx)),
    // configuration restored before the workload (configDrift: restore) is checked after it
    verify: async (plan, ctx, opts) => (withCluster(ctx) ? verifyRestored(plan, ctx, await spec.verify(plan, ctx, opts)) : { outcome: 'unverified', message: NO_CLUSTER }),
  };
  return action;
}

/** spec.replicas of a Deployment or Rollout: 1 when unset, as the API server defaults it. */
export function specReplicas(o: KubeObject): number {
  return typeof o.spec?.replicas === 'number' ? o.spec.replicas : 1;
}

/** One object a plan writes: what scope, locks and cooldowns must consider, beside the named target. */
export interface WrittenObject {
  kind: string;
  namespace: string;
  name: string;
}

/**
 * Every object a plan writes (its migration rollback Job, its Kubernetes writes, the Helm release it
 * rolls back and that release's workloads, which helm rewrites: RollbackPlan.changes), each once,
 * in order. So a Helm rollback holds its workloads' locks, passes their scope and leaves them in
 * cooldown: a Deployment rule's `rollout undo` right after it would bring the bad revision back.
 */
export function writtenObjects(plan: RollbackPlan): WrittenObject[] {
  const out: WrittenObject[] = [];
  const add = (o: WrittenObject) => {
    if (!out.some((x) => x.kind === o.kind && x.namespace === o.namespace && x.name === o.name)) out.push(o);
  };
  if (plan.migration) add({ kind: 'Job', namespace: plan.migration.namespace, name: plan.migration.name });
  for (const w of plan.writes ?? []) add({ kind: w.resource.kind, namespace: w.namespace, name: w.name });
  if (plan.release) add({ kind: 'HelmRelease', namespace: plan.release.namespace, name: plan.release.name });
  for (const c of plan.changes ?? []) add({ kind: c.resource.kind, namespace: c.namespace, name: c.name });
  return out;
}

/** A kind's definition, typed from what it says (its kind name and options). */
export function defineKind<const K extends string, O extends object>(d: KindDefinition<K, O>): KindDefinition<K, O> {
  return d;
}

/** A kind that takes a revision and no options: kubectl's rollout undo of Deployments, StatefulSets, DaemonSets. */
export function undoKind<const K extends string>(kind: K, action: Action): KindDefinition<K, Record<string, never>> {
  return { kind, name: 'subdomain', revisions: true, options: z.strictObject({}), params: {}, fromParams: () => ({}), create: () => action };
}

/** The ref's options, through its kind's schema (defaults are the action's to apply). */
export function optionsOf<O extends object>(def: KindDefinition<string, O>, ref: TargetRef): O {
  return def.options.parse(ref.options ?? {});
}

/** A rule param naming a Kubernetes object or label. */
export function nameParam(kind: NameKind): ParamCheck {
  return (v) => invalidName(kind, v);
}

/** A rule param taking one of a few words. */
export function oneOfParam(values: readonly string[]): ParamCheck {
  return (v) => (values.includes(v) ? undefined : `one of ${values.join(', ')}`);
}

/** A rule param taking a whole number in [min, max]. */
export function intParam(min: number, max: number): ParamCheck {
  return (v) => (/^\d{1,9}$/.test(v) && Number(v) >= min && Number(v) <= max ? undefined : `a whole number from ${min} to ${max}`);
}
