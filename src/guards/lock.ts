import type { Lock, Store, StoredRecord } from '../store/store.js';
import type { WrittenObject } from '../actions/index.js';
import type { RollbackRecord } from '../engine/record.js';
import { dryRunReason } from './dry-run.js';
import { allow, block, fmtDuration, objectKey, type Guard, type GuardContext, type GuardResult } from './guard.js';

export const lockName = (target: string) => `target:${target}`;

/**
 * The owners locks are taken under, `<replica> for <what>`, so that an alert's rollback finding a
 * lock held can read what holds it (heldElsewhere): a rollback names its record, a drill's
 * restore its drill. `holderOf` reads one back; a bare replica name is an earlier version's.
 */
export const rollbackHolder = (replica: string, recordId: string) => `${replica} for ${recordId}`;
export const drillHolder = (replica: string, drillId: string) => `${replica} for drill ${drillId}`;
type Holder = { record: string } | { other: string } | { earlierVersion: string };
function holderOf(owner: string): Holder {
  if (!owner.includes(' for ')) return { earlierVersion: owner };
  const record = / for (rb-\S+)$/.exec(owner)?.[1];
  return record !== undefined ? { record } : { other: owner };
}

/**
 * One rollback per target, and one per written object, across all replicas: takes the target's
 * lock before the plan, then the lock of every other object the plan writes (a Canary's stable
 * Deployment, a blue-green Service), each with a fencing token the action checks right before it
 * writes, and hands them to the rollback (`produced`), which holds them until the rollback is
 * verified and releases them on any stop. Two rollbacks writing one object never run at once: a
 * held lock, the target's or a written object's, is judged by what holds it (heldElsewhere). A
 * dry run (dryRunReason) writes nothing and takes no lock: it reads who holds them and is judged
 * the same way, so a rule tried out in dry-run never makes a live rollback of its target wait, or
 * a manual one blocked, for the moment it decides.
 */
export const lockGuard: Guard = {
  name: 'lock',
  needsPlan: false,
  async check(ctx) {
    const owner = rollbackHolder(ctx.owner, ctx.record.id);
    const target = ctx.record.target;
    if (dryRunReason(ctx)) return takeOrJudge(ctx, false, async () => ((await ctx.store.lockOwner(lockName(target))) === null ? free('target', `${target}'s lock is free; a dry run takes none`) : { held: target }));
    return takeOrJudge(ctx, false, async () => {
      const lock = await ctx.store.acquireLock(lockName(target), owner, ctx.config.LOCK_TTL);
      return lock ? taken(lock) : { held: target };
    });
  },
  async checkWrites(ctx) {
    const owner = rollbackHolder(ctx.owner, ctx.record.id);
    if (dryRunReason(ctx)) {
      return takeOrJudge(ctx, true, async () => {
        const names = writtenNames(ctx.record.target, ctx.objects);
        const holders = await Promise.all(names.map((key) => ctx.store.lockOwner(lockName(key))));
        const held = names.find((_, i) => holders[i] !== null);
        if (held !== undefined) return { held };
        return free('written', names.length ? `the locks of ${names.join(', ')} are free; a dry run takes none` : 'it writes no other object');
      });
    }
    return takeOrJudge(ctx, true, async () => {
      const r = await lockWrites(ctx.store, owner, ctx.config.LOCK_TTL, ctx.record.target, ctx.objects);
      if ('held' in r) return r;
      return { ...allow(r.names.length ? `locks of ${r.names.join(', ')} taken too` : 'it writes no other object'), produced: { locks: r.locks } };
    });
  },
};

const taken = (lock: Lock): GuardResult => ({ verdict: 'allow', reason: `lock taken (fencing token ${lock.token})`, produced: { lock } });
/** A dry run's allow: the locks it would take are free (it takes none). */
const free = (which: 'target' | 'written', reason: string): GuardResult => ({ verdict: 'allow', reason, produced: { free: which } });

/** Takes the lock(s): the guard's allow, or the object whose lock is held (all or none were taken). */
type Take = () => Promise<GuardResult | { held: string }>;

/** `written`: the locks of the objects the plan writes besides its target (checkWrites), not the target's. */
async function takeOrJudge(ctx: GuardContext, written: boolean, take: Take): Promise<GuardResult> {
  const r = await take();
  return 'held' in r ? heldElsewhere(ctx, written, r.held, take) : r;
}

