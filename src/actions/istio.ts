// Istio traffic shift back: a VirtualService's HTTP route weights set back to 100 on the stable
// subset and 0 on the others, at once or in steps with a pause between them: the runbook's
// "gradual traffic shift back (if using Istio)", which applies
//   http: [{ route: [{ destination: { host, subset: blue }, weight: 100 },
//                    { destination: { host, subset: green }, weight: 0 }] }]
// TargetRef.name is the VirtualService; options and rule params: stableSubset, canarySubset,
// route or routeIndex, steps, pause. Refusals, preconditions (a generation test, then the subsets
// and the previous step's weights at every path written) and verification (the weights hold for
// min(10 s, the timeout)): docs/actions.md, "Istio traffic shift back".
import { z } from 'zod';
import { RESOURCES, type KubeObject, type ResourceType } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { nameSchema } from '../kube/names.js';
import { CHANGE_CAUSE, timestampMs } from '../kube/revision.js';
import { formatDuration, parseDuration } from '../rules/duration.js';
import type { Action, ActionContext, ParamCheck, PlannedWrite, RollbackPlan, TargetRef, VerifyOptions, VerifyResult } from './action.js';
import { clusterAction, type ClusterContext, defineKind, intParam, nameParam, notFoundMessage, optionsOf, refused, reqOpts, verifyUntil } from './common.js';

const ROUTE_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const MAX_PAUSE_MS = 10 * 60_000;
/** how long the written weights must hold before verify() calls the shift back done */
const HOLD_MS = 10_000;

const pauseSchema = z.string().superRefine((v, ctx) => {
  let ms: number;
  try {
    ms = parseDuration(v);
  } catch (e) {
    return ctx.addIssue({ code: 'custom', message: (e as Error).message });
  }
  if (ms > MAX_PAUSE_MS) ctx.addIssue({ code: 'custom', message: `expected a pause of at most ${formatDuration(MAX_PAUSE_MS)}, got "${v}"` });
});

export const virtualServiceOptions = z
  .strictObject({
    /** the subset all traffic goes back to (default 'stable') */
    stableSubset: nameSchema('label').optional(),
    /** the subset traffic is taken from (default 'canary') */
    canarySubset: nameSchema('label').optional(),
    /** the HTTP route to shift, by its name (default: every route sending to both subsets) */
    route: z.string().max(253).regex(ROUTE_NAME, 'expected an HTTP route name (letters, digits, "-", "_", ".")').optional(),
    /** the HTTP route to shift, by its position in spec.http (0 = the first) */
    routeIndex: z.number().int().min(0).max(999).optional(),
    /** how many writes the shift takes (default 1: at once) */
    steps: z.number().int().min(1).max(20).optional(),
    /** the wait between two steps, a duration such as 30s or 1m (default 30s, at most 10m) */
    pause: pauseSchema.optional(),
  })
  .refine((o) => o.route === undefined || o.routeIndex === undefined, { path: ['routeIndex'], message: 'name one route: route or routeIndex, not both' });

export type VirtualServiceOptions = z.infer<typeof virtualServiceOptions>;

interface Resolved {
  stable: string;
  canary: string;
  route?: string;
  routeIndex?: number;
  steps: number;
  pauseMs: number;
}

function resolved(ref: TargetRef): Resolved {
  const o = optionsOf(virtualServiceKind, ref);
  return {
    stable: o.stableSubset ?? 'stable',
    canary: o.canarySubset ?? 'canary',
    ...(o.route !== undefined ? { route: o.route } : {}),
    ...(o.routeIndex !== undefined ? { routeIndex: o.routeIndex } : {}),
    steps: o.steps ?? 1,
    pauseMs: parseDuration(o.pause ?? '30s'),
  };
}

interface Destination {
  destination?: { host?: string; subset?: string };
  weight?: number;
}
interface HttpRoute {
  name?: string;
  route?: Destination[];
}

/** One route to shift: where it is, its destinations' subsets and effective weights now. */
interface RouteShift {
  index: number;
  label: string;
  subsets: (string | undefined)[];
  /** each destination's identity for the write's test: its subset, else its host */
  ids: { field: 'subset' | 'host'; value: string }[];
  /** the weights as written in the object (undefined: unset) */
  written: (number | undefined)[];
  stable: number;
  /** share of traffic (0-100) each destination gets now */
  share: number[];
}

const routeLabel = (r: HttpRoute, i: number) => (r.name ? `"${r.name}"` : `#${i}`);
const subsetsOf = (r: HttpRoute) => (r.route ?? []).map((d) => d.destination?.subset);
const describeSubsets = (r: HttpRoute) => subsetsOf(r).map((s) => s ?? '(none)').join(', ') || 'no destinations';

