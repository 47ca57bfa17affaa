// Canary: scale the canary Deployment to 0 and the stable one up, as the runbooks do
// (`kubectl patch deployment backend-api-canary -p '{"spec":{"replicas":0}}'`, then
// `kubectl scale deployment/backend-api-stable --replicas=10`): the canary first, so the bad
// version stops taking traffic at once.
//
// TargetRef.name is the app; options (canaryOptions): canary (default `${name}-canary`), stable
// (default `${name}-stable`), stableReplicas (default: stable's replicas + canary's, so capacity
// stays). A rule's target names the canary Deployment itself; its param `stable` names the other.
//
// Both writes carry the resourceVersion plan() read (a scale by an HPA or a person since is a 409
// Conflict). On a conflict the re-plan (replanAfterConflict) keeps the planned stable count and
// refuses ('changed_since_plan') when either Deployment's replicas moved since the plan, but the
// canary's to 0 by the first write. The default stable count is bounded (stableGrowthBound): a
// canary whose replicas were raised (5,000) does not make rollguard scale the stable one by as much.
//
// A replica that dies between the two writes: its recovery (ActionContext.recovering) finds the
// canary at 0 with this rollback's change cause, and goes on with the stable count the first plan
// chose, which the record keeps (WriteSummary.replicas): resumeStable. Refused, not scaled over,
// when the stable Deployment's replicas moved since.
import { z } from 'zod';
import { RESOURCES, type KubeObject } from '../kube/kube.js';
import { nameSchema } from '../kube/names.js';
import { CHANGE_CAUSE, DEPLOYMENT_REVISION, POD_TEMPLATE_HASH, ownedReplicaSets } from '../kube/revision.js';
import { deploymentState } from '../kube/rollout-status.js';
import type { Action, ActionContext, PlannedWrite, RollbackPlan, TargetRef, VerifyOptions, VerifyResult } from './action.js';
import { clusterAction, type ClusterContext, defineKind, executeWrites, nameParam, optionsOf, readOrRefuse, refused, reqOpts, specReplicas, verifyUntil } from './common.js';
import { currentInfo } from './deployment.js';

export const canaryOptions = z.strictObject({
  /** the canary Deployment, scaled to 0 (default `${name}-canary`) */
  canary: nameSchema('subdomain').optional(),
  /** the stable Deployment, scaled up (default `${name}-stable`) */
  stable: nameSchema('subdomain').optional(),
  /** the stable Deployment's replicas afterwards (default: its replicas + the canary's) */
  stableReplicas: z.number().int().min(1).max(100_000).optional(),
});

function resolved(ref: TargetRef): { canary: string; stable: string; stableReplicas?: number } {
  const o = optionsOf(canaryKind, ref);
  return {
    canary: o.canary ?? `${ref.name}-canary`,
    stable: o.stable ?? `${ref.name}-stable`,
    ...(o.stableReplicas !== undefined ? { stableReplicas: o.stableReplicas } : {}),
  };
}

/**
 * The most the stable Deployment is scaled to by default (stable + canary replicas): twice its
 * replicas plus 10. A canary takes a share of the stable's traffic, so its replicas are rarely more
 * than the stable's; whoever can edit the canary's replicas must not make rollguard add thousands
 * of pods to the stable one. options.stableReplicas, set explicitly, is not bounded by it.
 */
export function stableGrowthBound(stableNow: number): number {
  return 2 * stableNow + 10;
}

const canaryWrite = (ns: string, name: string, from: number, d: KubeObject, changeCause: string | undefined): PlannedWrite => ({
  resource: RESOURCES.deployments,
  namespace: ns,
  name,
  patchType: 'merge',
  patch: {
    metadata: { resourceVersion: d.metadata.resourceVersion, ...(changeCause ? { annotations: { [CHANGE_CAUSE]: changeCause } } : {}) },
    spec: { replicas: 0 },
  },
  precondition: 'resource-version',
  description: `scale canary ${name} from ${from} to 0`,
  before: d,
});

const stableWrite = (ns: string, name: string, from: number, to: number, d: KubeObject): PlannedWrite => ({
  resource: RESOURCES.deployments,
  namespace: ns,
  name,
  patchType: 'merge',
  patch: { metadata: { resourceVersion: d.metadata.resourceVersion }, spec: { replicas: to } },
  precondition: 'resource-version',
  description: `scale stable ${name} from ${from} to ${to}`,
  before: d,
  // kept in the record (WriteSummary.replicas): a recovery goes on with this count (resumeStable)
  replicas: { before: from, after: to },
});

