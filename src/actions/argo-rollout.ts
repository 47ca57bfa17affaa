// Argo Rollouts, two modes (options.mode; rule param `mode`, and `toRevision` for undo):
//  - 'abort' (default), as `kubectl argo rollouts abort NAME`: {"status":{"abort":true}} on the
//    status subresource (a JSON Patch that first tests /metadata/uid and /metadata/generation,
//    where the plugin sends a merge patch), falling back to the main resource when the status
//    subresource is not served (404), exactly as the plugin. The controller then shifts traffic
//    back to the stable ReplicaSet; spec.template still holds the new version.
//  - 'undo', as `kubectl argo rollouts undo NAME [--to-revision=N]`: the ReplicaSets the Rollout's
//    selector matches and that it controls, numbered by rollout.argoproj.io/revision; 0 = the
//    second-highest; the chosen template without its rollouts-pod-template-hash label replaces
//    /spec/template in one JSON Patch (the plugin copies no annotations). Refusals in the plugin's
//    words. Ours adds tests of /metadata/uid and /metadata/generation and the
//    kubernetes.io/change-cause annotation.
//    Ours refuses ('unsupported') a Rollout with spec.workloadRef (the plugin patches the referenced
//    workload's template instead), a Rollout without a pod template, and a revision whose
//    ReplicaSet has none.
import { z } from 'zod';
import { RESOURCES, type KubeObject } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import {
  CHANGE_CAUSE,
  ROLLOUT_REVISION,
  ROLLOUTS_POD_TEMPLATE_HASH,
  annotationRevision,
  isControlledBy,
  pickReplicaSet,
  selectorToString,
  semanticDerivative,
  templateWithoutLabel,
  timestampMs,
} from '../kube/revision.js';
import type { Action, ActionContext, ExecuteResult, RollbackPlan, TargetRef, VerifyOptions, VerifyResult } from './action.js';
import { clusterAction, type ClusterContext, defineKind, executeWrites, oneOfParam, optionsOf, readOrRefuse, refused, reqOpts, specReplicas, verifyUntil } from './common.js';
import { currentInfo, revisionNotFoundMessage } from './deployment.js';

const MODES = ['abort', 'undo'] as const;
export type RolloutMode = (typeof MODES)[number];

export const rolloutOptions = z.strictObject({
  /** 'abort' (default), as `kubectl argo rollouts abort`; 'undo', as `kubectl argo rollouts undo` */
  mode: z.enum(MODES).optional(),
});

export function rolloutMode(ref: TargetRef): RolloutMode {
  return optionsOf(rolloutKind, ref).mode ?? 'abort';
}

async function rolloutReplicaSets(ctx: ActionContext, ro: KubeObject): Promise<KubeObject[]> {
  const list = await ctx.kube!.list(RESOURCES.replicasets, ro.metadata.namespace ?? '', {
    ...reqOpts(ctx),
    labelSelector: selectorToString(ro.spec?.selector, ro),
  });
  return list.filter((rs) => isControlledBy(rs, ro));
}

const hashOf = (rs: KubeObject | undefined) => rs?.metadata.labels?.[ROLLOUTS_POD_TEMPLATE_HASH];

function currentOf(ro: KubeObject, rss: KubeObject[]) {
  const cur = rss.find((rs) => hashOf(rs) && hashOf(rs) === ro.status?.currentPodHash);
  // as a Deployment's, but for the revision: the current ReplicaSet's when the Rollout has none
  return { ...currentInfo(ro, cur ?? null, ROLLOUT_REVISION), revision: annotationRevision(ro, ROLLOUT_REVISION) ?? annotationRevision(cur ?? ro, ROLLOUT_REVISION) ?? 0 };
}

/** A pod template with at least one container: anything less is no template to compare or restore. */
function hasPodTemplate(t: unknown): boolean {
  const containers = (t as { spec?: { containers?: unknown } } | null | undefined)?.spec?.containers;
  return Array.isArray(containers) && containers.length > 0;
}