/** Istio's weights are relative: unset means all of it for a lone destination, an equal split when none is set, else 0. */
function shares(route: Destination[]): number[] {
  const set = route.some((d) => typeof d.weight === 'number');
  const w = route.map((d) => (typeof d.weight === 'number' ? d.weight : set ? 0 : 1));
  const total = w.reduce((a, b) => a + b, 0);
  return w.map((x) => (total > 0 ? (x * 100) / total : 0));
}

/** Integer weights summing to 100: `stableShare` on the stable destination, the rest split as `base` splits it (largest remainder). */
export function distribute(base: number[], stable: number, stableShare: number): number[] {
  const rest = 100 - stableShare;
  const others = base.map((b, i) => (i === stable ? 0 : b));
  const total = others.reduce((a, b) => a + b, 0);
  const exact = others.map((b) => (total > 0 ? (b * rest) / total : 0));
  const out = exact.map(Math.floor);
  let left = rest - out.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => [e - Math.floor(e), i] as const).filter(([, i]) => i !== stable && total > 0).sort((a, b) => b[0] - a[0]);
  for (const [, i] of order) {
    if (left <= 0) break;
    out[i]!++;
    left--;
  }
  out[stable] = stableShare + Math.max(0, left);
  return out;
}

/** The routes to shift, or the refusal saying why there are none (a string: 'unsupported'). */
function selectRoutes(vs: KubeObject, o: Resolved): RouteShift[] | string | { notFound: string } {
  const http: HttpRoute[] = Array.isArray(vs.spec?.http) ? vs.spec.http : [];
  const name = vs.metadata.name;
  const both = (r: HttpRoute) => subsetsOf(r).includes(o.stable) && subsetsOf(r).includes(o.canary);
  let picked: number[];
  if (o.route !== undefined || o.routeIndex !== undefined) {
    const i = o.route !== undefined ? http.findIndex((r) => r.name === o.route) : o.routeIndex!;
    const r = http[i];
    if (!r) {
      return {
        notFound:
          o.route !== undefined
            ? `virtualservice "${name}" has no HTTP route named "${o.route}" (its routes: ${http.map(routeLabel).join(', ') || 'none'})`
            : `virtualservice "${name}" has ${http.length} HTTP route(s); there is no route at index ${o.routeIndex}`,
      };
    }
    if (!subsetsOf(r).includes(o.stable)) return `the stable subset "${o.stable}" is missing in HTTP route ${routeLabel(r, i)} of virtualservice "${name}" (its subsets: ${describeSubsets(r)})`;
    if (!subsetsOf(r).includes(o.canary)) return `HTTP route ${routeLabel(r, i)} of virtualservice "${name}" sends nothing to the canary subset "${o.canary}" (its subsets: ${describeSubsets(r)})`;
    picked = [i];
  } else {
    picked = http.flatMap((r, i) => (both(r) ? [i] : []));
    if (picked.length === 0) {
      const canaryOnly = http.findIndex((r) => subsetsOf(r).includes(o.canary));
      if (canaryOnly >= 0) {
        return `the stable subset "${o.stable}" is missing in HTTP route ${routeLabel(http[canaryOnly]!, canaryOnly)} of virtualservice "${name}", which sends to "${o.canary}" (its subsets: ${describeSubsets(http[canaryOnly]!)})`;
      }
      return `virtualservice "${name}" has no HTTP route with both subsets "${o.stable}" and "${o.canary}" (${http.map((r, i) => `route ${routeLabel(r, i)}: ${describeSubsets(r)}`).join('; ') || 'no HTTP routes'})`;
    }
  }
  const out: RouteShift[] = [];
  for (const i of picked) {
    const r = http[i]!;
    const subsets = subsetsOf(r);
    if (subsets.filter((s) => s === o.stable).length > 1) {
      return `HTTP route ${routeLabel(r, i)} of virtualservice "${name}" has more than one destination with subset "${o.stable}"; name the route to shift or merge them`;
    }
    const ids = (r.route ?? []).map((d) => (d.destination?.subset ? { field: 'subset' as const, value: d.destination.subset } : { field: 'host' as const, value: d.destination?.host ?? '' }));
    out.push({ index: i, label: routeLabel(r, i), subsets, ids, written: (r.route ?? []).map((d) => d.weight), stable: subsets.indexOf(o.stable), share: shares(r.route ?? []) });
  }
  return out;
}

/** All traffic of the route already goes to the stable subset: every other destination has weight 0. */
const allStable = (r: RouteShift) => r.written.every((w, i) => i === r.stable || w === 0);

/** The weights of each step, per route; the last step is 100 on stable, 0 elsewhere. Steps that would change nothing are dropped. */
function stepWeights(routes: RouteShift[], steps: number): number[][][] {
  const out: number[][][] = [];
  let prev = routes.map((r) => r.written.map((w) => w ?? -1));
  for (let k = 1; k <= steps; k++) {
    const w = routes.map((r) => {
      const s0 = r.share[r.stable] ?? 0;
      const share = k === steps ? 100 : Math.round(s0 + ((100 - s0) * k) / steps);
      return distribute(r.share, r.stable, share);
    });
    if (JSON.stringify(w) !== JSON.stringify(prev)) out.push(w);
    prev = w;
  }
  return out;
}

