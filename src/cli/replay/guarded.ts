import type { RollbackPlan, TargetRef } from '../../actions/action.js';
import type { Config } from '../../config.js';
import type { RollbackRecord } from '../../engine/record.js';
import { writeCooldown } from '../../guards/cooldown.js';
import { GUARDS, type GuardContext, type Produced } from '../../guards/index.js';
import type { Rule } from '../../rules/schema.js';
import { formatTarget } from '../../rules/targets.js';
import type { Store } from '../../store/store.js';
import type { RolloutHistory, RolloutStart } from './rollouts.js';
import type { GuardStep } from './types.js';

/**
 * The guards of one would-be rollback, at a past time: the real guard modules (src/guards/), in
 * their order, against the replay's in-memory store whose clock is the replayed time, with the
 * configured settings. What they need of the cluster (the plan: the current revision's creation
 * time) comes from kube-state-metrics' history (rollouts.ts).
 *
 * Not replayed: `pause` (a live switch: its past state is not in Prometheus). `dry-run` runs with
 * DRY_RUN off (the replay shows what rollguard would do once it acts) and a rule's own dryRun on.
 * kubectl's refusals at plan time (no history, a paused Deployment, the template already
 * matching) and the other objects a plan writes (which scope and lock also check, checkWrites)
 * need the live objects and are not judged: the guards see the target only.
 *
 * A rollback that passes holds its target's lock and counts as in flight (the lock and
 * concurrency guards) for `inFlightMs`, the time its rollout and recovery check would take; its
 * budget is reserved by the budget guard and its cooldown starts at once, as in the engine.
 */

export const NOT_REPLAYED = new Set(['pause']);

export type GuardOutcome =
  | { kind: 'rolled_back'; release: () => Promise<void> }
  | { kind: 'blocked' | 'dry_run'; guard: string; reason: string }
  | { kind: 'approval'; guard: string; reason: string; until: number };

export interface GuardRun {
  outcome: GuardOutcome;
  steps: GuardStep[];
  /** what could not be judged and was assumed */
  notJudged: string[];
  rollout?: RolloutStart;
}

export interface GuardDeps {
  store: Store;
  /** the configured settings, DRY_RUN off */
  config: Config;
  rollouts: RolloutHistory;
  inFlightMs: number;
  owner: string;
}

export async function runGuards(deps: GuardDeps, record: RollbackRecord, rule: Rule, now: number): Promise<GuardRun> {
  const gctx: GuardContext = { record, settings: rule.guards, config: deps.config, store: deps.store, now, owner: deps.owner };
  const steps: GuardStep[] = [];
  const notJudged: string[] = [];
  const held: Produced = {};
  let rollout: RolloutStart | undefined;
  let passed = false;
  try {
    for (const guard of GUARDS) {
      if (NOT_REPLAYED.has(guard.name)) continue;
      if (guard.needsPlan && !gctx.plan) {
        rollout = await deps.rollouts.startOf(record.ref, now);
        gctx.plan = planFrom(record.ref, rollout, now);
      }
      if (guard.name === 'recent-deploy' && rollout?.at === undefined) {
        const why = `could not be judged: ${rollout?.unknown ?? 'the rollout start is unknown'}; assumed a recent deploy`;
        steps.push({ guard: guard.name, result: 'not_judged', reason: why });
        notJudged.push(`${guard.name} ${why}`);
        continue;
      }
      const r = await guard.check(gctx);
      // 'later' (the lock guard's, behind a rollback still deciding) ends a replay as blocked: a replay decides each alert once
      steps.push({ guard: guard.name, result: r.verdict === 'later' ? 'block' : r.verdict, reason: r.reason });
      if (r.verdict === 'allow') {
        Object.assign(held, r.produced);
        continue;
      }
      const base = { steps, notJudged, ...(rollout ? { rollout } : {}) };
      if (r.verdict === 'wait') return { ...base, outcome: { kind: 'approval', guard: guard.name, reason: r.reason, until: r.until } };
      return { ...base, outcome: { kind: guard.name === 'dry-run' ? 'dry_run' : 'blocked', guard: guard.name, reason: r.reason } };
    }
    passed = true;
    const release = await execute(deps, record, rule, now, held);
    return { outcome: { kind: 'rolled_back', release }, steps, notJudged, ...(rollout ? { rollout } : {}) };
  } finally {
    if (!passed && held.lock) await deps.store.releaseLock(held.lock);
    // the budget guard reserved as it allowed; a rollback that did not pass gives it back, as the engine does
    if (!passed && held.budget) await deps.store.releaseEvents(held.budget.keys, held.budget.member);
    if (!passed && held.slot) await deps.store.releaseSlot(held.slot.pool, held.slot.member);
  }
}

/**
 * What the engine's execute does to the guards' state: the record in flight, the lock held, the
 * cooldown started (the budget guard reserved the budget as it allowed). The returned function
 * ends the flight.
 */
async function execute(deps: GuardDeps, record: RollbackRecord, rule: Rule, now: number, held: Produced): Promise<() => Promise<void>> {
  record.state = 'in_progress';
  record.times.executedAt = now;
  await deps.store.putRecord(record);
  if (held.lock) await deps.store.renewLock(held.lock, deps.inFlightMs);
  if (held.slot) await deps.store.renewSlot(held.slot.pool, held.slot.member, deps.inFlightMs);
  await writeCooldown(deps.store, record.target, { id: `rule ${rule.name}`, at: now, until: now + rule.guards.cooldown }, now);
  return async () => {
    record.state = 'succeeded';
    await deps.store.putRecord(record);
    if (held.lock) await deps.store.releaseLock(held.lock);
    if (held.slot) await deps.store.releaseSlot(held.slot.pool, held.slot.member);
  };
}

/** The plan as far as history tells it: the current revision's creation time, nothing of the writes. */
function planFrom(ref: TargetRef, rollout: RolloutStart, now: number): RollbackPlan {
  const plan: RollbackPlan = { target: ref, kind: ref.kind, summary: `roll back ${formatTarget(ref)}`, plannedAt: now };
  if (rollout.at !== undefined) {
    // kube-state-metrics' series carry no revision number: the recent-deploy guard then names none
    plan.current = { revision: undefined as unknown as number, createdAt: rollout.at, annotations: {} };
  }
  return plan;
}

/** "ReplicaSet web-5f7d created 2024-03-08T09:00:00Z", "… unchanged for 1d1h (at least that old)". */
export function describeRollout(r: RolloutStart | undefined): string | undefined {
  if (!r || r.at === undefined) return undefined;
  return r.atLeast ? `${r.source}` : `${r.source} ${new Date(r.at).toISOString()}`;
}
