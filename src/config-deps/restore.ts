// configDrift: restore, with configuration snapshots (CONFIG_SNAPSHOTS, snapshots.ts): each drifted
// ConfigMap (and Secret, with CONFIG_SNAPSHOTS_SECRETS) whose snapshot was current when the
// target revision was created is written back before the workload. The write is one more of the
// plan's writes, first in order: executeWrites fences it (checkFence) like the workload's, guards
// see it (writtenObjects: scope, locks, cooldowns), it carries the live object's resourceVersion
// (a change since the read is a 409 Conflict, and the whole plan is made again from fresh reads),
// and verify checks its content afterwards (verifyRestored). A drifted object without such a
// snapshot is named in `notRestored`, and the approval guard waits for a human (policy.ts).
// Data is read and written here, never put in the record: the record keeps the write's paths only.
import type { ActionContext, PlannedWrite, RollbackPlan, VerifyResult } from '../actions/action.js';
import { reqOpts } from '../actions/common.js';
import { getOrNull, type Kube, type KubeObject } from '../kube/kube.js';
import { KubeApiError } from '../kube/errors.js';
import { CONFIG_RESOURCES, SECRETS_NOT_CHECKED, fmtTime, type ConfigDrift, type TargetRevision } from './check.js';
import type { ConfigKind } from './refs.js';
import { contentHash, currentAt, restorePatch, snapshotSelector, snapshotSince, snapshotsOf } from './snapshots.js';

/** The live object and its snapshots (signed under ctx.snapshotKey, newest first), or null when it is gone. */
export async function readWithSnapshots(kube: Kube, kind: ConfigKind, ns: string, name: string, ctx: ActionContext): Promise<{ live: KubeObject; snapshots: KubeObject[] } | null> {
  const rt = CONFIG_RESOURCES[kind];
  const live = await getOrNull(kube, rt, ns, name, reqOpts(ctx));
  if (!live) return null;
  // without the key (CONFIG_SNAPSHOTS off) no snapshot can be told from a forgery: none counts
  if (!ctx.snapshotKey) return { live, snapshots: [] };
  const all = await kube.list(rt, ns, { ...reqOpts(ctx), labelSelector: snapshotSelector(name) });
  return { live, snapshots: snapshotsOf(all, live, kind, ctx.snapshotKey) };
}

/** The write that puts a snapshot's content back into the live object (resourceVersion precondition). */
export function restoreWrite(kind: ConfigKind, live: KubeObject, snapshot: KubeObject, why: string): PlannedWrite {
  return {
    resource: CONFIG_RESOURCES[kind],
    namespace: live.metadata.namespace!,
    name: live.metadata.name,
    patchType: 'merge',
    patch: restorePatch(live, snapshot, kind),
    precondition: 'resource-version',
    description: `restore ${kind} ${live.metadata.namespace}/${live.metadata.name} from snapshot ${snapshot.metadata.name} (${why})`,
  };
}

/** How many times a put-back is sent again after a 409 that left the restored content in place (only metadata changed). */
export const PUT_BACK_TRIES = 3;

/**
 * Writes back, in reverse order, the content each landed configuration restore replaced (`configBefore`),
 * each guarded by the resourceVersion the restore left (`after`), each fenced. For a workload write
 * that did not land after them: the revision still running gets its own configuration back.
 * On a 409 (the object changed since the restore) it is read again and its content (data and
 * binaryData, or a Secret's type and data; never labels or annotations) decides:
 *  - the content from before the restore: someone already wrote it back (a release re-applying
 *    it): put back, said so;
 *  - still the restored content (a label, an annotation, a controller's no-op apply): written back
 *    again under the new resourceVersion, at most PUT_BACK_TRIES times in all;
 *  - anything else: someone wrote newer content after the restore (a release's new configuration):
 *    left as it is and said (`leftAsIs`), never overwritten and not escalated for that.
 * Any other failure (or the tries used up) is `notPutBack`: it holds the restored content.
 */