export const argoRolloutAction: Action = clusterAction({
  kind: 'Rollout',

  async plan(ref: TargetRef, ctx: ClusterContext): Promise<RollbackPlan> {
    const mode = rolloutMode(ref);
    const ro = await readOrRefuse(ctx, RESOURCES.rollouts, ref, ref.name);
    const rss = await rolloutReplicaSets(ctx, ro);
    const current = currentOf(ro, rss);
    const base = { fromRevision: current.revision, current };

    if (mode === 'abort') {
      if (ro.status?.abort === true) return refused(ref, 'already_matches', `rollout '${ref.name}' is already aborted`, base);
      const stable = rss.find((rs) => hashOf(rs) && hashOf(rs) === ro.status?.stableRS);
      const stableRev = stable ? annotationRevision(stable, ROLLOUT_REVISION) : null;
      return {
        target: ref,
        kind: 'Rollout',
        ...base,
        ...(stableRev !== null && stableRev !== undefined && stable ? { toRevision: stableRev } : {}),
        summary: `abort rollout ${ref.namespace}/${ref.name}: traffic back to the stable ReplicaSet${stable ? ` ${stable.metadata.name}` : ''} (spec.template keeps the new version, as kubectl argo rollouts abort)`,
        writes: [
          {
            resource: RESOURCES.rollouts,
            namespace: ref.namespace,
            name: ref.name,
            // the plugin's merge patch {"status":{"abort":true}}, as a JSON Patch that first tests
            // the uid and generation plan() read: a Rollout deleted and created again under its
            // name, or given a new template (a deploy) since, is not aborted blindly (a 422, then a
            // fresh plan: executeWrites). Status updates do not move the generation.
            patchType: 'json',
            patch: [
              { op: 'test', path: '/metadata/uid', value: ro.metadata.uid },
              { op: 'test', path: '/metadata/generation', value: ro.metadata.generation },
              ro.status && typeof ro.status === 'object' ? { op: 'add', path: '/status/abort', value: true } : { op: 'add', path: '/status', value: { abort: true } },
            ],
            precondition: 'json-test',
            subresource: 'status',
            description: 'set status.abort=true',
            before: ro,
          },
        ],
        plannedAt: Date.now(),
      };
    }

    // Upstream undo of a Rollout with spec.workloadRef patches the referenced workload's template
    // (a Deployment, ReplicaSet or PodTemplate), not the Rollout: ours writes only the Rollout's own
    // spec.template, so it refuses rather than compare against a template that is not there.
    const workloadRef = ro.spec?.workloadRef as { kind?: string; name?: string } | undefined;
    if (workloadRef) {
      const what = `${workloadRef.kind ?? 'workload'} "${workloadRef.name ?? '?'}"`;
      return refused(
        ref,
        'unsupported',
        `rollout "${ref.name}" takes its pod template from ${what} (spec.workloadRef), which rollguard does not roll back: roll back ${what}'s template (kubectl argo rollouts undo ${ref.name} patches it), or use mode abort to send traffic back to the stable ReplicaSet`,
        base,
      );
    }
    if (!hasPodTemplate(ro.spec?.template)) {
      return refused(ref, 'unsupported', `rollout "${ref.name}" has no spec.template to roll back (none, or one without containers): fix the Rollout's spec, or use mode abort`, base);
    }
    const toRevision = ref.toRevision ?? 0;
    if (toRevision < 0) return refused(ref, 'revision_not_found', revisionNotFoundMessage(toRevision), base);
    const picked = pickReplicaSet(rss, toRevision, ROLLOUT_REVISION);
    if (!picked.ok) {
      return picked.code === 'revision_not_found'
        ? refused(ref, 'revision_not_found', revisionNotFoundMessage(toRevision), base)
        : refused(ref, 'no_history', `no revision found for rollout "${ref.name}"`, base);
    }
    const rs = picked.value;
    const targetRevision = annotationRevision(rs, ROLLOUT_REVISION) ?? 0;
    const withTarget = { ...base, toRevision: targetRevision };
    if (!hasPodTemplate(rs.spec?.template)) {
      return refused(ref, 'unsupported', `ReplicaSet ${rs.metadata.name} of revision ${targetRevision} has no pod template to restore: pick another revision (toRevision)`, withTarget);
    }
    const strip = (t: unknown) => templateWithoutLabel((t ?? {}) as { metadata?: { labels?: Record<string, string> } }, ROLLOUTS_POD_TEMPLATE_HASH);
    if (semanticDerivative(strip(ro.spec?.template), strip(rs.spec?.template))) {
      return refused(ref, 'already_matches', `skipped rollback (current template already matches revision ${toRevision})`, withTarget);
    }
    const patch: unknown[] = [
      { op: 'test', path: '/metadata/uid', value: ro.metadata.uid },
      { op: 'test', path: '/metadata/generation', value: ro.metadata.generation },
      { op: 'replace', path: '/spec/template', value: strip(rs.spec?.template) },
    ];
    if (ctx.changeCause) {
      patch.push(
        ro.metadata.annotations
          ? { op: 'add', path: `/metadata/annotations/${CHANGE_CAUSE.replace(/~/g, '~0').replace(/\//g, '~1')}`, value: ctx.changeCause }
          : { op: 'add', path: '/metadata/annotations', value: { [CHANGE_CAUSE]: ctx.changeCause } },
      );
    }
    return {
      target: ref,
      kind: 'Rollout',
      ...withTarget,
      summary: `undo rollout ${ref.namespace}/${ref.name} from revision ${current.revision} to revision ${targetRevision} (ReplicaSet ${rs.metadata.name})`,
      writes: [
        {
          resource: RESOURCES.rollouts,
          namespace: ref.namespace,
          name: ref.name,
          patchType: 'json',
          patch,
          precondition: 'json-test',
          description: `replace /spec/template with ReplicaSet ${rs.metadata.name}'s template`,
          before: ro,
        },
      ],
      plannedAt: Date.now(),
    };
  },

  async execute(plan: RollbackPlan, ctx: ActionContext): Promise<ExecuteResult> {
    try {
      return await executeWrites(argoRolloutAction, plan, ctx);
    } catch (err) {
      const w = plan.writes?.[0];
      // as the plugin: the status subresource may not be enabled; fall back to the main resource
      if (err instanceof KubeApiError && err.isNotFound && w?.subresource === 'status') {
        ctx.logger.info({ target: `${w.namespace}/${w.name}` }, 'rollouts/status not served; patching the Rollout itself');
        const { subresource: _s, ...main } = w;
        return executeWrites(argoRolloutAction, { ...plan, writes: [main] }, ctx);
      }
      throw err;
    }
  },

  async verify(plan: RollbackPlan, ctx: ClusterContext, opts: VerifyOptions): Promise<VerifyResult> {
    const mode = rolloutMode(plan.target);
    const start = Date.now();
    const minGeneration = opts.execution?.newGeneration;
    let last = '';
    const ns = plan.target.namespace;
    const name = plan.target.name;
    return verifyUntil(
      ctx,
      opts,
      async (): Promise<VerifyResult | undefined> => {
        const ro = await ctx.kube!.get(RESOURCES.rollouts, ns, name, reqOpts(ctx));
        const rss = await rolloutReplicaSets(ctx, ro);
        const want = specReplicas(ro);
        const st = ro.status ?? {};
        if (mode === 'abort') {
          if (st.abort !== true) return { outcome: 'failed', message: `rollout '${name}' is no longer aborted (status.abort cleared)` };
          const stable = rss.find((rs) => hashOf(rs) && hashOf(rs) === st.stableRS);
          const avail = stable?.status?.availableReplicas ?? 0;
          const others = rss.filter((rs) => rs !== stable).reduce((n, rs) => n + (rs.status?.replicas ?? 0), 0);
          last = stable
            ? `stable ReplicaSet ${stable.metadata.name}: ${avail}/${want} available; ${others} pods of other revisions`
            : `no stable ReplicaSet (status.stableRS=${st.stableRS ?? 'unset'})`;
          if (stable && avail >= want) {
            return { outcome: 'succeeded', message: `rollout '${name}' aborted; ${last}`, details: { phase: st.phase, message: st.message } };
          }
          return undefined;
        }
        const gen = Math.max(ro.metadata.generation ?? 0, minGeneration ?? 0);
        const observed = Number(st.observedGeneration ?? 0);
        const target = rss.find((rs) => annotationRevision(rs, ROLLOUT_REVISION) === plan.toRevision);
        last = `observedGeneration ${observed}/${gen}, currentPodHash ${st.currentPodHash ?? '-'}, updated ${st.updatedReplicas ?? 0}, available ${st.availableReplicas ?? 0} of ${want}`;
        if (
          observed >= gen &&
          (st.updatedReplicas ?? 0) >= want &&
          (st.availableReplicas ?? 0) >= want &&
          (st.replicas ?? 0) <= want &&
          (!target || hashOf(target) === st.currentPodHash)
        ) {
          return { outcome: 'succeeded', message: `rollout '${name}' rolled back; ${last}` };
        }
        if (st.phase === 'Degraded' && typeof st.message === 'string' && /ProgressDeadlineExceeded/.test(st.message)) {
          const when = timestampMs(st.conditions?.find((c: { type: string }) => c.type === 'Progressing')?.lastUpdateTime);
          if (when !== undefined && when >= Math.floor((opts.execution?.at ?? start) / 1000) * 1000) {
            return { outcome: 'failed', message: `rollout '${name}': ${st.message}` };
          }
        }
        return undefined;
      },
      () => last,
      `cannot read rollout ${ns}/${name}`,
    );
  },
});

/** Rollout: `name` is the Argo Rollout; rule params toRevision (undo) and mode. */
export const rolloutKind = defineKind({
  kind: 'Rollout',
  name: 'subdomain',
  revisions: true,
  options: rolloutOptions,
  params: { mode: oneOfParam(MODES) },
  fromParams: (_name, p) => (p.mode !== undefined ? { mode: p.mode as RolloutMode } : {}),
  create: () => argoRolloutAction,
});
