import type { TargetRef } from '../actions/action.js';
import { releaseClaim, tryClaim } from './claim.js';
import type { EngineContext } from './context.js';
import { OPEN_STATES, targetKey, type RollbackRecord, type RollbackState } from './record.js';
import { rollback } from './rollback.js';

/**
 * A rule's ordered list of targets (the runbook's "rolling back multiple services") is a job kept
 * in the store, not a loop in one replica's handler: every record of the chain names all its
 * targets, their record ids and its own place (`rec.chain`). The alert's handler starts the first
 * target and is done once it is handed to verification. Whoever ends a target — the replica that
 * verified it, or the one that recovered it after a hand-over (scheduler.ts) — starts the next:
 * the next target's record is written ahead, `deciding`, before the current one is closed, so a
 * replica dying between the two leaves a record the scheduler takes up (records left deciding by a
 * dead replica), once the current one has closed (afterPrevious). A target that does not roll back
 * stops the chain: the following targets are recorded `blocked`, naming it.
 *
 * The decision (trigger confirmed in Prometheus, the decision tree) is taken once, for the first
 * target; the next ones run the guards on it. Each target's rollout is verified before the next
 * starts; the trigger is re-checked in Prometheus after the last (verify.ts), since the service
 * may not recover before every target is rolled back.
 */
export interface ChainLink {
  ref: TargetRef;
  /** the record of this target (alertRecordId) */
  id: string;
}

export interface Chain {
  /** this record's place in `targets` */
  index: number;
  targets: ChainLink[];
}

/** Ends that let the chain go on to the next target. */
const GOES_ON: readonly RollbackState[] = ['succeeded', 'dry_run'];

/**
 * Whether a chain's record closed in `state` starts its next target, whose record is then written
 * ahead, before the close (prepareNext). Otherwise the rest are written blocked after the close
 * lands: a close that fails (the store) leaves the record to be decided again, and the next
 * targets must not stay blocked by an ending that did not happen.
 */
export function chainGoesOn(state: RollbackState): boolean {
  return GOES_ON.includes(state);
}

/** Set on a chain's records but the last: their recovery check waits for the last target. */
export function beforeLast(rec: RollbackRecord): boolean {
  return rec.chain !== undefined && rec.chain.index < rec.chain.targets.length - 1;
}

/** A chain's record after the first: its decision was the first target's (the scheduler runs its guards, never evaluates it again). */
export function decidedByChain(rec: RollbackRecord): boolean {
  return (rec.chain?.index ?? 0) > 0;
}

/**
 * Called by EngineContext.finish() for a chain's record closed in `state`: before the close, the
 * next target's record written ahead (deciding, to be started); after it (chainGoesOn false),
 * blocked, when the chain stops here, which blocks the rest in turn. Returns the next target to start once the current record is
 * closed, or undefined. Writing the same next record twice is avoided by its claim, so a record
 * closed again after a hand-over does not start the next target twice; the claim is given up once
 * the next record is written (claim.ts), so that it never outlives it: a resend of the alert after
 * the chain's records were pruned goes on to the next target on whichever replica ends the first.
 */
export async function prepareNext(ctx: EngineContext, rec: RollbackRecord, state: RollbackState): Promise<NextTarget | undefined> {
  const c = rec.chain;
  if (!c || c.index + 1 >= c.targets.length) return undefined;
  const link = c.targets[c.index + 1]!;
  if (await ctx.records.get(link.id)) return undefined;
  const claimed = await tryClaim(ctx, link.id);
  if (!claimed && (await ctx.store.getValue(`claim:${link.id}`)) !== ctx.owner) return undefined;
  const next = nextRecord(ctx, rec, link, c, state);
  const where = `target ${c.index + 2} of ${c.targets.length} of rule ${rec.rule ?? '?'}`;
  if (rec.alert) await ctx.records.linkAlert(rec.alert.fingerprint, rec.alert.startsAt, next.id);
  if (!GOES_ON.includes(state)) {
    ctx.records.step(next, 'chain', `${where}: ${rec.id} (${rec.target}) ended ${state}`);
    await ctx.finish(next, 'blocked', stopsAt(rec, state));
    await releaseClaim(ctx, link.id);
    return undefined;
  }
  ctx.records.step(next, 'chain', `${where}, after ${rec.id} (${rec.target}) ${state}: rolled back on the same decision`);
  ctx.decidingHere.add(next.id);
  try {
    await ctx.records.save(next); // write-ahead: found by the scheduler if this replica dies before it runs
  } catch (err) {
    ctx.decidingHere.delete(next.id);
    throw err;
  }
  await releaseClaim(ctx, link.id);
  ctx.log.info({ record: next.id, target: next.target, after: rec.id }, `ordered chain: ${where} starts`);
  return {
    start: () => ctx.background(rollback(ctx, next, ctx.settingsFor(next)).finally(() => ctx.decidingHere.delete(next.id))),
    // the current record could not be closed: the next one stays written ahead, for the scheduler
    abandon: () => ctx.decidingHere.delete(next.id),
  };
}

