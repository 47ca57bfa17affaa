// ConfigMap: a configuration-only rollback (the runbooks' "ConfigMap revert, 1-2 minutes, low
// risk"), for a bad change that was an edit of a ConfigMap with no new revision of its workloads.
// It needs configuration snapshots (CONFIG_SNAPSHOTS, src/config-deps/snapshots.ts):
//  1. the content before the live one is the newest snapshot whose content differs from it
//     (previousOf); none = refused 'no_history', naming the setting;
//  2. that content is written back into the live ConfigMap, guarded by its resourceVersion
//     (restoreWrite: a change since the read is a 409 Conflict), and the ConfigMap is annotated
//     rollguard.io/restored-from with the snapshot's name and rollguard.io/restored-hash;
//  3. every Deployment, StatefulSet and DaemonSet of the namespace whose pod template uses it
//     (refs.ts) is restarted as `kubectl rollout restart` does: spec.template.metadata.annotations
//     kubectl.kubernetes.io/restartedAt = now (RFC 3339, seconds), so its pods read the restored
//     content again (options.restart: false for an app that reloads its configuration itself).
//     Refusals in kubectl's words: a paused Deployment; and, where kubectl would write a restart
//     that replaces no pod, a StatefulSet or DaemonSet with the OnDelete update strategy.
// A ConfigMap whose live content is the one rollguard restored last (its hash, annotated
// rollguard.io/restored-hash with the restore) is refused ('already_matches'): going one snapshot
// further back would put the bad content back (the restore itself is a new content the watcher
// snapshots). The live content must be the newest snapshot's, else an edit went unseen and "the
// one before" is not known ('no_history'); more than MAX_RESTARTS users are a human's call.
// A conflict on the restore re-plans from a fresh read, but when the content itself changed since the plan, or the set of workloads using
// it did (the guards checked the first plan's objects only), nothing is written
// ('changed_since_plan'). verify(): the ConfigMap still holds the snapshot's content, each
// restarted workload finished its rollout (kubectl rollout status) within the one window, and the
// content is still the snapshot's once they all started.
import { z } from 'zod';
import { fmtTime, lastChange } from '../config-deps/check.js';
import { configRefs } from '../config-deps/refs.js';
import { holdsSnapshot, readWithSnapshots, restoreWrite } from '../config-deps/restore.js';
import { contentHash, previousOf, snapshotSince } from '../config-deps/snapshots.js';
import { getOrNull, RESOURCES, type KubeObject, type ResourceType } from '../kube/kube.js';
import { CHANGE_CAUSE } from '../kube/revision.js';
import { daemonSetState, deploymentState, statefulSetState, waitForRollout, type RolloutState, type StatusOptions } from '../kube/rollout-status.js';
import type { Action, PlannedWrite, RollbackPlan, TargetRef, VerifyOptions, VerifyResult } from './action.js';
import { clusterAction, type ClusterContext, defineKind, executeWrites, notFoundMessage, oneOfParam, optionsOf, refused, reqOpts, writtenObjects, type WrittenObject } from './common.js';

const objectKey = (o: WrittenObject) => `${o.kind}/${o.namespace}/${o.name}`;

/** The annotation `kubectl rollout restart` sets on the pod template. */
export const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';
/** On the live ConfigMap: the snapshot whose content rollguard restored into it last. */
export const RESTORED_FROM = 'rollguard.io/restored-from';
/** On the live ConfigMap: the sha256 of that content (a ConfigMap's, never a Secret's), whatever happens to the snapshot. */
export const RESTORED_HASH = 'rollguard.io/restored-hash';
/** A ConfigMap used by more workloads than this is refused: so many restarts at once are a human's call. */
export const MAX_RESTARTS = 50;

export const configMapOptions = z.strictObject({
  /** restart the workloads that use the ConfigMap after the restore (default true) */
  restart: z.boolean().optional(),
});

