// POST /v1/rollbacks/:id/resume-gitops (admin): puts back exactly what the rollback suspended on
// its GitOps owners, never by itself; a field someone changed since is left as they left it, and
// the record says so (resumeOwners). After the bad commit is reverted in git, the owners reconcile
// to the good revision again.
//
// An owner may hold back more than one rollback: Application `shop` manages `web` and `api`; a
// rollback of `web` suspends it, a later rollback of `api` finds it paused and suspends nothing.
// Resuming the first turns self-heal back on under `api` too, which would put `api`'s bad revision
// back unless its commit is reverted in git as well. So resume first looks for the other rollbacks
// that wrote while the owner was paused (relyingOn) and answers 409 naming them, unless the request
// names each as reverted too (`reverted`). Until 2026-12-07 it did not look.
import type { EngineContext } from '../engine/context.js';
import type { RollbackRecord, RollbackState } from '../engine/record.js';
import { objectKey } from '../guards/guard.js';
import { holdLocks } from '../engine/locks.js';
import { resumeOwners, suspendedOwnerName } from './suspend.js';
import type { Suspension } from './types.js';

export type ResumeResult = { kind: 'ok'; record: RollbackRecord } | { kind: 'not_found' } | { kind: 'conflict'; message: string };

/** The states of records whose rollback wrote (or may have written) to the cluster. */
const WROTE: readonly RollbackState[] = ['in_progress', 'succeeded', 'unverified', 'failed', 'interrupted'];
/** How many relying rollbacks a conflict names before "and N more". */
const NAMED = 10;
/**
 * A rollback that wrote under the suspension may have been created up to this long before it
 * (held, waiting for approval): the suspension's records are all still kept while it is younger
 * than RECORD_RETENTION less this (half of RECORD_RETENTION when that is longer).
 */
const OPEN_BEFORE_WRITE = 86_400_000;

/** Another rollback that relies on one of `rec`'s suspended owners staying paused. */
export interface Reliance {
  id: string;
  target: string;
  state: RollbackState;
  /** the owner, in words */
  owner: string;
}

/**
 * The rollbacks other than `rec` that wrote to the cluster while one of its suspended owners was
 * paused: those whose plan found the owner paused (and so suspended nothing), and those that
 * suspended it themselves and are not resumed. Read from the records of the states that wrote,
 * which the budgets bound (BUDGET_CLUSTER_PER_HOUR over RECORD_RETENTION).
 */
export async function relyingOn(ctx: EngineContext, rec: RollbackRecord, suspended: Suspension[]): Promise<Reliance[]> {
  const out: Reliance[] = [];
  for (const state of WROTE) {
    for await (const r of ctx.records.inState(state)) {
      const g = r.gitops;
      if (r.id === rec.id || !g || g.resumed) continue;
      const s = suspended.find((s) => r.updatedAt >= s.at && (g.owners.some((o) => o.paused && objectKey(o) === objectKey(s)) || (g.suspended ?? []).some((x) => objectKey(x) === objectKey(s))));
      if (s) out.push({ id: r.id, target: r.target, state: r.state, owner: suspendedOwnerName(s) });
    }
  }
  return out;
}

function relianceMessage(id: string, unconfirmed: Reliance[]): string {
  const named = unconfirmed.slice(0, NAMED).map((r) => `${r.id} (${r.target}, ${r.state}, under ${r.owner})`);
  const more = unconfirmed.length > NAMED ? ` and ${unconfirmed.length - NAMED} more` : '';
  const ids = unconfirmed.map((r) => r.id);
  const command = unconfirmed.length > NAMED ? `--all-reverted (POST body "allReverted": true)` : `--reverted ${ids.join(',')} (POST body "reverted": [${ids.map((i) => JSON.stringify(i)).join(', ')}])`;
  return (
    `resuming rollback ${id}'s GitOps owners would also undo ${unconfirmed.length === 1 ? 'rollback' : 'rollbacks'} ${named.join(', ')}${more}: ` +
    `they wrote while the owner was paused, and its controller would put their bad revisions back. ` +
    `Revert each one's bad commit in git too, then resume naming them: rollguard rollbacks resume-gitops ${id} ${command}; nothing was changed`
  );
}

function tooOldMessage(ctx: EngineContext, id: string, suspended: Suspension[], oldest: number): string {
  const days = Math.floor((ctx.now() - oldest) / 86_400_000);
  const retention = Math.round(ctx.config.RECORD_RETENTION / 86_400_000);
  return (
    `rollback ${id} suspended ${suspended.map(suspendedOwnerName).join(', ')} ${days} days ago, about as long as records are kept (RECORD_RETENTION: ${retention} days): ` +
    `the records of rollbacks that wrote while it was paused may be deleted already, so rollguard cannot name every one its controller would undo. ` +
    `Check in git that every workload it manages runs a reverted or good commit, then resume with --all-reverted (POST body "allReverted": true); nothing was changed`
  );
}

/**
 * `reverted`: the other rollbacks relying on the owners that the caller says are reverted in git
 * too; `allReverted`: every one (needed once the suspension is about as old as RECORD_RETENTION,
 * when some of their records may be gone).
 */