/**
 * Whether the scheduler may take up `rec`, a chain's record after the first left `deciding`, from
 * the record of the target before it. That record is written ahead of the close of the one before,
 * which may not land (a store error): the one before is then decided again, maybe otherwise (a
 * rule reload turned its dry-run off; a guard now blocks it). So:
 *
 * | the target before        | here                                                        |
 * | ------------------------ | ----------------------------------------------------------- |
 * | open (OPEN_STATES)       | `wait`: not taken up (the chain keeps its order)             |
 * | closed, goes on          | `go`, a dry run if it was one or ended `dry_run`            |
 * | closed, does not go on   | `blocked`, naming it, as if written after that close        |
 * | not found (pruned)       | `blocked`: how it ended is not known                        |
 *
 * A record of the target before that is gone was one that changed nothing (those are dropped
 * first: a store's record cap, RECORD_RETENTION_NO_ACTION): going on as written could roll a
 * later target back after a first one that did not.
 */
export async function afterPrevious(ctx: EngineContext, rec: RollbackRecord): Promise<{ verdict: 'wait' } | { verdict: 'go' } | { verdict: 'blocked'; reason: string }> {
  const c = rec.chain;
  if (!c || c.index === 0) return { verdict: 'go' };
  const before = c.targets[c.index - 1]!.id;
  const prev = await ctx.records.get(before);
  if (!prev) return { verdict: 'blocked', reason: `the record of the target before it (${before}) is gone, so how it ended is not known; the ordered chain of rule ${rec.rule ?? '?'} stops there` };
  if (OPEN_STATES.includes(prev.state)) return { verdict: 'wait' };
  if (!GOES_ON.includes(prev.state)) {
    return { verdict: 'blocked', reason: stopsAt(prev, prev.state) };
  }
  rec.dryRun = goesOnAsDryRun(prev, prev.state);
  return { verdict: 'go' };
}

/**
 * Whether the next target of a chain whose record `rec` closed in `state` is a dry run: a chain
 * that went on from a dry run stays one, whatever the rule says by then (a reload that turns its
 * dry-run off must not roll the next target back when the one before was not).
 */
function goesOnAsDryRun(rec: RollbackRecord, state: RollbackState): boolean {
  return rec.dryRun || state === 'dry_run';
}

/** Why a chain's later target is blocked by `rec`, an earlier one, ended in `state`. */
function stopsAt(rec: RollbackRecord, state: RollbackState): string {
  return `an earlier target of rule ${rec.rule ?? '?'} did not roll back (${rec.id}: ${state}); the ordered chain stops there`;
}

/** The next target of a chain, written ahead: started once the current record is closed. */
export interface NextTarget {
  start(): void;
  abandon(): void;
}

/** The next target's record, from the current one closed in `state`: the same rule, alert and decision. */
function nextRecord(ctx: EngineContext, rec: RollbackRecord, link: ChainLink, c: Chain, state: RollbackState): RollbackRecord {
  const now = ctx.now();
  const next: RollbackRecord = {
    id: link.id,
    target: targetKey(link.ref),
    state: 'deciding',
    createdAt: now,
    updatedAt: now,
    ref: link.ref,
    source: rec.source,
    guards: [],
    dryRun: goesOnAsDryRun(rec, state),
    times: { decidedAt: now },
    timeline: [],
    owner: ctx.owner,
    chain: { index: c.index + 1, targets: c.targets },
  };
  for (const k of ['rule', 'priority', 'alert', 'drill', 'confirmation', 'requestedBy', 'reason'] as const) {
    if (rec[k] !== undefined) (next as unknown as Record<string, unknown>)[k] = rec[k];
  }
  if (rec.times.alertStartedAt !== undefined) next.times.alertStartedAt = rec.times.alertStartedAt;
  if (rec.times.receivedAt !== undefined) next.times.receivedAt = rec.times.receivedAt;
  if (rec.decision) next.decision = { decision: rec.decision.decision, reason: `the ordered chain goes on (${rec.id} ended): ${rec.decision.reason}` };
  return next;
}