/**
 * Recovering this very rollback (ActionContext.recovering), whose first write landed: the canary is
 * at 0 and carries this rollback's change cause. The replica running it died before the stable
 * write, so stable + canary no longer says the count it chose (the canary's replicas are gone): the
 * record's summary of that write keeps it (ActionContext.firstWrites, WriteSummary.replicas). The
 * plan goes on with it (resumes): stable from the count the first plan read to the one it chose.
 * Refused ('changed_since_plan', without `current`, so that the recovery does not take it as
 * applied) when the stable Deployment's replicas are neither: an HPA or a person scaled it since,
 * and rollguard does not scale over them. undefined: nothing to go on with (not recovering, the
 * canary write did not land, the first plan had no stable write, the stable write landed too, or a
 * record of an earlier version that did not keep the count): planned as before.
 */
function resumeStable(ref: TargetRef, ctx: ClusterContext, o: { canary: string; stable: string }, canary: KubeObject, stable: KubeObject, current: RollbackPlan['current']): RollbackPlan | undefined {
  if (!ctx.recovering || !ctx.changeCause || specReplicas(canary) !== 0 || canary.metadata.annotations?.[CHANGE_CAUSE] !== ctx.changeCause) return undefined;
  const first = ctx.firstWrites?.find((w) => w.kind === 'Deployment' && w.namespace === ref.namespace && w.name === o.stable)?.replicas;
  if (!first) return undefined;
  const stableNow = specReplicas(stable);
  if (stableNow === first.after) return undefined;
  if (stableNow !== first.before) {
    return refused(
      ref,
      'changed_since_plan',
      `canary "${o.canary}" was scaled to 0 by this rollback before its replica died; stable deployment "${o.stable}" was scaled from ${first.before} to ${stableNow} since (an HPA or a person): not scaled over to ${first.after}; scale "${o.stable}" by hand if it needs the canary's capacity`,
    );
  }
  return {
    target: ref,
    kind: 'Canary',
    ...(current ? { current } : {}),
    summary: `canary ${ref.namespace}/${o.canary} already at 0, scaled by this rollback before it was cut off; go on: scale stable ${o.stable} from ${stableNow} to ${first.after}`,
    writes: [stableWrite(ref.namespace, o.stable, stableNow, first.after, stable)],
    resumes: true,
    plannedAt: Date.now(),
  };
}

/**
 * The plan after a conflict (executeWrites calls it from a fresh read): the same scale as `plan`,
 * with the fresh resourceVersions, and the stable count `plan` chose (the canary may already be at 0
 * by our first write, so stable + canary no longer says it). Refused ('changed_since_plan') when the
 * stable Deployment's replicas, or the canary's (but to 0), changed since the plan: an HPA or a
 * person scaled it, and rollguard does not scale over them.
 */
async function replanAfterConflict(plan: RollbackPlan, ctx: ClusterContext): Promise<RollbackPlan> {
  const ref = plan.target;
  const o = resolved(ref);
  const base = plan.current ? { current: plan.current } : {};
  const planned = (name: string) => plan.writes?.find((w) => w.name === name);
  const plannedCanary = planned(o.canary);
  const plannedStable = planned(o.stable);
  if ((plannedCanary && !plannedCanary.before) || (plannedStable && !plannedStable.before)) {
    return refused(ref, 'changed_since_plan', `deployment "${o.canary}" or "${o.stable}" changed after the rollback was planned; roll back again to plan from what they run now`, base);
  }
  const canary = await readOrRefuse(ctx, RESOURCES.deployments, ref, o.canary);
  const stable = await readOrRefuse(ctx, RESOURCES.deployments, ref, o.stable);
  const canaryWas = plannedCanary ? specReplicas(plannedCanary.before!) : 0;
  const canaryNow = specReplicas(canary);
  if (canaryNow !== canaryWas && canaryNow !== 0) {
    return refused(ref, 'changed_since_plan', `canary deployment "${o.canary}" was scaled from ${canaryWas} to ${canaryNow} after the rollback was planned; not scaled over: roll back again to plan from its replicas now`, base);
  }
  const writes: PlannedWrite[] = [];
  if (canaryNow !== 0) writes.push(canaryWrite(ref.namespace, o.canary, canaryNow, canary, ctx.changeCause));
  let stableTarget = specReplicas(stable);
  if (plannedStable) {
    const stableWas = specReplicas(plannedStable.before!);
    const stableNow = specReplicas(stable);
    stableTarget = plannedStable.replicas!.after; // stableWrite always keeps its counts
    if (stableNow !== stableWas) {
      return refused(
        ref,
        'changed_since_plan',
        `stable deployment "${o.stable}" was scaled from ${stableWas} to ${stableNow} after the rollback was planned (an HPA or a person): not scaled over to ${stableTarget}; ${canaryNow === 0 ? `canary "${o.canary}" is at 0; ` : ''}scale "${o.stable}" by hand if it needs the canary's capacity`,
        base,
      );
    }
    writes.push(stableWrite(ref.namespace, o.stable, stableNow, stableTarget, stable));
  }
  if (writes.length === 0) return refused(ref, 'already_matches', `canary deployment "${o.canary}" is already scaled to 0`, base);
  return { ...plan, writes, plannedAt: Date.now() };
}

