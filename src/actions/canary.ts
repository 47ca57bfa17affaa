// Canary: scale the canary Deployment to 0 and the stable one up, as the runbooks do
// (`kubectl patch deployment backend-api-canary -p '{"spec":{"replicas":0}}'`, then
// `kubectl scale deployment/backend-api-stable --replicas=10`): the canary first, so the bad
// version stops taking traffic at once.
//
// TargetRef.name is the app; options (canaryOptions): canary (default `${name}-canary`), stable
// (default `${name}-stable`), stableReplicas (default: stable's replicas + canary's, so capacity
// stays). A rule's target names the canary Deployment itself; its param `stable` names the other.
import { z } from 'zod';
import { RESOURCES } from '../kube/kube.js';
import { nameSchema } from '../kube/names.js';
import { CHANGE_CAUSE, DEPLOYMENT_REVISION, POD_TEMPLATE_HASH, ownedReplicaSets } from '../kube/revision.js';
import { deploymentState } from '../kube/rollout-status.js';
import type { Action, PlannedWrite, RollbackPlan, TargetRef, VerifyOptions, VerifyResult } from './action.js';
import { clusterAction, type ClusterContext, defineKind, nameParam, optionsOf, readOrRefuse, refused, reqOpts, specReplicas, verifyUntil } from './common.js';
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

export const canaryAction: Action = clusterAction({
  kind: 'Canary',

  async plan(ref: TargetRef, ctx: ClusterContext): Promise<RollbackPlan> {
    const o = resolved(ref);
    const canary = await readOrRefuse(ctx, RESOURCES.deployments, ref, o.canary);
    const stable = await readOrRefuse(ctx, RESOURCES.deployments, ref, o.stable);
    const { newRS } = await ownedReplicaSets(ctx.kube, canary, POD_TEMPLATE_HASH, reqOpts(ctx));
    const current = currentInfo(canary, newRS, DEPLOYMENT_REVISION);
    const canaryReplicas = specReplicas(canary);
    const stableNow = specReplicas(stable);
    const stableTarget = o.stableReplicas ?? stableNow + canaryReplicas;
    if (canaryReplicas === 0 && stableNow >= stableTarget) {
      return refused(ref, 'already_matches', `canary deployment "${o.canary}" is already scaled to 0`, { current });
    }
    if (stableTarget < 1) {
      return refused(ref, 'target_not_ready', `stable deployment "${o.stable}" would have 0 replicas; set options.stableReplicas`, { current });
    }
    const writes: PlannedWrite[] = [];
    if (canaryReplicas !== 0) {
      writes.push({
        resource: RESOURCES.deployments,
        namespace: ref.namespace,
        name: o.canary,
        patchType: 'merge',
        patch: { metadata: ctx.changeCause ? { annotations: { [CHANGE_CAUSE]: ctx.changeCause } } : {}, spec: { replicas: 0 } },
        description: `scale canary ${o.canary} from ${canaryReplicas} to 0`,
        before: canary,
      });
    }
    if (stableTarget !== stableNow) {
      writes.push({
        resource: RESOURCES.deployments,
        namespace: ref.namespace,
        name: o.stable,
        patchType: 'merge',
        patch: { spec: { replicas: stableTarget } },
        description: `scale stable ${o.stable} from ${stableNow} to ${stableTarget}`,
        before: stable,
      });
    }
    return {
      target: ref,
      kind: 'Canary',
      current,
      summary: `scale canary ${ref.namespace}/${o.canary} to 0 and stable ${o.stable} to ${stableTarget} (was ${canaryReplicas} + ${stableNow})`,
      writes,
      plannedAt: Date.now(),
    };
  },

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