export async function resumeGitOps(ctx: EngineContext, id: string, by: string, reverted: readonly string[] = [], allReverted = false): Promise<ResumeResult> {
  // One resume of a record at a time, on any replica (a request sent twice, a CLI retrying one that
  // timed out): two at once both read it not resumed, one put the owners back, and the other, finding
  // them resumed, recorded them as "changed by someone else", its save possibly the last. The claim
  // is a lock, renewed while the resume runs and given back only by its holder: until 2026-12-08 it
  // was a value kept a minute, which a resume outlasted on a slow API server (each owner's read and
  // write up to 10 s, a 409 read and written again), letting a second one run beside it, and whose
  // end deleted the claim whoever held it then. A replica that stops mid-way gives it up within LOCK_TTL.
  const ttl = ctx.config.LOCK_TTL;
  const claim = await ctx.store.acquireLock(resumeClaimName(id), `${ctx.owner} for resume-gitops of ${id}`, ttl);
  if (!claim) {
    return { kind: 'conflict', message: `rollback ${id}'s GitOps owners are being resumed by another request right now: nothing was changed; see the record in a moment (rollguard rollbacks get ${id})` };
  }
  const giveBack = holdLocks(ctx, { id }, [claim], undefined, 'the claim of a resume-gitops was lost while it runs (expired, or taken by another)');
  try {
    return await resumeClaimed(ctx, id, by, reverted, allReverted);
  } finally {
    await giveBack();
  }
}

/** The lock a resume-gitops of rollback `id` holds while it runs (one at a time on any replica). */
export const resumeClaimName = (id: string) => `gitops-resuming:${id}`;

async function resumeClaimed(ctx: EngineContext, id: string, by: string, reverted: readonly string[], allReverted: boolean): Promise<ResumeResult> {
  const rec = await ctx.records.get(id);
  if (!rec) return { kind: 'not_found' };
  const g = rec.gitops;
  if (!g?.suspended?.length) return { kind: 'conflict', message: `rollback ${id} suspended no GitOps owner` };
  if (g.resumed) return { kind: 'conflict', message: `rollback ${id}'s GitOps owners were resumed by ${g.resumed.by} at ${new Date(g.resumed.at).toISOString()}` };
  if (rec.state === 'in_progress') return { kind: 'conflict', message: `rollback ${id} is still in progress: resume once it has ended` };
  const kube = ctx.actionContext(rec, () => []).kube;
  if (!kube) return { kind: 'conflict', message: 'no Kubernetes cluster configured: set KUBECONFIG (--kubeconfig)' };
  const oldest = Math.min(...g.suspended.map((s) => s.at));
  // a retention of a day or two: half of it, not less than nothing
  const kept = Math.max(ctx.config.RECORD_RETENTION - OPEN_BEFORE_WRITE, ctx.config.RECORD_RETENTION / 2);
  if (!allReverted && ctx.now() - oldest > kept) return { kind: 'conflict', message: tooOldMessage(ctx, id, g.suspended, oldest) };
  const relying = await relyingOn(ctx, rec, g.suspended);
  const unconfirmed = allReverted ? [] : relying.filter((r) => !reverted.includes(r.id));
  if (unconfirmed.length > 0) return { kind: 'conflict', message: relianceMessage(id, unconfirmed) };
  const restored = await resumeOwners(kube, g.suspended, {}, rec.id, async (other, s) => holdsSuspension(await ctx.records.get(other), s));
  g.resumed = { at: ctx.now(), by, restored, ...(relying.length ? { reverted: relying.map((r) => r.id) } : {}), ...(allReverted ? { allReverted: true } : {}) };
  const also =
    (relying.length ? `; also relied on by ${relying.map((r) => r.id).join(', ')}, said reverted in git too by ${by}` : '') +
    (allReverted ? `; every workload under the owners said reverted in git by ${by} (--all-reverted)` : '');
  ctx.records.step(rec, 'gitops_resumed', `resumed by ${by}: ${restored.join('; ')}${also}`);
  // marked first: a replica saving an older copy of the record meanwhile (a close's second write) merges it
  await ctx.records.markResumed(rec.id, g.resumed, rec.timeline.at(-1)!);
  await ctx.records.save(rec);
  ctx.log.info({ record: rec.id, by, restored, reverted: relying.map((r) => r.id) }, 'GitOps owners resumed');
  return { kind: 'ok', record: rec };
}

/**
 * Whether rollback `r` holds a suspension of the owner of `s` not resumed yet: one its record lists,
 * or, while it is in progress, one of the owners its plan found (it suspends them after its
 * write-ahead, and records them after the write: an owner's `rollguard.io/suspended-by` names it in
 * between). A record that is gone or resumed, or that neither lists nor is taking the owner, holds none.
 */
export function holdsSuspension(r: RollbackRecord | null, s: Suspension): boolean {
  const g = r?.gitops;
  if (!r || !g || g.resumed) return false;
  if ((g.suspended ?? []).some((x) => objectKey(x) === objectKey(s))) return true;
  return r.state === 'in_progress' && g.owners.some((o) => !o.paused && objectKey(o) === objectKey(s));
}
