// Canary: scale the canary Deployment to 0 and the stable one up, as the runbooks do
// (seed 001: `kubectl patch deployment backend-api-canary -p '{"spec":{"replicas":0}}'`, then
// `kubectl scale deployment/backend-api-stable --replicas=10`): the canary first, so the bad
// version stops taking traffic at once.
//
// TargetRef.name is the app; options: canary (default `${name}-canary`), stable (default
// `${name}-stable`), stableReplicas (default: stable's replicas + canary's, so capacity stays).
import { RESOURCES, type KubeObject } from '../kube/client.js';
import { CHANGE_CAUSE, DEPLOYMENT_REVISION, POD_TEMPLATE_HASH, ownedReplicaSets } from '../kube/revision.js';
import { deploymentState } from '../kube/rollout-status.js';
import type { Action, ActionContext, PlannedWrite, RollbackPlan, TargetRef, VerifyOptions, VerifyResult } from './action.js';
import { executeWrites, getOrNull, noCluster, notFoundMessage, num, refused, reqOpts, str } from './common.js';
import { currentInfo } from './deployment.js';

export function canaryOptions(ref: TargetRef): { canary: string; stable: string; stableReplicas?: number } {
  const o = ref.options ?? {};
  const stableReplicas = num(o.stableReplicas);
  return {
    canary: str(o.canary) ?? `${ref.name}-canary`,
    stable: str(o.stable) ?? `${ref.name}-stable`,
    ...(stableReplicas !== undefined ? { stableReplicas } : {}),
  };
}

const replicas = (d: KubeObject): number => (typeof d.spec?.replicas === 'number' ? d.spec.replicas : 1);

export const canaryAction: Action = {
  kind: 'Canary',

  async plan(ref: TargetRef, ctx: ActionContext): Promise<RollbackPlan> {
    if (!ctx.kube) return noCluster(ref);
    const o = canaryOptions(ref);
    const canary = await getOrNull(ctx.kube, RESOURCES.deployments, ref.namespace, o.canary, ctx);
    if (!canary) return refused(ref, 'not_found', notFoundMessage(RESOURCES.deployments, o.canary));
    const stable = await getOrNull(ctx.kube, RESOURCES.deployments, ref.namespace, o.stable, ctx);
    if (!stable) return refused(ref, 'not_found', notFoundMessage(RESOURCES.deployments, o.stable));
    const { newRS } = await ownedReplicaSets(ctx.kube, canary, POD_TEMPLATE_HASH, reqOpts(ctx));
    const current = currentInfo(canary, newRS, DEPLOYMENT_REVISION);
    const canaryReplicas = replicas(canary);
    const stableNow = replicas(stable);
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

  execute(plan, ctx) {
    return executeWrites(canaryAction, plan, ctx);
  },

  async verify(plan: RollbackPlan, ctx: ActionContext, opts: VerifyOptions): Promise<VerifyResult> {
    if (!ctx.kube) return { outcome: 'unverified', message: 'no Kubernetes cluster configured' };
    const o = canaryOptions(plan.target);
    const start = Date.now();
    const pollMs = opts.pollMs ?? 1000;
    let last = '';
    for (;;) {
      try {
        const [canary, stable] = await Promise.all([
          ctx.kube.get(RESOURCES.deployments, plan.target.namespace, o.canary, reqOpts(ctx)),
          ctx.kube.get(RESOURCES.deployments, plan.target.namespace, o.stable, reqOpts(ctx)),
        ]);
        if (replicas(canary) !== 0) return { outcome: 'failed', message: `canary "${o.canary}" was scaled back up to ${replicas(canary)} by someone else` };
        const s = deploymentState(stable);
        const c = deploymentState(canary);
        const canaryPods = canary.status?.replicas ?? 0;
        last = `${s.message}; canary pods left: ${canaryPods}`;
        if (s.failed) return { outcome: 'failed', message: s.message };
        if (s.done && c.done && canaryPods === 0) {
          return { outcome: 'succeeded', message: `canary "${o.canary}" at 0 pods; ${s.message}`, details: { stableAvailable: stable.status?.availableReplicas ?? 0 } };
        }
      } catch (err) {
        return { outcome: 'unverified', message: `cannot read the canary state: ${(err as Error).message}` };
      }
      if (Date.now() - start >= opts.timeoutMs) return { outcome: 'unverified', message: `not settled after ${opts.timeoutMs} ms: ${last}` };
      await new Promise((r) => setTimeout(r, pollMs));
    }
  },
};