interface Workload {
  rt: ResourceType;
  word: string;
  state: (o: KubeObject, opts: StatusOptions) => RolloutState;
}
const WORKLOADS: Workload[] = [
  { rt: RESOURCES.deployments, word: 'deployment', state: deploymentState },
  { rt: RESOURCES.statefulsets, word: 'statefulset', state: statefulSetState },
  { rt: RESOURCES.daemonsets, word: 'daemonset', state: daemonSetState },
];
const workloadOf = (plural: string) => WORKLOADS.find((w) => w.rt.plural === plural)!;

/** RFC 3339 to the second, as kubectl writes restartedAt (Go's time.RFC3339 in UTC). */
function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Why kubectl's restart would not replace this workload's pods, or undefined. */
function cannotRestart(w: Workload, o: KubeObject): string | undefined {
  const name = o.metadata.name;
  if (w.rt === RESOURCES.deployments && o.spec?.paused === true) return `${w.rt.plural}.apps "${name}" can't restart paused deployment (run rollout resume first)`;
  const strategy = o.spec?.updateStrategy?.type;
  if (w.rt !== RESOURCES.deployments && strategy && strategy !== 'RollingUpdate') {
    return `${w.word} "${name}" uses the ${strategy} update strategy: a restart would replace none of its pods`;
  }
  return undefined;
}

/** The restart write: the restartedAt annotation on the pod template, as a merge patch (kubectl sends the same as a strategic merge patch). */
function restartWrite(w: Workload, o: KubeObject, at: number, changeCause: string): PlannedWrite {
  const now = rfc3339(at);
  return {
    resource: w.rt,
    namespace: o.metadata.namespace!,
    name: o.metadata.name,
    patchType: 'merge',
    patch: {
      ...(changeCause ? { metadata: { annotations: { [CHANGE_CAUSE]: changeCause } } } : {}),
      spec: { template: { metadata: { annotations: { [RESTARTED_AT]: now } } } },
    },
    description: `restart ${w.word} ${o.metadata.namespace}/${o.metadata.name} (${RESTARTED_AT}: ${now})`,
    before: o,
  };
}

/** The restore write: `previous`'s content into the live ConfigMap, annotated with where it came from. */
function restoreOf(live: KubeObject, previous: KubeObject, why: string, changeCause: string): PlannedWrite {
  const write = restoreWrite('ConfigMap', live, previous, why);
  const patch = write.patch as { metadata: Record<string, unknown> };
  patch.metadata = {
    ...patch.metadata,
    annotations: { [RESTORED_FROM]: previous.metadata.name, [RESTORED_HASH]: contentHash(previous, 'ConfigMap'), ...(changeCause ? { [CHANGE_CAUSE]: changeCause } : {}) },
  };
  // the restore is this kind's rollback itself, not configuration put ahead of a workload's: no configBefore, never written back
  return { ...write, before: live };
}

/** The restarts of every Deployment, StatefulSet and DaemonSet of the namespace using ConfigMap `ref`, or why not (kubectl's words). */
async function restartsOf(ref: TargetRef, ctx: ClusterContext): Promise<{ writes: PlannedWrite[]; users: string[]; objects: KubeObject[] } | { refusal: { code: 'paused' | 'unsupported'; message: string } }> {
  const writes: PlannedWrite[] = [];
  const users: string[] = [];
  const objects: KubeObject[] = [];
  const at = Date.now();
  for (const w of WORKLOADS) {
    const list = await ctx.kube.list(w.rt, ref.namespace, reqOpts(ctx));
    for (const o of list.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
      if (!configRefs(o.spec?.template).some((r) => r.kind === 'ConfigMap' && r.name === ref.name)) continue;
      const no = cannotRestart(w, o);
      if (no) return { refusal: { code: w.rt === RESOURCES.deployments ? 'paused' : 'unsupported', message: `${no}; ConfigMap ${ref.namespace}/${ref.name} was not restored either` } };
      writes.push(restartWrite(w, o, at, ctx.changeCause));
      users.push(`${w.word} ${o.metadata.name}`);
      objects.push(o);
      if (users.length > MAX_RESTARTS) {
        return { refusal: { code: 'unsupported', message: `more than ${MAX_RESTARTS} workloads in ${ref.namespace} use ConfigMap ${ref.namespace}/${ref.name}: restarting them all at once is left to a human (or set restart: false)` } };
      }
    }
  }
  return { writes, users, objects };
}