/**
 * A lock is held, the target's or that of an object the plan writes (`key`, `written`): what holds
 * it (Store.lockOwner, then the holder's record) says what this rollback does. A rollback
 * executing (in_progress) stands for this one: blocked, naming it. One not executing (still
 * deciding, or ending without a write: asking for approval, blocked by its own guard) may leave
 * the object as it is, and an alert closed `blocked` behind it would then roll nothing back (a P0
 * alert behind a P1 rule's evaluation that asks for approval; a Canary's alert behind a rollback
 * of its stable Deployment that does). So an alert's rollback is decided again later instead:
 * scheduled LOCK_TTL/6 on, then from its trigger again, until 2 × LOCK_TTL after it first found
 * the lock held; only then blocked. The target's wait (`lockWaitSince`) ends when its lock is
 * taken; the written objects' (`writeLockWaitSince`, one for all of them) when every lock is: a
 * long wait on the target does not shorten the one on a written object behind it (which would
 * close the alert at once, the case this wait is for). A lock given back between the two reads is
 * taken (`take` again). A holder that is not a rollback (a drill's restore, which writes) blocks
 * at once, naming it. Manual rollbacks, approved ones and a chain's targets are blocked at once,
 * as before: they are not decided from a trigger, and their requester (or the chain) hears of it
 * now.
 *
 *   the lock's holder                          record (alert, rule, no chain, not approved)           other records
 *   a rollback executing (in_progress)         block, naming it                                       block
 *   a rollback not executing (any other state) later (scheduled), until 2 x LOCK_TTL, then block      block
 *   not a rollback (a drill's restore)         block, naming it                                       block
 *   none any more (given back meanwhile)       the lock is taken (a dry run: it goes on, taking none) block
 *   an earlier attempt of this record          later (its lock expires within LOCK_TTL)               block
 *   a bare replica name (an earlier version)   the target's: block if a record of it is in_progress,  block
 *                                              else later; a written object's: block (the rollback
 *                                              writing it may be one of another target, executing)
 */
async function heldElsewhere(ctx: GuardContext, written: boolean, key: string, take: Take): Promise<GuardResult> {
  const rec = ctx.record;
  const mayWait = rec.source !== 'manual' && rec.rule !== undefined && rec.chain === undefined && rec.approval?.decision !== 'approved';
  if (!mayWait) return block(inProgress(rec, key));
  let holder = await ctx.store.lockOwner(lockName(key));
  if (holder === null) {
    const again = await take();
    if (!('held' in again)) return again;
    key = again.held;
    holder = await ctx.store.lockOwner(lockName(key));
  }
  const why = inProgress(rec, key);
  const of = holder === null ? null : holderOf(holder);
  if (of && 'earlierVersion' in of) {
    // taken under a bare replica name, by a version before this one (a rolling upgrade): its rollback, if executing, is found by the target's
    // records; a written object's holder may be a rollback of another target (a Canary writing its stable Deployment), which they do not find
    if (written) return block(`${why} (taken by ${holder}, an earlier version, which does not say what for)`);
    const running = (await ctx.store.listRecords({ target: key, state: 'in_progress', limit: 2 })).find((r) => r.id !== rec.id);
    if (running) return block(`another rollback ${about(rec, key)} is executing (${running.id}; its lock is held)`);
  } else if (of && 'other' in of) return block(`${key}'s lock is held by ${of.other}, which is not a rollback being decided (it writes)`);
  const id = of && 'record' in of ? of.record : undefined;
  // (held for this very record: an earlier attempt of it, by a replica that stopped, whose lock expires within LOCK_TTL)
  const other = id === undefined || id === rec.id ? null : await ctx.store.getRecord(id);
  if (other?.state === 'in_progress') return block(`another rollback ${about(rec, key, other.target)} is executing (${other.id}; its lock is held)`);
  const max = 2 * ctx.config.LOCK_TTL;
  const since = written ? rec.writeLockWaitSince : rec.lockWaitSince;
  const waited = since === undefined ? 0 : ctx.now - since;
  const forWhat = written ? 'the rollbacks holding the objects it writes to execute or give their locks back' : 'its holder to execute or give it back';
  if (waited >= max) return block(`${why}, still after ${fmtDuration(waited)} of waiting for ${forWhat} (2 × LOCK_TTL)`);
  const every = Math.max(1, Math.round(ctx.config.LOCK_TTL / 6));
  const reason = `${key}'s lock is held by ${heldBy(key, id === rec.id, other, holder)}: decided again in ${fmtDuration(every)}, for at most 2 × LOCK_TTL (${fmtDuration(max)})`;
  return { verdict: 'later', reason, at: ctx.now + every, ...(written ? { written } : {}) };
}

