import type { Config } from '../config.js';
import type { Store } from '../store/store.js';
import { dryRunReason } from './dry-run.js';
import { untilGivenBack, type Attempt } from './give-back.js';
import { allow, block, type Guard, type GuardResult } from './guard.js';

/** The store's slot pool of rollbacks in flight (Store.acquireSlot). */
export const CONCURRENCY_POOL = 'rollbacks';

/** The slot the concurrency guard leased for a rollback: renewed while it runs, given back when it ends. */
export interface SlotHold {
  pool: string;
  member: string;
}

/**
 * At most MAX_CONCURRENT_ROLLBACKS rollbacks in flight at once, over all replicas. The check is the
 * reservation: one slot of the store's pool is leased in one atomic step (store.acquireSlot), so
 * replicas deciding at once never pass the limit together. The rollback renews the lease with its
 * locks (LOCK_TTL) and gives the slot back when it ends, verification included, or when it does not
 * execute; a replica that dies holding one loses it after LOCK_TTL. P0 rollbacks come first where
 * they compete because the queue serves P0 alerts first; a held slot is never taken back. A dry
 * run is checked against the slots held and leases none. Refused while a rollback that has not
 * executed holds a slot (it may give it back within moments), it tries again for a short while
 * (give-back.ts).
 */
export const concurrencyGuard: Guard = {
  name: 'concurrency',
  needsPlan: true,
  async check(ctx) {
    const { store, config, record } = ctx;
    const max = config.MAX_CONCURRENT_ROLLBACKS;
    // every slot held: named by their targets, from the records the wait read (a rollback still deciding may give its slot back)
    const full = (holders: string[]): Attempt<GuardResult> => ({
      refused: async (waited, read) => {
        const recordOf = (id: string) => (read.has(id) ? (read.get(id) ?? null) : store.getRecord(id).catch(() => null));
        const targets = await Promise.all(holders.map(async (member) => (await recordOf(slotRecord(member)))?.target ?? member));
        return block(`${holders.length} rollback(s) already in flight (${targets.join(', ')}); MAX_CONCURRENT_ROLLBACKS is ${max}${waited}`);
      },
      holders: holders.map(slotRecord),
      held: holders.length,
      limit: max,
    });
    const dry = dryRunReason(ctx) !== undefined;
    return untilGivenBack(store, record.id, ctx.now, ctx.renewLocks, async (): Promise<Attempt<GuardResult>> => {
      if (dry) {
        // a dry run is checked against the rollbacks in flight and takes no slot: it would refuse a
        // real rollback, or another dry run, for the moment it decides
        const holders = (await store.slotHolders(CONCURRENCY_POOL)).filter((m) => slotRecord(m) !== record.id);
        if (holders.length >= max) return full(holders);
        return { passed: allow(`${holders.length} of ${max} slot(s) for rollbacks in flight taken (MAX_CONCURRENT_ROLLBACKS); a dry run takes none`) };
      }
      const r = await leaseSlot(store, config, record.id);
      if ('holders' in r) return full(r.holders);
      return { passed: { verdict: 'allow', reason: `took one of ${max} slot(s) for rollbacks in flight (MAX_CONCURRENT_ROLLBACKS); given back when it ends`, produced: { slot: r.hold } } };
    });
  },
};

/**
 * The slot member of a rollback taken up by `replica` after the replica running it went silent
 * (engine/scheduler.ts), under the target lock whose fencing token is `token`. Not the record id
 * alone, which names the first run's slot: that replica may only have stalled, and when it wakes
 * it gives its slot back by that name. Nor the replica alone: a recovery of this replica that
 * stalled in turn, its lock lapsed and taken again by a later recovery of its own, gives its slot
 * back when it wakes too. Sharing a name, either release would take the later recovery's slot,
 * which would then go on uncounted.
 */
export const recoveryMember = (recordId: string, replica: string, token: number) => `${recordId} taken up by ${replica} #${token}`;

/** The record a slot member stands for (the record id, or recoveryMember's). */
export const slotRecord = (member: string): string => member.split(' ', 1)[0]!;

/**
 * Leases one slot of the pool for a rollback (the guard's check, and the recovery of a rollback
 * whose replica died: engine/scheduler.ts), named by `member`: the record id, or recoveryMember's.
 * Its hold, or the members holding every slot.
 */
export async function leaseSlot(store: Store, config: Pick<Config, 'MAX_CONCURRENT_ROLLBACKS' | 'LOCK_TTL'>, member: string): Promise<{ hold: SlotHold } | { holders: string[] }> {
  const r = await store.acquireSlot(CONCURRENCY_POOL, member, config.MAX_CONCURRENT_ROLLBACKS, config.LOCK_TTL);
  return r.acquired ? { hold: { pool: CONCURRENCY_POOL, member } } : { holders: r.holders };
}

/** Gives the slot back; a failure is only logged by the caller (the lease runs out by itself). */
export function releaseSlot(store: Store, hold: SlotHold): Promise<void> {
  return store.releaseSlot(hold.pool, hold.member);
}