/**
 * Recovering this very rollback (ActionContext.recovering), whose change cause the live ConfigMap
 * carries with the content it restored: the replica running it was cut off after the restore,
 * before every restart. The plan goes on with the restarts not written yet; a workload carrying our
 * change cause and a restartedAt was restarted already and is written again unchanged, and so is the
 * restore (no-ops that keep execute(), verify() and the cooldowns on the one shape of the plan).
 * undefined: nothing left to resume (or not recovering, not ours, or its snapshot is gone).
 */
async function resumeRestarts(ref: TargetRef, ctx: ClusterContext, live: KubeObject, snapshots: KubeObject[]): Promise<RollbackPlan | undefined> {
  const from = live.metadata.annotations?.[RESTORED_FROM];
  if (!ctx.recovering || !ctx.changeCause || live.metadata.annotations?.[CHANGE_CAUSE] !== ctx.changeCause) return undefined;
  const snapshot = snapshots.find((s) => s.metadata.name === from && contentHash(s, 'ConfigMap') === contentHash(live, 'ConfigMap'));
  if (!snapshot) return undefined;
  const r = await restartsOf(ref, ctx);
  if ('refusal' in r) return undefined;
  // a workload restarted before the cut is written again with its own restartedAt: a no-op for the
  // API server (no new rollout), and the cooldowns, locks and verification still count it
  const restartedBefore = (o: KubeObject): string | undefined => {
    const at = o.spec?.template?.metadata?.annotations?.[RESTARTED_AT];
    return o.metadata.annotations?.[CHANGE_CAUSE] === ctx.changeCause && typeof at === 'string' ? at : undefined;
  };
  const names: string[] = [];
  const writes = r.writes.map((w, i) => {
    const at = restartedBefore(r.objects[i]!);
    if (at === undefined) {
      names.push(r.users[i]!);
      return w;
    }
    return { ...w, patch: { ...(w.patch as object), spec: { template: { metadata: { annotations: { [RESTARTED_AT]: at } } } } }, description: `${r.users[i]} restarted before the cut (unchanged)` };
  });
  if (names.length === 0) return undefined;
  const cm = `ConfigMap ${ref.namespace}/${ref.name}`;
  return {
    target: ref,
    kind: 'ConfigMap',
    summary: `${cm} already holds the content of snapshot ${snapshot.metadata.name}, restored by this rollback before it was cut off; go on: restart ${names.join(', ')}`,
    writes: [restoreOf(live, snapshot, 'the content this rollback restored, unchanged', ctx.changeCause), ...writes],
    resumes: true,
    plannedAt: Date.now(),
  };
}