/** What holds a lock a rollback waits for, as its `later` reason says it. */
function heldBy(key: string, ownAttempt: boolean, other: StoredRecord | null, holder: string | null): string {
  if (ownAttempt) return `an earlier attempt of this rollback (${holder}; its lock expires within LOCK_TTL)`;
  const what = other ? `${other.id}, ${other.state}${other.target !== key ? `, a rollback of ${other.target}` : ''}` : (holder ?? 'given back since');
  return `a rollback that has not executed (${what}; it may yet end without writing)`;
}

/**
 * How a reason names the rollback holding `key`'s lock: `of <target>` for this rollback's target,
 * `writing <object>` for another object it writes, and the holder's own target when that is
 * neither (`writing Deployment/prod/api (a rollback of Canary/prod/api)`).
 */
function about(rec: RollbackRecord, key: string, holderTarget?: string): string {
  if (holderTarget !== undefined && holderTarget !== key) return `writing ${key} (a rollback of ${holderTarget})`;
  return key === rec.target ? `of ${key}` : `writing ${key}`;
}

const inProgress = (rec: RollbackRecord, key: string) => `another rollback ${about(rec, key)} is in progress (its lock is held)`;

/**
 * The locks of every object a plan writes but its target, in name order; all or none: when one is
 * held elsewhere, those taken are given back and it is named. The guard's, and a recovery going on
 * with a plan (src/engine/scheduler.ts).
 */
export async function lockWrites(store: Store, owner: string, ttlMs: number, target: string, objects: readonly WrittenObject[]): Promise<{ locks: Lock[]; names: string[] } | { held: string }> {
  const names = writtenNames(target, objects);
  const locks: Lock[] = [];
  for (const key of names) {
    const lock = await store.acquireLock(lockName(key), owner, ttlMs);
    if (!lock) {
      await Promise.all(locks.map((l) => store.releaseLock(l).catch(() => false)));
      return { held: key };
    }
    locks.push(lock);
  }
  return { locks, names };
}

/** The objects a plan writes but its target, in name order: those whose locks it takes besides the target's. */
const writtenNames = (target: string, objects: readonly WrittenObject[]) => [...new Set(objects.map(objectKey))].filter((k) => k !== target).sort();

/**
 * Waits until what a rollback wrote to the store is on the replicas REDIS_MIN_REPLICAS_ACK asks
 * for, before it writes to the cluster; when they do not confirm, the error says nothing is written.
 */
export async function replicatedBeforeWriting(store: Store): Promise<void> {
  try {
    await store.replicated();
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}: not writing`, { cause: err });
  }
}

/**
 * The fence check an action runs right before each write (ActionContext.checkFence): every lock
 * the rollback holds must still be ours (its fencing token the store's current one) and renew for
 * another `ttlMs`. The reads and renewals of every lock go to the store together: a renewal only
 * extends a lock still ours (renewLock), so one sent alongside a fence that turns out lost
 * changes nothing another holder has.
 */
export async function checkFence(store: Store, held: readonly Lock[], ttlMs: number): Promise<void> {
  if (held.length === 0) throw new Error('no lock held for this rollback');
  const checks = held.map((l) => Promise.all([store.currentFence(l.name), store.renewLock(l, ttlMs)]));
  const results = await Promise.all(checks);
  held.forEach((l, i) => {
    const [fence, renewed] = results[i]!;
    const what = l.name.replace(/^target:/, '');
    if (fence !== l.token) throw new Error(`lock on ${what} lost (fencing token ${l.token}, current ${fence}): not writing`);
    if (!renewed) throw new Error(`lock on ${what} expired: not writing`);
  });
}
