import { resumeGitOps, type ResumeResult } from '../gitops/resume.js';
import type { QueuedEvent } from '../store/store.js';
import { coalesceKey, linkCoalesced, targetsOf } from './coalesce.js';
import { deadLettered } from './dead.js';
import { EngineContext, type EngineDeps, type ManualRequest } from './context.js';
import { handleEvent } from './intake.js';
import type { RecordBook, RollbackRecord } from './record.js';
import { approve, manual, reject, type ApprovalResult } from './requests.js';
import { recoverIfOrphaned, Scheduler } from './scheduler.js';
import { heartbeat, keepAlive, leave } from './heartbeat.js';

export type { EngineDeps, ManualRequest } from './context.js';
export type { ApprovalResult } from './requests.js';

/**
 * The engine's front, called by the queue worker, the HTTP routes and main.ts. The path of one
 * alert runs through one stage per file, all sharing one EngineContext (context.ts):
 *
 *   intake.ts    match the rules, resolve and claim each target, write the record ahead
 *   evaluate.ts  confirm the trigger in Prometheus (confirm.ts), decide (decide.ts)
 *   rollback.ts  the guards in their fixed order (src/guards/), then execute the action
 *   verify.ts    the rollout, then the trigger clearing in Prometheus; the outcome
 *   scheduler.ts due re-checks, expired approvals, recovery of what a dead replica left
 *   requests.ts  manual rollbacks, approve, reject (the admin API)
 *   dead.ts      an event the queue gave up on: recorded and escalated
 *   messages.ts  every notification text
 */
export class Engine {
  readonly records: RecordBook;
  private readonly ctx: EngineContext;
  private readonly scheduler: Scheduler;
  /** events being handled now, including one the worker gave up waiting for at its deadline */
  private handling = 0;

  constructor(deps: EngineDeps) {
    this.ctx = new EngineContext(deps);
    this.records = this.ctx.records;
    this.scheduler = new Scheduler(this.ctx);
  }

  /**
   * The queue worker's handler. Throws only when the event must be retried (store down). False
   * when it found only the closed record of an earlier evaluation (a redelivery): the alerts
   * coalesced into it are then evaluated on their own (intake.ts handleEvent).
   */
  async handle(ev: QueuedEvent): Promise<boolean> {
    this.handling++;
    try {
      return await handleEvent(this.ctx, ev);
    } finally {
      this.handling--;
    }
  }

  /**
   * The queue worker's coalescing key: events with the same one (the same rules, trigger queries
   * and targets: src/engine/coalesce.ts) are one evaluation, unless its outcome depended on the
   * first one's startsAt (coalesced() resolves false).
   */
  coalesceKey(ev: QueuedEvent): string | undefined {
    return coalesceKey(this.ctx, ev.alert);
  }

  /** The targets an event may act on: the queue worker never handles two events sharing one at once. */
  targetsOf(ev: QueuedEvent): string[] | undefined {
    return targetsOf(this.ctx, ev.alert);
  }

  /**
   * Links an event coalesced into another's evaluation to that evaluation's records; false when it
   * started at another time that could change that outcome (the recent-deploy guard blocked it, as
   * too old and this one started earlier, or as deployed after the start and this one started
   * later): the queue worker then handles it on its own.
   */
  coalesced(ev: QueuedEvent, into: QueuedEvent): Promise<boolean> {
    return linkCoalesced(this.ctx, ev, into);
  }

  /**
   * The queue worker's onDead: an event delivered QUEUE_MAX_DELIVERIES times and never handled is
   * recorded, counted and escalated (dead.ts). Rejects while the store fails (the event stays queued).
   */
  deadLettered(ev: QueuedEvent, err: unknown): Promise<RollbackRecord[]> {
    return deadLettered(this.ctx, ev, err);
  }

  /** A manual rollback (POST /v1/rollbacks): the same guards, no trigger. Runs in the background. */
  manual(req: ManualRequest): Promise<RollbackRecord> {
    return manual(this.ctx, req);
  }

  approve(id: string, by: string, comment?: string): Promise<ApprovalResult> {
    return approve(this.ctx, id, by, comment);
  }

  reject(id: string, by: string, comment?: string): Promise<ApprovalResult> {
    return reject(this.ctx, id, by, comment);
  }

  /** Restores exactly what a rollback suspended on its GitOps owners (src/gitops/resume.ts). */
  resumeGitOps(id: string, by: string, reverted: readonly string[] = [], allReverted = false): Promise<ResumeResult> {
    return resumeGitOps(this.ctx, id, by, reverted, allReverted);
  }

  /** Runs due work (scheduler.ts); main.ts calls it every SCHEDULER_INTERVAL. */
  tick(): Promise<void> {
    return this.scheduler.tick();
  }

  /** Verifies and completes, or marks interrupted, a rollback in_progress whose replica died. */
  recoverIfOrphaned(rec: RollbackRecord): Promise<void> {
    return recoverIfOrphaned(this.ctx, rec);
  }

  /** Says this replica is alive; a replica whose heartbeat expired is gone. */
  heartbeat(): Promise<void> {
    return heartbeat(this.ctx);
  }

  /** Rewrites the heartbeat on its own timer (heartbeat.ts) until the returned stop is called. */
  keepAlive(everyMs?: number): () => void {
    return keepAlive(this.ctx, everyMs);
  }

  /**
   * Removes the heartbeat at a clean shutdown, so the other replicas take up at once what this one
   * claimed: only when nothing of it runs any more (no event being handled, even one the worker
   * stopped waiting for at its deadline, and no rollback in the background). Otherwise the
   * heartbeat is left to expire after the process has exited. True when removed.
   */
  async leave(): Promise<boolean> {
    if (this.handling > 0 || this.ctx.running.size > 0) return false;
    return leave(this.ctx);
  }

  /** Waits for background rollbacks (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.ctx.running.size > 0) await Promise.allSettled([...this.ctx.running]);
  }

  stop(): void {
    this.ctx.abort.abort();
  }
}