export async function putBackRestored(
  kube: Kube,
  landed: { w: PlannedWrite; after: KubeObject }[],
  ctx: ActionContext,
): Promise<{ putBack: string[]; notPutBack: string[]; leftAsIs: string[] }> {
  const putBack: string[] = [];
  const notPutBack: string[] = [];
  const leftAsIs: string[] = [];
  for (const { w, after } of [...landed].reverse()) {
    const kind: ConfigKind = w.resource.plural === 'secrets' ? 'Secret' : 'ConfigMap';
    const what = `${kind} ${w.namespace}/${w.name}`;
    const before = contentHash(w.configBefore!, kind);
    const restored = contentHash(after, kind);
    const snapshots = `its snapshots: kubectl -n ${w.namespace} get ${w.resource.plural} -l ${snapshotSelector(w.name)}`;
    let live = after;
    let outcome: { to: string[]; line: string } | undefined;
    for (let tries = 1; !outcome; tries++) {
      try {
        await ctx.checkFence();
        await kube.patch(w.resource, w.namespace, w.name, restorePatch(live, w.configBefore!, kind), 'merge', reqOpts(ctx));
        outcome = { to: putBack, line: `${what}: its content before the restore written back` };
        break;
      } catch (err) {
        if (!(err instanceof KubeApiError && err.isConflict)) {
          outcome = { to: notPutBack, line: `${what} could not be put back (${(err as Error).message}): it may still hold what the restore wrote (${w.description}); if the revision running needs its earlier content, write it back (${snapshots})` };
          break;
        }
      }
      // changed since the restore: read it again, and look at its content only
      try {
        const now = await getOrNull(kube, w.resource, w.namespace, w.name, reqOpts(ctx));
        if (!now) {
          outcome = { to: leftAsIs, line: `${what} was deleted after the restore: nothing to put back` };
        } else if (contentHash(now, kind) === before) {
          outcome = { to: putBack, line: `${what}: its content before the restore written back by someone else after the restore (it holds it again)` };
        } else if (contentHash(now, kind) !== restored) {
          outcome = { to: leftAsIs, line: `${what} was given newer content after the restore (neither the restored one nor the one before): left as it is, not put back` };
        } else if (tries >= PUT_BACK_TRIES) {
          outcome = { to: notPutBack, line: `${what} could not be put back (it still holds what the restore wrote (${w.description}), but it changed again at each of ${PUT_BACK_TRIES} tries to write back the content it had before): write back the content it had before (${snapshots})` };
        } else {
          live = now; // only its metadata changed: again, under its new resourceVersion
        }
      } catch (err) {
        outcome = { to: notPutBack, line: `${what} could not be put back (it changed after the restore, and reading it again failed: ${(err as Error).message}): check whether it still holds what the restore wrote (${w.description}); if so, write back the content it had before (${snapshots})` };
      }
    }
    outcome!.to.push(outcome!.line);
  }
  return { putBack, notPutBack, leftAsIs };
}

