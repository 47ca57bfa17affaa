// Undo through ControllerRevisions, shared by the StatefulSet and DaemonSet actions, as
// kubectl's StatefulSetRollbacker / DaemonSetRollbacker (k8s.io/kubectl rollback.go):
//  - the history is the ControllerRevisions the object's selector matches AND it controls;
//  - --to-revision 0 with one entry or none: "no last revision to roll back to";
//  - 0 picks the second-highest .revision, N the revision numbered N ("unable to find specified
//    revision N in history" when absent);
//  - when the revision's template equals the current one: "skipped rollback (current template
//    already matches revision N)";
//  - else the revision's data (`{"spec":{"template":{..., "$patch":"replace"}}}`) is sent as a
//    strategic merge patch.
// Ours adds, in the same patch, metadata.annotations[kubernetes.io/change-cause] and
// metadata.resourceVersion (the value plan() read: a change since makes it a 409 Conflict, which
// re-plans from a fresh read, bounded).
import { withConfigCheck } from '../config-deps/check.js';
import type { KubeObject, ResourceType } from '../kube/kube.js';
import {
  CHANGE_CAUSE,
  controllerRevisionNumber,
  findHistory,
  ownedControllerRevisions,
  semanticEqual,
  timestampMs,
} from '../kube/revision.js';
import { waitForRollout, type RolloutState, type StatusOptions } from '../kube/rollout-status.js';
import type { Action, RollbackPlan, TargetKind, TargetRef, VerifyOptions, VerifyResult } from './action.js';
import { clusterAction, type ClusterContext, currentAnnotations, readWorkloadOrRefuse, refused, reqOpts } from './common.js';
import { revisionNotFoundMessage } from './deployment.js';

/** The pod template a ControllerRevision restores (its data's spec.template without the $patch directive). */
export function revisionTemplate(cr: KubeObject): unknown {
  const data = (cr as { data?: { spec?: { template?: Record<string, unknown> } } }).data;
  const tpl = data?.spec?.template;
  if (!tpl) return undefined;
  const { $patch: _directive, ...rest } = tpl;
  return rest;
}

export function controllerRevisionAction(
  kind: Extract<TargetKind, 'StatefulSet' | 'DaemonSet'>,
  rt: ResourceType,
  state: (o: KubeObject, opts: StatusOptions) => RolloutState,
): Action {
  const word = kind === 'StatefulSet' ? 'statefulset' : 'daemonset';
  const action: Action = clusterAction({
    kind,

    async plan(ref: TargetRef, ctx: ClusterContext): Promise<RollbackPlan> {
      const toRevision = ref.toRevision ?? 0;
      if (toRevision < 0) return refused(ref, 'revision_not_found', revisionNotFoundMessage(toRevision));
      const obj = await readWorkloadOrRefuse(ctx, rt, ref);
      const history = await ownedControllerRevisions(ctx.kube, obj, reqOpts(ctx));
      const newest = history.reduce<KubeObject | null>(
        (m, h) => (!m || controllerRevisionNumber(h) > controllerRevisionNumber(m) ? h : m),
        null,
      );
      const current = {
        revision: newest ? controllerRevisionNumber(newest) : 0,
        createdAt: timestampMs(newest?.metadata.creationTimestamp) ?? timestampMs(obj.metadata.creationTimestamp) ?? 0,
        annotations: currentAnnotations(obj.metadata.annotations, obj.spec?.template?.metadata?.annotations as Record<string, string> | undefined),
      };
      const base = { fromRevision: current.revision, current };
      if (toRevision === 0 && history.length <= 1) return refused(ref, 'no_history', 'no last revision to roll back to', base);
      const to = findHistory(history, toRevision);
      if (!to) return refused(ref, 'revision_not_found', revisionNotFoundMessage(toRevision), base);
      const targetRevision = controllerRevisionNumber(to);
      const withTarget = { ...base, toRevision: targetRevision };
      if (semanticEqual(revisionTemplate(to), obj.spec?.template)) {
        return refused(ref, 'already_matches', `skipped rollback (current template already matches revision ${toRevision})`, withTarget);
      }
      const data = structuredClone((to as { data?: Record<string, unknown> }).data ?? {});
      const patch = {
        ...data,
        metadata: {
          resourceVersion: obj.metadata.resourceVersion,
          ...(ctx.changeCause ? { annotations: { [CHANGE_CAUSE]: ctx.changeCause } } : {}),
        },
      };
      const plan: RollbackPlan = {
        target: ref,
        kind,
        ...withTarget,
        summary: `roll back ${word} ${ref.namespace}/${ref.name} from revision ${current.revision} to revision ${targetRevision} (ControllerRevision ${to.metadata.name})`,
        writes: [
          {
            resource: rt,
            namespace: ref.namespace,
            name: ref.name,
            patchType: 'strategic',
            patch,
            precondition: 'resource-version',
            description: `apply ControllerRevision ${to.metadata.name}'s data as a strategic merge patch`,
            before: obj,
          },
        ],
        plannedAt: Date.now(),
      };
      return withConfigCheck(plan, ctx, { revision: targetRevision, createdAt: timestampMs(to.metadata.creationTimestamp), template: revisionTemplate(to) });
    },

    async verify(plan: RollbackPlan, ctx: ClusterContext, opts: VerifyOptions): Promise<VerifyResult> {
      const minGeneration = opts.execution?.newGeneration;
      return waitForRollout(
        ctx.kube,
        rt,
        plan.target.namespace,
        plan.target.name,
        (o) => state(o, minGeneration !== undefined ? { minGeneration } : {}),
        { timeoutMs: opts.timeoutMs, ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}), ...reqOpts(ctx) },
      );
    },
  });
  return action;
}
