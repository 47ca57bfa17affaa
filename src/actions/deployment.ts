// Deployment undo, as `kubectl rollout undo deployment/NAME [--to-revision=N]` does it
// (k8s.io/kubectl pkg/polymorphichelpers/rollback.go, DeploymentRollbacker):
//  1. the history is the ReplicaSets the Deployment's selector matches and that it controls,
//     numbered by their deployment.kubernetes.io/revision annotation (missing = 0);
//  2. --to-revision 0 (the default) picks the second-highest revision, N picks revision N;
//     refusals, in kubectl's order and words: no such revision, no history, paused, already matches;
//  3. the restored template is the ReplicaSet's without its pod-template-hash label;
//  4. one JSON Patch replaces /spec/template and /metadata/annotations, where the annotations are
//     the ReplicaSet's, except six that keep the Deployment's value (ANNOTATIONS_TO_SKIP).
// Differences from kubectl, both deliberate and invisible in the result: the annotations also get
// kubernetes.io/change-cause saying which rule and alert rolled back, and the patch starts with
// JSON Patch `test`s of /metadata/uid and /metadata/generation against the values plan() read
// (a Deployment deleted and created again under its name has another uid), so a spec change made
// after plan() (a deploy, a scale) fails the write instead of silently mixing; executeWrites then
// re-plans from a fresh read (status-only updates do not move the generation, so they never
// conflict). The API server answers a failed test with a generic 422, which the write marks as a
// precondition failure and handles like a 409 Conflict.
import { withConfigCheck } from '../config-deps/check.js';
import { RESOURCES, type KubeObject } from '../kube/kube.js';
import {
  CHANGE_CAUSE,
  DEPLOYMENT_REVISION,
  POD_TEMPLATE_HASH,
  annotationRevision,
  equalIgnoringLabel,
  ownedReplicaSets,
  pickReplicaSet,
  templateWithoutLabel,
  timestampMs,
} from '../kube/revision.js';
import { deploymentState, waitForRollout } from '../kube/rollout-status.js';
import type { Action, RollbackPlan, TargetRef, VerifyOptions, VerifyResult } from './action.js';
import { clusterAction, type ClusterContext, currentAnnotations, readWorkloadOrRefuse, refused, reqOpts, undoKind } from './common.js';

/** Annotations kubectl keeps from the Deployment instead of copying them from the ReplicaSet. */
export const ANNOTATIONS_TO_SKIP = [
  'kubectl.kubernetes.io/last-applied-configuration',
  'deployment.kubernetes.io/revision',
  'deployment.kubernetes.io/revision-history',
  'deployment.kubernetes.io/desired-replicas',
  'deployment.kubernetes.io/max-replicas',
  'deprecated.deployment.rollback.to',
] as const;

const SKIP = new Set<string>(ANNOTATIONS_TO_SKIP);

export function revisionNotFoundMessage(rev: number): string {
  return `unable to find specified revision ${rev} in history`;
}

/** The annotations kubectl writes: the Deployment's values for the skipped keys, the ReplicaSet's for the rest. */
export function rollbackAnnotations(
  deployment: KubeObject,
  rs: KubeObject,
  changeCause?: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  const dep = deployment.metadata.annotations ?? {};
  for (const k of ANNOTATIONS_TO_SKIP) if (k in dep) out[k] = dep[k] as string;
  for (const [k, v] of Object.entries(rs.metadata.annotations ?? {})) if (!SKIP.has(k)) out[k] = v;
  if (changeCause) out[CHANGE_CAUSE] = changeCause;
  return out;
}

export function currentInfo(owner: KubeObject, newRS: KubeObject | null, revisionKey: string) {
  return {
    revision: annotationRevision(owner, revisionKey) ?? 0,
    createdAt: timestampMs(newRS?.metadata.creationTimestamp) ?? timestampMs(owner.metadata.creationTimestamp) ?? 0,
    annotations: currentAnnotations(owner.metadata.annotations, newRS?.metadata.annotations, owner.spec?.template?.metadata?.annotations as Record<string, string> | undefined),
  };
}