/** When the weights were last changed: the newest managedFields entry that wrote spec, else the creation time. */
function specChangedAt(vs: KubeObject): number {
  const mf = Array.isArray(vs.metadata.managedFields) ? (vs.metadata.managedFields as { time?: string; fieldsV1?: Record<string, unknown> }[]) : [];
  const times = mf.filter((m) => m.fieldsV1 && 'f:spec' in m.fieldsV1).map((m) => timestampMs(m.time) ?? 0);
  return Math.max(0, ...times) || timestampMs(vs.metadata.creationTimestamp) || 0;
}

const pct = (w: number[]) => w.join('/');

/** GET networking.istio.io/v1, falling back to v1beta1 (Istio before 1.22); null when neither has it. */
async function readVirtualService(ctx: ActionContext, ns: string, name: string): Promise<{ rt: ResourceType; vs: KubeObject } | null> {
  for (const rt of [RESOURCES.virtualservices, RESOURCES.virtualservicesV1beta1]) {
    try {
      return { rt, vs: await ctx.kube!.get(rt, ns, name, reqOpts(ctx)) };
    } catch (err) {
      if (!(err instanceof KubeApiError && err.isNotFound)) throw err;
    }
  }
  return null;
}

export const virtualServiceAction: Action = clusterAction({
  kind: 'VirtualService',

  async plan(ref: TargetRef, ctx: ClusterContext): Promise<RollbackPlan> {
    const o = resolved(ref);
    const read = await readVirtualService(ctx, ref.namespace, ref.name);
    if (!read) return refused(ref, 'not_found', notFoundMessage(RESOURCES.virtualservices, ref.name));
    const { rt, vs } = read;
    const current = { revision: 0, createdAt: specChangedAt(vs), annotations: { ...(vs.metadata.annotations ?? {}) } };
    const owner = vs.metadata.ownerReferences?.find((r) => r.controller);
    if (owner) {
      return refused(ref, 'unsupported', `virtualservice "${ref.name}" is managed by ${owner.kind} "${owner.name}" (its controller sets the weights back): roll that back instead`, { current });
    }
    const routes = selectRoutes(vs, o);
    if (typeof routes === 'string') return refused(ref, 'unsupported', routes, { current });
    if ('notFound' in routes) return refused(ref, 'not_found', routes.notFound, { current });
    if (routes.every(allStable)) {
      return refused(ref, 'already_matches', `virtualservice "${ref.name}" already sends all traffic of HTTP route ${routes.map((r) => r.label).join(', ')} to subset "${o.stable}"`, { current });
    }
    const steps = stepWeights(routes, o.steps);
    const dest = (r: RouteShift, j: number) => `/spec/http/${r.index}/route/${j}`;
    const writes: PlannedWrite[] = steps.map((weights, k) => {
      // what this step expects to find: what plan() read (first step, and every step of a server
      // dry run, which persists nothing), else the weights of the step before
      const before = k === 0 || ctx.dryRun ? routes.map((r) => r.written) : steps[k - 1]!;
      // every step: the object plan() read, not one deleted and created again under its name since
      const ops: unknown[] = [{ op: 'test', path: '/metadata/uid', value: vs.metadata.uid }];
      if (k === 0 || ctx.dryRun) ops.push({ op: 'test', path: '/metadata/generation', value: vs.metadata.generation });
      routes.forEach((r, i) => {
        r.ids.forEach((id, j) => {
          ops.push({ op: 'test', path: `${dest(r, j)}/destination/${id.field}`, value: id.value });
          const was = before[i]![j];
          if (typeof was === 'number') ops.push({ op: 'test', path: `${dest(r, j)}/weight`, value: was });
          ops.push({ op: 'add', path: `${dest(r, j)}/weight`, value: weights[i]![j] });
        });
      });
      if (ctx.changeCause) {
        ops.push(
          vs.metadata.annotations || (k > 0 && !ctx.dryRun)
            ? { op: 'add', path: `/metadata/annotations/${CHANGE_CAUSE.replace(/~/g, '~0').replace(/\//g, '~1')}`, value: ctx.changeCause }
            : { op: 'add', path: '/metadata/annotations', value: { [CHANGE_CAUSE]: ctx.changeCause } },
        );
      }
      return {
        resource: rt,
        namespace: ref.namespace,
        name: ref.name,
        patchType: 'json',
        patch: ops,
        precondition: 'json-test',
        ...(k > 0 ? { pauseBeforeMs: o.pauseMs } : {}),
        // the first step's object as read: a re-plan after a conflict compares its uid (movedSincePlan)
        ...(k === 0 ? { before: vs } : {}),
        description: `step ${k + 1}/${steps.length}: ${routes.map((r, i) => `route ${r.label} ${r.subsets.map((s) => s ?? '-').join('/')} = ${pct(weights[i]!)}`).join('; ')}`,
      };
    });
    const from = routes.map((r) => `route ${r.label} ${pct(r.share.map((x) => Math.round(x)))}`).join(', ');
    return {
      target: ref,
      kind: 'VirtualService',
      current,
      summary: `shift virtualservice ${ref.namespace}/${ref.name} back to subset "${o.stable}" (${from} -> 100 on "${o.stable}")${
        writes.length > 1 ? ` in ${writes.length} steps, ${formatDuration(o.pauseMs)} apart` : ' at once'
      }`,
      writes,
      plannedAt: Date.now(),
    };
  },

  async verify(plan: RollbackPlan, ctx: ClusterContext, opts: VerifyOptions): Promise<VerifyResult> {
    const last = plan.writes?.[plan.writes.length - 1];
    if (!last) return { outcome: 'unverified', message: 'the plan wrote nothing to verify' };
    // what the last step wrote: each subset at its path, each weight it set
    const ops = last.patch as { op: string; path: string; value: unknown }[];
    const want = ops.filter((x) => x.op === 'add' && x.path.endsWith('/weight'));
    const ids = ops.filter((x) => x.op === 'test' && /\/destination\/(subset|host)$/.test(x.path));
    // at most half the window, so a check always falls after the hold and before the deadline
    const holdMs = Math.min(HOLD_MS, Math.floor(opts.timeoutMs / 2));
    let state = '';
    return verifyUntil(
      ctx,
      opts,
      async (elapsed): Promise<VerifyResult | undefined> => {
        const vs = await ctx.kube!.get(last.resource, last.namespace, last.name, reqOpts(ctx));
        const at = (path: string) => path.split('/').slice(1).reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], vs);
        const moved = ids.find((s) => at(s.path) !== s.value);
        if (moved) return { outcome: 'failed', message: `virtualservice "${last.name}" changed: ${moved.path} is now ${JSON.stringify(at(moved.path))}, not "${moved.value}"` };
        const off = want.filter((w) => at(w.path) !== w.value);
        if (off.length) {
          return {
            outcome: 'failed',
            message: `the weights of virtualservice "${last.name}" did not stay: ${off.map((w) => `${w.path} is ${JSON.stringify(at(w.path))}, not ${w.value}`).join('; ')} (changed by someone else, or a controller reconciling it)`,
          };
        }
        const observed = vs.status?.observedGeneration;
        const generation = vs.metadata.generation ?? 0;
        const seen = observed === undefined || Number(observed) >= generation;
        state = seen ? `weights held for ${elapsed} ms` : `istiod has observed generation ${observed}, not ${generation} yet`;
        if (seen && elapsed >= holdMs) {
          return { outcome: 'succeeded', message: `virtualservice "${last.name}" sends all traffic to the stable subset; ${state}`, details: { generation, observedGeneration: observed ?? null } };
        }
        return undefined;
      },
      () => state,
      `cannot read virtualservice ${last.namespace}/${last.name}`,
    );
  },
});