export const canaryAction: Action = clusterAction({
  kind: 'Canary',

  async plan(ref: TargetRef, ctx: ClusterContext): Promise<RollbackPlan> {
    const o = resolved(ref);
    const canary = await readOrRefuse(ctx, RESOURCES.deployments, ref, o.canary);
    const stable = await readOrRefuse(ctx, RESOURCES.deployments, ref, o.stable);
    const { newRS } = await ownedReplicaSets(ctx.kube, canary, POD_TEMPLATE_HASH, reqOpts(ctx));
    const current = currentInfo(canary, newRS, DEPLOYMENT_REVISION);
    const resumed = resumeStable(ref, ctx, o, canary, stable, current);
    if (resumed) return resumed;
    const canaryReplicas = specReplicas(canary);
    const stableNow = specReplicas(stable);
    const stableTarget = o.stableReplicas ?? stableNow + canaryReplicas;
    if (canaryReplicas === 0 && stableNow >= stableTarget) {
      return refused(ref, 'already_matches', `canary deployment "${o.canary}" is already scaled to 0`, { current });
    }
    if (stableTarget < 1) {
      return refused(ref, 'target_not_ready', `stable deployment "${o.stable}" would have 0 replicas; set options.stableReplicas`, { current });
    }
    if (o.stableReplicas === undefined && stableTarget > stableGrowthBound(stableNow)) {
      return refused(
        ref,
        'unsupported',
        `stable deployment "${o.stable}" would be scaled from ${stableNow} to ${stableTarget} (its replicas plus canary "${o.canary}"'s ${canaryReplicas}), more than ${stableGrowthBound(stableNow)} (twice its replicas plus 10): check who set the canary's replicas, and roll back by hand or with options.stableReplicas set to the count the stable Deployment should run (POST /v1/rollbacks)`,
        { current },
      );
    }
    const writes: PlannedWrite[] = [];
    if (canaryReplicas !== 0) writes.push(canaryWrite(ref.namespace, o.canary, canaryReplicas, canary, ctx.changeCause));
    if (stableTarget !== stableNow) writes.push(stableWrite(ref.namespace, o.stable, stableNow, stableTarget, stable));
    return {
      target: ref,
      kind: 'Canary',
      current,
      summary: `scale canary ${ref.namespace}/${o.canary} to 0 and stable ${o.stable} to ${stableTarget} (was ${canaryReplicas} + ${stableNow})`,
      writes,
      plannedAt: Date.now(),
    };
  },

  // executeWrites, re-planning after a conflict with replanAfterConflict (the planned stable count, not a fresh one)
  execute: (plan: RollbackPlan, ctx: ActionContext) =>
    executeWrites({ ...canaryAction, plan: async (_ref, c) => replanAfterConflict(plan, c as ClusterContext) }, plan, ctx),

  async verify(plan: RollbackPlan, ctx: ClusterContext, opts: VerifyOptions): Promise<VerifyResult> {
    const o = resolved(plan.target);
    const ns = plan.target.namespace;
    let last = '';
    return verifyUntil(
      ctx,
      opts,
      async (): Promise<VerifyResult | undefined> => {
        const [canary, stable] = await Promise.all([
          ctx.kube!.get(RESOURCES.deployments, ns, o.canary, reqOpts(ctx)),
          ctx.kube!.get(RESOURCES.deployments, ns, o.stable, reqOpts(ctx)),
        ]);
        if (specReplicas(canary) !== 0) return { outcome: 'failed', message: `canary "${o.canary}" was scaled back up to ${specReplicas(canary)} by someone else` };
        const s = deploymentState(stable);
        const c = deploymentState(canary);
        const canaryPods = canary.status?.replicas ?? 0;
        last = `${s.message}; canary pods left: ${canaryPods}`;
        if (s.failed) return { outcome: 'failed', message: s.message };
        if (s.done && c.done && canaryPods === 0) {
          return { outcome: 'succeeded', message: `canary "${o.canary}" at 0 pods; ${s.message}`, details: { stableAvailable: stable.status?.availableReplicas ?? 0 } };
        }
        return undefined;
      },
      () => last,
      'cannot read the canary state',
    );
  },
});

/** Canary: `name` is the canary Deployment; rule param stable (the stable Deployment). */
export const canaryKind = defineKind({
  kind: 'Canary',
  name: 'subdomain',
  revisions: false,
  options: canaryOptions,
  params: { stable: nameParam('subdomain') },
  fromParams: (name, p) => ({ canary: name, ...(p.stable !== undefined ? { stable: p.stable } : {}) }),
  create: () => canaryAction,
});