export const deploymentAction: Action = clusterAction({
  kind: 'Deployment',

  async plan(ref: TargetRef, ctx: ClusterContext): Promise<RollbackPlan> {
    const toRevision = ref.toRevision ?? 0;
    if (toRevision < 0) return refused(ref, 'revision_not_found', revisionNotFoundMessage(toRevision));
    const dep = await readWorkloadOrRefuse(ctx, RESOURCES.deployments, ref);

    const { all, newRS } = await ownedReplicaSets(ctx.kube, dep, POD_TEMPLATE_HASH, reqOpts(ctx));
    const current = currentInfo(dep, newRS, DEPLOYMENT_REVISION);
    const base = { fromRevision: current.revision, current };
    const picked = pickReplicaSet(all, toRevision, DEPLOYMENT_REVISION);
    if (!picked.ok) {
      return picked.code === 'revision_not_found'
        ? refused(ref, 'revision_not_found', revisionNotFoundMessage(toRevision), base)
        : refused(ref, 'no_history', `no rollout history found for deployment "${ref.name}"`, base);
    }
    const rs = picked.value;
    const targetRevision = annotationRevision(rs, DEPLOYMENT_REVISION) ?? 0;
    const withTarget = { ...base, toRevision: targetRevision };
    if (dep.spec?.paused === true) {
      return refused(
        ref,
        'paused',
        `you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again`,
        withTarget,
      );
    }
    if (equalIgnoringLabel(rs.spec?.template, dep.spec?.template, POD_TEMPLATE_HASH)) {
      return refused(ref, 'already_matches', `skipped rollback (current template already matches revision ${toRevision})`, withTarget);
    }

    const template = templateWithoutLabel(rs.spec?.template ?? {}, POD_TEMPLATE_HASH);
    const annotations = rollbackAnnotations(dep, rs, ctx.changeCause);
    const patch = [
      // the object plan() read, not one deleted and created again under its name since (its
      // generation may well be the same number)
      { op: 'test', path: '/metadata/uid', value: dep.metadata.uid },
      { op: 'test', path: '/metadata/generation', value: dep.metadata.generation },
      { op: 'replace', path: '/spec/template', value: template },
      // kubectl always replaces; the controller always sets the revision annotation, but a
      // Deployment it has not synced yet may have none, where a replace would be rejected
      { op: dep.metadata.annotations ? 'replace' : 'add', path: '/metadata/annotations', value: annotations },
    ];
    const plan: RollbackPlan = {
      target: ref,
      kind: 'Deployment',
      ...withTarget,
      summary: `roll back deployment ${ref.namespace}/${ref.name} from revision ${current.revision} to revision ${targetRevision} (ReplicaSet ${rs.metadata.name})`,
      writes: [
        {
          resource: RESOURCES.deployments,
          namespace: ref.namespace,
          name: ref.name,
          patchType: 'json',
          patch,
          precondition: 'json-test',
          description: `replace /spec/template with ReplicaSet ${rs.metadata.name}'s template and /metadata/annotations`,
          before: dep,
        },
      ],
      plannedAt: Date.now(),
    };
    return withConfigCheck(plan, ctx, { revision: targetRevision, createdAt: timestampMs(rs.metadata.creationTimestamp), template });
  },

  async verify(plan: RollbackPlan, ctx: ClusterContext, opts: VerifyOptions): Promise<VerifyResult> {
    const ns = plan.target.namespace;
    const name = plan.target.name;
    const since = opts.execution?.at ?? Date.now();
    const minGeneration = opts.execution?.newGeneration;
    // our own copy of the progress deadline: the controller may keep the bad version's
    // ProgressDeadlineExceeded condition while the rollback makes no progress
    let deadlineMs: number | undefined;
    try {
      const d = await ctx.kube.get(RESOURCES.deployments, ns, name, reqOpts(ctx));
      const pds = d.spec?.progressDeadlineSeconds;
      if (typeof pds === 'number') deadlineMs = pds * 1000;
    } catch (err) {
      return { outcome: 'unverified', message: `cannot read deployment ${ns}/${name}: ${(err as Error).message}` };
    }
    const r = await waitForRollout(
      ctx.kube,
      RESOURCES.deployments,
      ns,
      name,
      (o) => deploymentState(o, { ...(minGeneration !== undefined ? { minGeneration } : {}), since }),
      {
        timeoutMs: opts.timeoutMs,
        ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
        ...(deadlineMs !== undefined ? { deadlineMs } : {}),
        since,
        ...reqOpts(ctx),
      },
    );
    return r;
  },
});

/** Deployment: `name` is the Deployment; rule param toRevision; no options. */
export const deploymentKind = undoKind('Deployment', deploymentAction);