const subsetParam = nameParam('label');
const routeParam: ParamCheck = (v) => (v.length <= 253 && ROUTE_NAME.test(v) ? undefined : 'an HTTP route name (letters, digits, "-", "_", ".")');
const pauseParam: ParamCheck = (v) => {
  const r = pauseSchema.safeParse(v);
  return r.success ? undefined : `a duration such as 30s or 1m, at most ${formatDuration(MAX_PAUSE_MS)}`;
};

/** VirtualService: `name` is the VirtualService; rule params stableSubset, canarySubset, route, routeIndex, steps, pause. */
export const virtualServiceKind = defineKind({
  kind: 'VirtualService',
  name: 'subdomain',
  revisions: false,
  options: virtualServiceOptions,
  params: { stableSubset: subsetParam, canarySubset: subsetParam, route: routeParam, routeIndex: intParam(0, 999), steps: intParam(1, 20), pause: pauseParam },
  fromParams: (_name, p) => ({
    ...(p.stableSubset !== undefined ? { stableSubset: p.stableSubset } : {}),
    ...(p.canarySubset !== undefined ? { canarySubset: p.canarySubset } : {}),
    ...(p.route !== undefined ? { route: p.route } : {}),
    ...(p.routeIndex !== undefined ? { routeIndex: Number(p.routeIndex) } : {}),
    ...(p.steps !== undefined ? { steps: Number(p.steps) } : {}),
    ...(p.pause !== undefined ? { pause: p.pause } : {}),
  }),
  create: () => virtualServiceAction,
});
