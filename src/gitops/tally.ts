// rollguard_gitops_suspended: how many owners rollguard left suspended, the same on every replica.
//
// Suspend and resume may run on different replicas, and a replica restarts with its gauges at 0,
// so the gauge is not kept in process (an inc on the suspending replica and a dec on the resuming
// one would be wrong on each). It is what the shared store's records hold (Store.heldCount: the
// stores index each record's suspended, not yet resumed owners, record.ts heldByRecord), read on
// every replica's scheduler tick. Those records are kept until resumed, so the gauge drops an
// owner only when rollguard resumes it.
//
// Until 2026-12-07 the gauge counted suspension and resume events over RECORD_RETENTION: an owner
// still suspended left the gauge when its record's events aged out, as its record left the store.
import type { EngineContext } from '../engine/context.js';

type Ctx = Pick<EngineContext, 'store' | 'metrics'>;

/** Sets rollguard_gitops_suspended from the shared store (each scheduler tick, every replica). */
export async function refreshSuspendedGauge(ctx: Ctx): Promise<void> {
  ctx.metrics.gitopsSuspended.set(await ctx.store.heldCount());
}
