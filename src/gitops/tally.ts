// rollguard_gitops_suspended: how many owners rollguard left suspended, the same on every replica.
//
// Suspend and resume may run on different replicas, and a replica restarts with its gauges at 0,
// so the gauge is neither kept in process (an inc on the suspending replica and a dec on the
// resuming one would be wrong on each) nor counted by reading every record on each tick (a scan of
// every kept record, not one of the store's indexes). Each suspended owner and each resumed one is
// an event in the shared store (Store.addEvent), dated by its record's createdAt; every replica
// sets the gauge on its scheduler tick to suspended - resumed over RECORD_RETENTION. Dating both by
// the record makes them leave the window together, when the record itself is pruned and can no
// longer be resumed through rollguard.
import type { EngineContext } from '../engine/context.js';
import type { RollbackRecord } from '../engine/record.js';

type Ctx = Pick<EngineContext, 'store' | 'metrics' | 'config' | 'now' | 'log'>;

const SUSPENDED = 'gitops:suspended';
const RESUMED = 'gitops:resumed';

async function note(ctx: Ctx, key: string, rec: RollbackRecord, owners: number): Promise<void> {
  try {
    for (let i = 0; i < owners; i++) await ctx.store.addEvent(key, rec.createdAt, ctx.config.RECORD_RETENTION);
  } catch (err) {
    // the record holds the truth; only the gauge is off until the record leaves RECORD_RETENTION
    ctx.log.warn({ err, record: rec.id }, `could not count the GitOps owners ${key === SUSPENDED ? 'suspended' : 'resumed'} for rollguard_gitops_suspended`);
  }
}

/** After suspendOwners(): these owners are now left suspended by rollguard. */
export const noteSuspended = (ctx: Ctx, rec: RollbackRecord, owners: number) => note(ctx, SUSPENDED, rec, owners);

/** After resumeOwners(): these owners are no longer. */
export const noteResumed = (ctx: Ctx, rec: RollbackRecord, owners: number) => note(ctx, RESUMED, rec, owners);

/** Sets rollguard_gitops_suspended from the shared store (each scheduler tick, every replica). */
export async function refreshSuspendedGauge(ctx: Ctx): Promise<void> {
  const since = ctx.now() - ctx.config.RECORD_RETENTION;
  const [suspended, resumed] = await Promise.all([ctx.store.countEvents(SUSPENDED, since), ctx.store.countEvents(RESUMED, since)]);
  ctx.metrics.gitopsSuspended.set(Math.max(0, suspended - resumed));
}