async function restoreOne(d: ConfigDrift, ctx: ActionContext & { kube: Kube }, target: TargetRevision): Promise<{ drift: ConfigDrift; write?: PlannedWrite }> {
  const rev = `revision ${target.revision}`;
  if (d.kind === 'Secret' && !ctx.configRestore?.secrets) return { drift: { ...d, notRestored: `Secrets are not restored unless CONFIG_SNAPSHOTS_SECRETS is on` } };
  if (d.kind === 'Secret' && ctx.checkSecrets === false) return { drift: { ...d, notRestored: `it was not checked: ${SECRETS_NOT_CHECKED}` } };
  if (d.changedAt === undefined || target.createdAt === undefined) return { drift: { ...d, notRestored: `it could not be checked` } };
  const read = await readWithSnapshots(ctx.kube, d.kind, d.namespace, d.name, ctx);
  const snap = read ? currentAt(read.snapshots, target.createdAt) : undefined;
  if (!read || !snap) return { drift: { ...d, notRestored: `no snapshot of it was current when ${rev} was created` } };
  const since = snapshotSince(snap)!;
  if (contentHash(read.live, d.kind) === contentHash(snap, d.kind)) {
    return { drift: { ...d, restore: { snapshot: snap.metadata.name, since, written: false }, message: `${d.message.replace(/: the old code will run with the new configuration$/, '')}, and its content is again that of snapshot ${snap.metadata.name} (current when ${rev} was created): nothing to restore` } };
  }
  const why = `its content since ${fmtTime(since, target.createdAt)}, current when ${rev} was created`;
  return {
    drift: { ...d, restore: { snapshot: snap.metadata.name, since, written: true }, message: `${d.message.replace(/: the old code will run with the new configuration$/, '')}: restored first from snapshot ${snap.metadata.name} (${why})` },
    // configuration put ahead of the workload's write: written back if that write does not land (executeWrites)
    write: { ...restoreWrite(d.kind, read.live, snap, why), configBefore: read.live },
  };
}

/** The plan with its drifted configuration written back first where a snapshot allows. */
export async function withConfigRestore(plan: RollbackPlan, ctx: ActionContext, target: TargetRevision): Promise<RollbackPlan> {
  if (!ctx.kube || !plan.configDrift?.length) return plan;
  const kube = ctx.kube;
  const results = [];
  for (const d of plan.configDrift) results.push(await restoreOne(d, { ...ctx, kube }, target));
  const writes = results.flatMap((r) => (r.write ? [r.write] : []));
  const restored = results.filter((r) => r.write).map((r) => `${r.drift.kind} ${r.drift.namespace}/${r.drift.name} from snapshot ${r.drift.restore!.snapshot}`);
  return {
    ...plan,
    configDrift: results.map((r) => r.drift),
    writes: [...writes, ...(plan.writes ?? [])],
    summary: restored.length ? `restore ${restored.join(', ')}, then ${plan.summary}` : plan.summary,
  };
}

/** Whether the live object holds exactly the content of its snapshot `snapshot` (read errors throw). */
export async function holdsSnapshot(kube: Kube, kind: ConfigKind, ns: string, name: string, snapshot: string, ctx: ActionContext): Promise<boolean> {
  const rt = CONFIG_RESOURCES[kind];
  const [live, snap] = await Promise.all([kube.get(rt, ns, name, reqOpts(ctx)), kube.get(rt, ns, snapshot, reqOpts(ctx))]);
  return contentHash(live, kind) === contentHash(snap, kind);
}

/**
 * After the rollout: each restored object still holds its snapshot's content. One that changed
 * again (a GitOps controller, a deploy pipeline writing it back) fails the rollback, naming it.
 */
export async function verifyRestored(plan: RollbackPlan, ctx: ActionContext, result: VerifyResult): Promise<VerifyResult> {
  const restored = (plan.configDrift ?? []).filter((d) => d.restore?.written);
  if (!ctx.kube || restored.length === 0) return result;
  const held: string[] = [];
  for (const d of restored) {
    try {
      if (!(await holdsSnapshot(ctx.kube, d.kind, d.namespace, d.name, d.restore!.snapshot, ctx))) {
        return { outcome: 'failed', message: `${d.kind} ${d.namespace}/${d.name} no longer holds the content of snapshot ${d.restore!.snapshot}: it changed again after the restore; ${result.message}` };
      }
      held.push(`${d.kind} ${d.namespace}/${d.name}`);
    } catch (err) {
      return { outcome: result.outcome === 'failed' ? 'failed' : 'unverified', message: `cannot check the restored ${d.kind} ${d.namespace}/${d.name}: ${(err as Error).message}; ${result.message}` };
    }
  }
  return { ...result, message: `${result.message}; ${held.join(', ')} ${held.length === 1 ? 'holds' : 'hold'} the restored content` };
}