export const configMapAction: Action = clusterAction({
  kind: 'ConfigMap',

  async plan(ref: TargetRef, ctx: ClusterContext): Promise<RollbackPlan> {
    const restart = optionsOf(configMapKind, ref).restart ?? true;
    const read = await readWithSnapshots(ctx.kube, 'ConfigMap', ref.namespace, ref.name, ctx);
    if (!read) return refused(ref, 'not_found', notFoundMessage(RESOURCES.configmaps, ref.name));
    const { live, snapshots } = read;
    const cm = `ConfigMap ${ref.namespace}/${ref.name}`;
    const liveHash = contentHash(live, 'ConfigMap');
    // the content rollguard wrote last, kept as its hash on the object: refused however many
    // snapshots were pruned or added since (going one content further back would put the bad one back)
    if (live.metadata.annotations?.[RESTORED_HASH] === liveHash) {
      const from = live.metadata.annotations?.[RESTORED_FROM];
      const resumed = restart ? await resumeRestarts(ref, ctx, live, snapshots) : undefined;
      if (resumed) return resumed;
      return refused(ref, 'already_matches', `${cm} already holds the content rollguard restored${from ? ` from snapshot ${from}` : ''}; going one content further back is left to a human`);
    }
    const newest = snapshots[0];
    if (!newest) {
      return refused(
        ref,
        'no_history',
        `no snapshot of ${cm}: a configuration-only rollback restores an earlier snapshot; turn on CONFIG_SNAPSHOTS (chart: configSnapshots.enabled) so the content before the next edit is kept`,
      );
    }
    // the live content must be the newest snapshot's: else an edit went unseen (the watcher was off,
    // or no workload in scope used it then) and "the snapshot before" is not the content before it
    if (contentHash(newest, 'ConfigMap') !== liveHash) {
      return refused(
        ref,
        'no_history',
        `the live content of ${cm} was never snapshotted (the newest snapshot, ${newest.metadata.name}, holds another content): the content before it is not known; the watcher keeps only ConfigMaps a Deployment, StatefulSet or DaemonSet in scope uses`,
      );
    }
    const changedAt = snapshotSince(newest) ?? lastChange(live.metadata) ?? Date.now();
    const current = { createdAt: changedAt, annotations: live.metadata.annotations ?? {}, what: `the current content of ${cm} (since ${fmtTime(changedAt)})` };
    const previous = previousOf(snapshots.slice(1), live, 'ConfigMap');
    if (!previous) return refused(ref, 'no_history', `no snapshot of ${cm} holds a content other than the live one: there is nothing earlier to restore`, { current });

    const since = snapshotSince(previous);
    const why = `its content${since !== undefined ? ` since ${fmtTime(since)}` : ''}, the one before the live content`;
    const writes: PlannedWrite[] = [restoreOf(live, previous, why, ctx.changeCause)];

    const users: string[] = [];
    if (restart) {
      const r = await restartsOf(ref, ctx);
      if ('refusal' in r) return refused(ref, r.refusal.code, r.refusal.message, { current });
      writes.push(...r.writes);
      users.push(...r.users);
    }
    const then = !restart ? ' (restart: false: its workloads are not restarted)' : users.length ? `, then restart ${users.join(', ')}` : `; no Deployment, StatefulSet or DaemonSet in ${ref.namespace} uses it: nothing to restart`;
    return {
      target: ref,
      kind: 'ConfigMap',
      current,
      summary: `restore ${cm} from snapshot ${previous.metadata.name} (${why})${then}`,
      writes,
      plannedAt: Date.now(),
    };
  },

  /** executeWrites, except that a re-plan after a conflict writes nothing when the content itself changed since the plan. */
  async execute(plan: RollbackPlan, ctx) {
    const before = plan.writes?.[0]?.before;
    const planned = before ? contentHash(before, 'ConfigMap') : undefined;
    const guarded: Action = {
      ...configMapAction,
      plan: async (ref, c) => {
        const now = c.kube ? await getOrNull(c.kube, RESOURCES.configmaps, ref.namespace, ref.name, reqOpts(c)) : null;
        if (!planned || !now || contentHash(now, 'ConfigMap') !== planned) {
          return refused(ref, 'changed_since_plan', `ConfigMap ${ref.namespace}/${ref.name} was edited after the rollback was planned; not restoring over the new content automatically`);
        }
        const fresh = await configMapAction.plan(ref, c);
        if (fresh.refusal) return fresh;
        // the guards (scope, locks, cooldowns) saw the first plan's objects only
        const seen = new Set(writtenObjects(plan).map(objectKey));
        const added = writtenObjects(fresh).filter((o) => !seen.has(objectKey(o)));
        if (added.length) {
          return refused(ref, 'changed_since_plan', `the workloads using ConfigMap ${ref.namespace}/${ref.name} changed after the rollback was planned (${added.map(objectKey).join(', ')}): not restarting objects the guards did not check`);
        }
        return fresh;
      },
    };
    return executeWrites(guarded, plan, ctx);
  },

  async verify(plan: RollbackPlan, ctx: ClusterContext, opts: VerifyOptions): Promise<VerifyResult> {
    const [restore, ...restarts] = plan.writes ?? [];
    if (!restore) return { outcome: 'unverified', message: 'the plan wrote nothing to verify' };
    const ns = plan.target.namespace;
    const cm = `ConfigMap ${ns}/${plan.target.name}`;
    // the snapshot the plan wrote back; a plan whose patch was not kept (a record read back) has it on the live object
    let snapshot = (restore.patch as { metadata?: { annotations?: Record<string, string> } } | undefined)?.metadata?.annotations?.[RESTORED_FROM];
    try {
      snapshot ??= (await ctx.kube.get(RESOURCES.configmaps, ns, plan.target.name, reqOpts(ctx))).metadata.annotations?.[RESTORED_FROM];
      if (!snapshot) return { outcome: 'unverified', message: `${cm} names no snapshot it was restored from (${RESTORED_FROM})` };
      if (!(await holdsSnapshot(ctx.kube, 'ConfigMap', ns, plan.target.name, snapshot, ctx))) {
        return { outcome: 'failed', message: `${cm} no longer holds the content of snapshot ${snapshot}: it changed again after the restore (someone else, or a controller reconciling it)` };
      }
    } catch (err) {
      return { outcome: 'unverified', message: `cannot check ${cm} against snapshot ${snapshot}: ${(err as Error).message}` };
    }
    const done: string[] = [];
    const end = Date.now() + opts.timeoutMs;
    const since = opts.execution?.at ?? Date.now();
    for (const r of restarts) {
      const w = workloadOf(r.resource.plural);
      const res = await waitForRollout(ctx.kube, w.rt, r.namespace, r.name, (o) => w.state(o, { since }), {
        timeoutMs: Math.max(0, end - Date.now()),
        ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
        since,
        ...reqOpts(ctx),
      });
      if (res.outcome !== 'succeeded') return { outcome: res.outcome, message: `${cm} holds the content of snapshot ${snapshot}; restart of ${w.word} ${r.name}: ${res.message}`, details: res.details };
      done.push(res.message);
    }
    // pods read it at start: it must still be the restored content once they all started
    if (restarts.length) {
      try {
        if (!(await holdsSnapshot(ctx.kube, 'ConfigMap', ns, plan.target.name, snapshot, ctx))) {
          return { outcome: 'failed', message: `${cm} changed again while its workloads restarted: it no longer holds the content of snapshot ${snapshot}` };
        }
      } catch (err) {
        return { outcome: 'unverified', message: `the restarts finished, but ${cm} cannot be checked again: ${(err as Error).message}` };
      }
    }
    return {
      outcome: 'succeeded',
      message: `${cm} holds the content of snapshot ${snapshot}${done.length ? `; ${done.join('; ')}` : ''}`,
      details: { snapshot, restarted: restarts.map((r) => `${r.resource.kind}/${r.name}`) },
    };
  },
});

/** ConfigMap: `name` is the ConfigMap; rule param restart (true, the default, or false). */
export const configMapKind = defineKind({
  kind: 'ConfigMap',
  name: 'subdomain',
  revisions: false,
  options: configMapOptions,
  params: { restart: oneOfParam(['true', 'false']) },
  fromParams: (_name, p) => (p.restart !== undefined ? { restart: p.restart === 'true' } : {}),
  create: () => configMapAction,
});
