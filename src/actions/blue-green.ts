// Blue-green: switch the Service's selector back to the previous colour, as the runbook does
// (`kubectl patch service hotswap-api -p '{"spec":{"selector":{"version":"blue"}}}'`),
// after checking what the runbook checks first: that the previous colour is still running.
//
// TargetRef.name is the app; options (blueGreenOptions): service (default: name), selectorKey
// (default 'version'), to (the colour to switch back to; default: the other one of colours),
// colours (default ['blue', 'green']). A rule's target names the Service; its params
// selectorLabel and previous become selectorKey and to.
import { z } from 'zod';
import { RESOURCES, type KubeObject } from '../kube/kube.js';
import { nameSchema } from '../kube/names.js';
import { CHANGE_CAUSE, POD_TEMPLATE_HASH, ownedReplicaSets, selectorMatches, timestampMs } from '../kube/revision.js';
import { deploymentState } from '../kube/rollout-status.js';
import type { Action, ActionContext, RollbackPlan, TargetRef, VerifyOptions, VerifyResult } from './action.js';
import { clusterAction, type ClusterContext, currentAnnotations, defineKind, nameParam, optionsOf, readOrRefuse, refused, reqOpts, verifyUntil } from './common.js';

export const blueGreenOptions = z.strictObject({
  /** the Service whose selector switches (default: the target's name) */
  service: nameSchema('service').optional(),
  /** the selector key holding the colour (default 'version') */
  selectorKey: nameSchema('labelKey').optional(),
  /** the colour to switch back to (default: the other one of colours, refused if that one is newer) */
  to: nameSchema('labelValue').optional(),
  /** the two colours (default blue and green) */
  colours: z.tuple([nameSchema('labelValue'), nameSchema('labelValue')]).optional(),
});

interface Resolved {
  service: string;
  key: string;
  to?: string;
  colours: [string, string];
}

function resolved(ref: TargetRef): Resolved {
  const o = optionsOf(blueGreenKind, ref);
  return { service: o.service ?? ref.name, key: o.selectorKey ?? 'version', ...(o.to ? { to: o.to } : {}), colours: o.colours ?? ['blue', 'green'] };
}

/** Deployments in the namespace whose pods the selector would pick. */
async function deploymentsFor(ctx: ActionContext, ns: string, selector: Record<string, string>): Promise<KubeObject[]> {
  const all = await ctx.kube!.list(RESOURCES.deployments, ns, reqOpts(ctx));
  return all.filter((d) => selectorMatches({ matchLabels: selector }, d.spec?.template?.metadata?.labels));
}

/** When the colour was last deployed: the newest creation time of its Deployments' current ReplicaSets. */
async function deployedAt(ctx: ActionContext, deps: KubeObject[]): Promise<{ at: number; from: KubeObject | null }> {
  let best = { at: 0, from: null as KubeObject | null };
  for (const d of deps) {
    const { newRS } = await ownedReplicaSets(ctx.kube!, d, POD_TEMPLATE_HASH, reqOpts(ctx));
    const at = timestampMs(newRS?.metadata.creationTimestamp) ?? timestampMs(d.metadata.creationTimestamp) ?? 0;
    if (at >= best.at) best = { at, from: newRS ?? d };
  }
  return best;
}

const selectorText = (s: Record<string, string>) =>
  Object.entries(s)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

export const blueGreenAction: Action = clusterAction({
  kind: 'BlueGreen',

  async plan(ref: TargetRef, ctx: ClusterContext): Promise<RollbackPlan> {
    const o = resolved(ref);
    const svc = await readOrRefuse(ctx, RESOURCES.services, ref, o.service);
    const selector: Record<string, string> = { ...(svc.spec?.selector ?? {}) };
    const from = selector[o.key];
    if (from === undefined) {
      return refused(ref, 'unsupported', `service "${o.service}" has no "${o.key}" key in its selector (${selectorText(selector) || 'none'})`);
    }
    let to = o.to;
    if (!to) {
      if (!o.colours.includes(from)) {
        return refused(ref, 'unsupported', `service "${o.service}" selects ${o.key}=${from}, which is none of ${o.colours.join('/')}; say which colour to switch back to`);
      }
      to = o.colours[0] === from ? o.colours[1] : o.colours[0];
    }
    const currentDeps = await deploymentsFor(ctx, ref.namespace, selector);
    const cur = await deployedAt(ctx, currentDeps);
    const newest = currentDeps.find((d) => cur.from && (cur.from === d || cur.from.metadata.ownerReferences?.some((r) => r.uid === d.metadata.uid)));
    const current = {
      revision: 0,
      createdAt: cur.at,
      annotations: currentAnnotations(svc.metadata.annotations, newest?.metadata.annotations, newest?.spec?.template?.metadata?.annotations as Record<string, string> | undefined),
    };
    if (to === from) return refused(ref, 'already_matches', `service "${o.service}" already selects ${o.key}=${to}`, { current });
    const target = { ...selector, [o.key]: to };
    const targetDeps = await deploymentsFor(ctx, ref.namespace, target);
    if (targetDeps.length === 0) {
      return refused(ref, 'target_not_ready', `no Deployment in ${ref.namespace} runs pods matching ${selectorText(target)}: the ${to} environment is not running`, { current });
    }
    const notReady = targetDeps.filter((d) => (d.status?.availableReplicas ?? 0) < 1 || (d.spec?.replicas ?? 1) < 1);
    if (notReady.length === targetDeps.length) {
      return refused(
        ref,
        'target_not_ready',
        `the ${to} environment has no available pods (${targetDeps.map((d) => `${d.metadata.name}: ${d.status?.availableReplicas ?? 0}/${d.spec?.replicas ?? 0}`).join(', ')}); switching would drop all traffic`,
        { current },
      );
    }
    if (!o.to) {
      // the colour to go back to must be the older deployment; else this would roll forward
      // (e.g. a second alert after a switch back must not switch to the bad colour again)
      const tgt = await deployedAt(ctx, targetDeps);
      if (tgt.at > cur.at) {
        return refused(
          ref,
          'unsupported',
          `the ${to} environment (deployed ${new Date(tgt.at).toISOString()}) is newer than ${from} (deployed ${new Date(cur.at).toISOString()}): switching would roll forward, not back; set options.to to force`,
          { current },
        );
      }
    }
    return {
      target: ref,
      kind: 'BlueGreen',
      current,
      summary: `switch service ${ref.namespace}/${o.service} from ${o.key}=${from} back to ${o.key}=${to} (${targetDeps.map((d) => d.metadata.name).join(', ')})`,
      writes: [
        {
          resource: RESOURCES.services,
          namespace: ref.namespace,
          name: o.service,
          patchType: 'merge',
          patch: {
            metadata: {
              resourceVersion: svc.metadata.resourceVersion,
              ...(ctx.changeCause ? { annotations: { [CHANGE_CAUSE]: ctx.changeCause } } : {}),
            },
            spec: { selector: { [o.key]: to } },
          },
          precondition: 'resource-version',
          description: `set selector ${o.key}=${to}`,
          before: svc,
        },
      ],
      plannedAt: Date.now(),
    };
  },

  async verify(plan: RollbackPlan, ctx: ClusterContext, opts: VerifyOptions): Promise<VerifyResult> {
    const o = resolved(plan.target);
    const want = ((plan.writes?.[0]?.patch as { spec?: { selector?: Record<string, string> } })?.spec?.selector ?? {})[o.key];
    let last = '';
    return verifyUntil(
      ctx,
      opts,
      async (): Promise<VerifyResult | undefined> => {
        const svc = await ctx.kube!.get(RESOURCES.services, plan.target.namespace, o.service, reqOpts(ctx));
        const sel: Record<string, string> = svc.spec?.selector ?? {};
        if (sel[o.key] !== want) {
          return { outcome: 'failed', message: `service "${o.service}" selects ${o.key}=${sel[o.key]}, not ${want}: changed by someone else` };
        }
        const deps = await deploymentsFor(ctx, plan.target.namespace, sel);
        const states = deps.map((d) => deploymentState(d));
        const available = deps.reduce((n, d) => n + (d.status?.availableReplicas ?? 0), 0);
        last = states.map((s) => s.message).join('; ');
        if (deps.length > 0 && available > 0 && states.every((s) => s.done)) {
          return { outcome: 'succeeded', message: `service "${o.service}" selects ${o.key}=${want}; ${available} available pods behind it`, details: { deployments: deps.map((d) => d.metadata.name) } };
        }
        return undefined;
      },
      () => `not all pods behind the service ready: ${last}`,
      'cannot read the blue-green state',
    );
  },
});

/** BlueGreen: `name` is the Service; rule params selectorLabel (the selector key) and previous (the colour to switch to). */
export const blueGreenKind = defineKind({
  kind: 'BlueGreen',
  name: 'service',
  revisions: false,
  options: blueGreenOptions,
  params: { selectorLabel: nameParam('labelKey'), previous: nameParam('labelValue') },
  fromParams: (name, p) => ({
    service: name,
    ...(p.selectorLabel !== undefined ? { selectorKey: p.selectorLabel } : {}),
    ...(p.previous !== undefined ? { to: p.previous } : {}),
  }),
  create: () => blueGreenAction,
});
