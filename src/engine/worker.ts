import type { Logger } from 'pino';
import { forLog } from '../alertmanager/limits.js';
import type { Metrics } from '../metrics.js';
import type { QueuedEvent, Store } from '../store/store.js';
import { StoreUnavailableError } from '../store/store.js';

/**
 * Handles one event; rejects when it must stay queued. Resolves to false when its handling stands
 * for no evaluation that events coalesced into it could join (the engine's: it found only the
 * closed record of an earlier evaluation, a redelivery): those are then handled as their own
 * events (coalesceKey). Anything else (true, nothing) is an evaluation they are linked to.
 */
export type EventHandler = (event: QueuedEvent) => Promise<boolean | void>;

export interface WorkerOptions {
  store: Store;
  handler: EventHandler;
  metrics: Metrics;
  logger: Logger;
  consumer: string;
  claimIdleMs: number;
  /** an event is handled at most this many times; delivered again after that, it is dead-lettered unhandled */
  maxDeliveries: number;
  /**
   * handling longer than this is abandoned: the worker moves on and the event stays queued (taken
   * up again after claimIdleMs; dead-lettered on its last delivery). Unset: no deadline.
   */
  deadlineMs?: number;
  /** called for an event dead-lettered (see maxDeliveries), before it is acked: escalate it */
  onDead?: (event: QueuedEvent, err: unknown) => Promise<void>;
  /**
   * Per-target coalescing: events in hand with the same key (the engine's: what the evaluation reads from the
   * alert, its rules, trigger query and targets; src/engine/coalesce.ts) are
   * one evaluation, the first one's; each later one is handed to onCoalesced once the first is
   * handled (to link it to the first one's records), and acked with it. When the first one's
   * handling evaluated nothing (the handler resolved false), the next one is handled as its own
   * event, after it, and the later ones are coalesced into that one. When onCoalesced resolves
   * false (the engine's: this one's other startsAt could change the first one's outcome, the
   * recent-deploy guard's), this one is handled as its own event, after the events before it on
   * its targets; the later ones still follow the first. undefined: never coalesced.
   */
  coalesceKey?: (event: QueuedEvent) => string | undefined;
  onCoalesced?: (event: QueuedEvent, into: QueuedEvent) => Promise<boolean | void>;
  /**
   * Events handled at once (default 16). The worker keeps up to this many in hand and reads more
   * as soon as one finishes, so a P0 alert queued during a storm waits for one free place, not for
   * a batch; events for the same target (targetsOf) are handled one after another, in queue order.
   */
  concurrency?: number;
  /**
   * The targets an event may act on (the engine's: every target of every rule it matches): events
   * sharing one are never handled at once. undefined: it may touch anything, so it is handled alone,
   * after every event before it. Unset: the coalescing key is the event's one target.
   */
  targetsOf?: (event: QueuedEvent) => string[] | undefined;
  /** most events taken per read (default 16); the store serves them lane by lane, P0 first */
  batch?: number;
  blockMs?: number;
}

/** Events whose store-failed deliveries a worker remembers (QueueWorker.storeFailed). */
const STORE_FAILED_MAX = 10_000;

/** Handling an event took longer than the worker's deadline. */
export class EventDeadlineError extends Error {
  override name = 'EventDeadlineError';
}

/**
 * What handling an event came to, for the events coalesced into it: the event whose evaluation they
 * join (it, or the one it was coalesced into), 'none' when it evaluated nothing (they are handled on
 * their own), 'queued' when it stays queued (so do they, taken up again with it).
 */
type Lead = QueuedEvent | 'none' | 'queued';

/** While events are in hand (or acks wait), a blocking read waits at most this long, so acks go out. */
const BUSY_BLOCK_MS = 50;

/**
 * Places kept for P0 alerts beyond the concurrency: while every place is taken (a storm whose
 * evaluations wait on a slow API server or Prometheus), the queue's P0 lane alone is looked at every
 * P0_LOOK_MS, and a P0 alert found is begun at once instead of waiting for a place to free.
 */
export const P0_PLACES = 4;
const P0_LOOK_MS = 50;

/**
 * Consumes the durable queue: each event is handed to the engine and acked only once handled, so a
 * replica that dies mid-event leaves it pending, and another replica claims it after claimIdleMs.
 * Up to `concurrency` events are in hand at once; a free place is filled by the next read, which the
 * store serves lane by lane (P0 first, see Store.consume), so a P0 alert never waits behind a batch
 * of lower lanes, only for one place; while it is in hand, no event of another lane is begun. Events for one target are handled one after another (a
 * resolved alert, whose records are found by fingerprint, after everything before it), so the
 * guards see the same order as one at a time. Handled events are acked together, those done in
 * one turn of the event loop in one store call (a replica dying first leaves them to be delivered again: handling is
 * idempotent). Events in hand whose evaluation would be the same are one evaluation (coalesceKey).
 * Dead-lettering counts deliveries whatever the cause: an event is handled at most maxDeliveries
 * times (errors, handling past the deadline, or a replica that stopped or stalled while holding it
 * all count), then it is dead-lettered, escalated and acked: no endless redelivery.
 * Store failures alone never dead-letter an event: one in hand stays queued for when the store is
 * back, and the deliveries this process saw end on a store failure are not counted (storeFailed).
 */
export class QueueWorker {
  private running = false;
  private loop: Promise<void> | null = null;
  private backoffMs = 0;
  /** the events in hand (each one's completion) */
  private readonly inflight = new Set<Promise<void>>();
  /** the evaluation in hand of each coalescing key (the last event begun with it): later events with the key follow it */
  private readonly leaders = new Map<string, Promise<Lead>>();
  /** per target, the last event in hand that may act on it */
  private readonly tails = new Map<string, Promise<void>>();
  /** the last event in hand that may act on anything (every later one waits for it) */
  private barrier: Promise<void> = Promise.resolve();
  /** handled events not acked yet (acked once the events finishing in the same turn are in) */
  private acks: string[] = [];
  private acking: Promise<void> | null = null;
  /** P0 alerts in hand, and the other lanes' events read meanwhile, begun once they are done */
  private p0InHand = 0;
  /** no look at the P0 lane before this (Date.now()): set for a second after a failed look */
  private p0LookAfter = 0;
  /** while the loop waits for an event in hand to finish (oneFinishedWithin): called when one does */
  private wake: (() => void) | null = null;
  private readonly waiting: QueuedEvent[] = [];
  /** ids of the events in hand or waiting for their ack: read again meanwhile, they are not begun twice */
  private readonly held = new Set<string>();
  /**
   * Per event, the deliveries of it this process saw end on a store failure (a Redis flap or
   * maxmemory): not counted towards maxDeliveries, or a store outage longer than maxDeliveries ×
   * claimIdleMs would dead-letter every alert queued, unhandled. Forgotten at the ack; at most
   * STORE_FAILED_MAX events, the oldest forgotten first (then counted as before).
   */
  private readonly storeFailed = new Map<string, number>();

  constructor(private readonly o: WorkerOptions) {}

  private get limit(): number {
    return Math.max(1, Math.floor(this.o.concurrency ?? 16));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stops taking new events; resolves when the events in hand are finished and acked. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.loop = null;
  }

  /**
   * Handles whatever is queued until the queue is empty or the deadline passes (used at shutdown,
   * so the in-memory store loses nothing it accepted). Returns the events left (-1: not known). A
   * queue read that fails ends it, the events in hand settled: it never throws, so the shutdown
   * after it (the engine's rollbacks, the notifications) goes on.
   */
  async drain(deadline: number): Promise<number> {
    await this.stop();
    try {
      while (Date.now() < deadline) {
        if (this.inflight.size >= this.limit) {
          await Promise.race(this.inflight);
          continue;
        }
        let events: QueuedEvent[];
        try {
          events = await this.take(0);
        } catch (err) {
          // the store unreachable at shutdown: what is queued stays there for the other replicas;
          // the events in hand are settled below, and the rest of the shutdown goes on
          this.o.metrics.storeErrors.inc({ op: 'consume' });
          this.o.logger.error({ err }, 'cannot read the alert queue while draining: stopped taking events; those queued stay in the store');
          break;
        }
        if (events.length === 0) {
          if (this.inflight.size === 0) break;
          await Promise.race(this.inflight);
          continue;
        }
        for (const ev of events) this.begin(ev);
      }
    } finally {
      await this.settle();
    }
    try {
      return await this.o.store.queueDepth();
    } catch {
      return -1;
    }
  }

  /** Up to as many events as there are free places (at most `batch`). */
  private take(blockMs: number): Promise<QueuedEvent[]> {
    const count = Math.max(1, Math.min(this.o.batch ?? 16, this.limit - this.inflight.size - this.waiting.length));
    return this.o.store.consume(this.o.consumer, count, blockMs, this.o.claimIdleMs);
  }

  private async run(): Promise<void> {
    const blockMs = this.o.blockMs ?? 1000;
    try {
      while (this.running) {
        // nothing in hand (a P0 alert counted in p0InHand is in inflight): nothing for the waiting to wait on
        if (this.waiting.length > 0 && (this.p0InHand === 0 || this.inflight.size === 0)) this.waiting.splice(0).forEach((ev) => this.begin(ev));
        // a P0 alert in hand has the CPU and the store to itself but for what was begun before it
        if (this.inflight.size >= this.limit || (this.p0InHand > 0 && this.waiting.length > 0)) {
          // a P0 alert queued meanwhile takes a place kept for it (P0_PLACES), not the next one freed
          if (this.inflight.size >= this.limit + P0_PLACES) await Promise.race(this.inflight);
          else if (!(await this.oneFinishedWithin(P0_LOOK_MS))) await this.lookForP0();
          continue;
        }
        let events: QueuedEvent[];
        try {
          events = await this.take(this.inflight.size > 0 ? Math.min(blockMs, BUSY_BLOCK_MS) : blockMs);
          this.backoffMs = 0;
        } catch (err) {
          this.o.metrics.storeErrors.inc({ op: 'consume' });
          this.backoffMs = Math.min(Math.max(this.backoffMs * 2, 100), 5000);
          this.o.logger.error({ err, retryInMs: this.backoffMs }, 'cannot read the alert queue');
          await sleep(this.backoffMs);
          continue;
        }
        for (const ev of events) {
          if (ev.lane === 0) this.beginP0(ev);
          else if (this.p0InHand > 0) this.waiting.push(ev);
          else this.begin(ev);
        }
      }
    } finally {
      this.waiting.splice(0).forEach((ev) => this.begin(ev));
      await this.settle();
    }
  }

  /**
   * Whether an event in hand finished within `ms`. Woken by the event's own completion (begin), not
   * by a Promise.race over the events in hand: that left a reaction on each of them every P0_LOOK_MS,
   * kept until it finished (found in review: the heap grew by 80 KiB a second with 32 in hand).
   */
  private oneFinishedWithin(ms: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve(false);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve(true);
      };
    });
  }

  /**
   * Every place taken: the P0 lane alone is read (no wait), into the places kept for P0 alerts. A
   * failed read is counted and logged; the loop goes on waiting for a place as before.
   */
  private async lookForP0(): Promise<void> {
    const free = this.limit + P0_PLACES - this.inflight.size;
    if (free <= 0 || !this.running || Date.now() < this.p0LookAfter) return;
    let events: QueuedEvent[];
    try {
      events = await this.o.store.consume(this.o.consumer, free, 0, this.o.claimIdleMs, 0);
    } catch (err) {
      this.o.metrics.storeErrors.inc({ op: 'consume' });
      // not every P0_LOOK_MS while the store fails: a line and a count a second at most
      this.p0LookAfter = Date.now() + 1000;
      this.o.logger.error({ err, retryInMs: 1000 }, 'cannot read the P0 lane of the alert queue while every place is taken');
      return;
    }
    for (const ev of events) this.beginP0(ev);
  }

  /** A P0 alert: until it is done, events of the other lanes read meanwhile wait (this.waiting). */
  private beginP0(ev: QueuedEvent): void {
    // claimed again by the read while in hand (or its ack on the way): nothing begun, nothing to wait for
    if (this.held.has(ev.id)) return;
    this.p0InHand++;
    const done = this.begin(ev);
    void done.then(() => this.p0InHand--);
  }

  /** Waits for every event in hand and its ack. */
  private async settle(): Promise<void> {
    while (this.inflight.size > 0 || this.acking) {
      await Promise.allSettled([...this.inflight]);
      await this.acking;
    }
  }

  /**
   * An event is done (`ack`: handled, or dead-lettered and escalated). The acks of the events done
   * in one turn of the event loop go in one store call, right after it.
   */
  private finished(id: string, ack: boolean): void {
    if (!ack) {
      this.held.delete(id);
      return;
    }
    this.storeFailed.delete(id);
    this.acks.push(id);
    this.acking ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flushAcks());
  }

  private async flushAcks(): Promise<void> {
    const done = this.acks;
    this.acks = [];
    try {
      if (done.length > 0) await this.o.store.ack(done);
    } catch (err) {
      this.o.metrics.storeErrors.inc({ op: 'ack' });
      this.o.logger.error({ err, events: done.length }, 'could not ack handled events; they may be delivered again (handling is idempotent)');
    } finally {
      for (const id of done) this.held.delete(id);
      this.acking = null;
      if (this.acks.length > 0) this.acking = this.flushAcks();
    }
  }

  /**
   * Puts an event in hand: linked to the evaluation in hand of its coalescing key if there is one,
   * else (or when that evaluated nothing) handled once every event before it that may act on one of
   * its targets is done.
   */
  private begin(ev: QueuedEvent): Promise<void> {
    // in hand for longer than claimIdleMs (or its ack on the way): claimed again by the read, not begun again
    if (this.held.has(ev.id)) return Promise.resolve();
    this.held.add(ev.id);
    const live = this.counted(ev) <= this.o.maxDeliveries;
    const key = live ? this.coalesceKeyOf(ev) : undefined;
    const ahead = key === undefined ? undefined : this.leaders.get(key);
    // a dead-lettered event runs no handler: it waits for nothing
    const targets = live ? this.targetsOfSafe(ev, key) : [];
    const after = targets === undefined ? [...this.inflight] : [this.barrier, ...targets.flatMap((t) => this.tails.get(t) ?? [])];
    const alone = (): Promise<Lead> =>
      Promise.all(after)
        .then(
          () => this.handle(ev),
          () => this.handle(ev),
        )
        .catch((err: unknown): Lead => {
          this.o.logger.error({ err, event: ev.id }, 'event handling failed; it stays queued and will be retried');
          return 'queued';
        })
        .then((lead) => {
          this.finished(ev.id, lead !== 'queued');
          return lead;
        });
    let lead: Promise<Lead>;
    let done: Promise<void>;
    if (ahead) {
      // Being evaluated already: linked to that evaluation, acked after it. If that one fails, this
      // one stays queued too and is taken up again with it. If it evaluated nothing (it found the
      // closed record of an earlier evaluation: a redelivery), this one is handled on its own, after
      // it, and the later ones with its key follow this one. If that evaluation does not stand for
      // this one (onCoalesced resolved false), this one is handled on its own, after it.
      const own = ahead.then(async (l): Promise<Lead> => {
        if (l === 'none') return alone();
        const linked = l === 'queued' ? 'keep' : await this.coalesce(ev, l);
        if (linked === 'alone') return alone();
        this.finished(ev.id, linked === 'ack');
        return l;
      });
      // the later ones learn what to follow as soon as the one ahead is done, not after this link
      lead = ahead.then((l) => (l === 'none' ? own : l));
      // done (its targets' tail) once linked and once every event before it on its targets is done:
      // an event of another key on the same target, begun between the one ahead and this one, still
      // holds back the events after this one (found in review: they overlapped)
      done = Promise.all([own, ...after]).then(
        () => undefined,
        () => undefined,
      );
    } else {
      lead = alone();
      done = lead.then(() => undefined);
    }
    if (key !== undefined) {
      this.leaders.set(key, lead);
      void done.then(() => {
        if (this.leaders.get(key) === lead) this.leaders.delete(key);
      });
    }
    if (targets === undefined) this.barrier = done;
    else {
      for (const t of targets) this.tails.set(t, done);
      void done.then(() => {
        for (const t of targets) if (this.tails.get(t) === done) this.tails.delete(t);
      });
    }
    this.inflight.add(done);
    void done.then(() => {
      this.inflight.delete(done);
      this.wake?.();
    });
    return done;
  }

  /** The event's targets (see targetsOf); undefined when they cannot be known. */
  private targetsOfSafe(ev: QueuedEvent, key: string | undefined): string[] | undefined {
    if (!this.o.targetsOf) return key === undefined ? undefined : [key];
    try {
      return this.o.targetsOf(ev);
    } catch {
      return undefined;
    }
  }

  private coalesceKeyOf(ev: QueuedEvent): string | undefined {
    try {
      return this.o.coalesceKey?.(ev);
    } catch {
      return undefined; // the engine's own handling reports what is wrong with it
    }
  }

  /**
   * Links `ev` to the evaluation of `into` (onCoalesced): 'ack' when linked (it may be acked),
   * 'alone' when that evaluation does not stand for it (handled on its own), 'keep' when linking
   * failed (it stays queued).
   */
  private async coalesce(ev: QueuedEvent, into: QueuedEvent): Promise<'ack' | 'alone' | 'keep'> {
    try {
      if ((await this.o.onCoalesced?.(ev, into)) === false) return 'alone';
      this.o.metrics.alertsCoalesced.inc();
      this.o.metrics.eventsProcessed.inc({ outcome: 'handled' });
      return 'ack';
    } catch (err) {
      if (err instanceof StoreUnavailableError) this.noteStoreFailure(ev);
      this.o.metrics.eventsProcessed.inc({ outcome: 'failed' });
      this.o.logger.error({ err, event: ev.id, into: into.id }, 'could not link a coalesced alert to its evaluation; it stays queued and will be retried');
      return 'keep';
    }
  }

  /**
   * Handles one event: the event itself when it was handled (an evaluation the events coalesced
   * into it join), 'none' when handled with nothing to join (the handler said so, or dead-lettered
   * and escalated), 'queued' when it may not be acked.
   */
  private async handle(ev: QueuedEvent): Promise<Lead> {
    const log = this.o.logger.child({ event: ev.id, fingerprint: forLog(ev.alert.fingerprint), deliveries: ev.deliveries });
    const max = this.o.maxDeliveries;
    const counted = this.counted(ev);
    if (counted > max) {
      // Handed out max times already and never acked: whatever happened (a replica died or stalled
      // while holding it), it is not run again.
      const skipped = ev.deliveries - counted;
      const why = new Error(`delivered ${ev.deliveries} times${skipped > 0 ? ` (${skipped} stopped by the store, not counted)` : ''} and not handled in ${max} (a replica stopped, stalled or failed while handling it)`);
      return (await this.deadLetter(ev, why, log)) ? 'none' : 'queued';
    } else {
      try {
        const evaluated = await this.withDeadline(ev, log);
        this.o.metrics.eventsProcessed.inc({ outcome: 'handled' });
        return evaluated === false ? 'none' : ev;
      } catch (err) {
        const timedOut = err instanceof EventDeadlineError;
        this.o.metrics.eventsProcessed.inc({ outcome: timedOut ? 'deadline_exceeded' : 'failed' });
        if (err instanceof StoreUnavailableError) this.noteStoreFailure(ev);
        if (err instanceof StoreUnavailableError || counted < max) {
          // Left pending: claimed again after claimIdleMs, by this replica or another.
          if (timedOut) log.error({ deadlineMs: this.o.deadlineMs }, `${err.message}; abandoned: it stays queued and will be retried`);
          else log.error({ err }, 'event handling failed; it stays queued and will be retried');
          return 'queued';
        }
        return (await this.deadLetter(ev, err, log)) ? 'none' : 'queued';
      }
    }
  }

  /** The deliveries of an event that count towards maxDeliveries: those not ended by a store failure here. */
  private counted(ev: QueuedEvent): number {
    return ev.deliveries - (this.storeFailed.get(ev.id) ?? 0);
  }

  private noteStoreFailure(ev: QueuedEvent): void {
    const n = this.storeFailed.get(ev.id) ?? 0;
    this.storeFailed.delete(ev.id); // the newest last: the first to be forgotten is the oldest
    this.storeFailed.set(ev.id, n + 1);
    if (this.storeFailed.size > STORE_FAILED_MAX) this.storeFailed.delete(this.storeFailed.keys().next().value!);
  }

  /** Runs the handler; rejects with EventDeadlineError once deadlineMs passes (the handler is left to finish on its own). */
  private async withDeadline(ev: QueuedEvent, log: Logger): Promise<boolean | void> {
    const ms = this.o.deadlineMs;
    const run = this.o.handler(ev);
    if (ms === undefined) return run;
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new EventDeadlineError(`event handling exceeded EVENT_DEADLINE (${ms} ms)`));
        run.then(
          () => log.warn({ afterMs: Date.now() - started }, 'an abandoned event finished handling after its deadline'),
          (err) => log.warn({ err, afterMs: Date.now() - started }, 'an abandoned event failed after its deadline'),
        );
      }, ms);
    });
    try {
      return await Promise.race([run, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Escalates and reports whether the event may be acked (false: escalating failed, it stays queued). */
  private async deadLetter(ev: QueuedEvent, err: unknown, log: Logger): Promise<boolean> {
    // said (and counted) once escalated: one that fails stays queued, and its next delivery tries again
    try {
      await this.o.onDead?.(ev, err);
    } catch (deadErr) {
      log.error({ err: deadErr, cause: err }, `event over QUEUE_MAX_DELIVERIES=${this.o.maxDeliveries} (${ev.deliveries} deliveries), but escalating it failed: it stays queued, and is tried again at its next delivery`);
      return false;
    }
    this.o.metrics.eventsProcessed.inc({ outcome: 'dead_lettered' });
    log.error({ err }, `event dead-lettered after ${ev.deliveries} deliveries (QUEUE_MAX_DELIVERIES=${this.o.maxDeliveries}): escalated and removed from the queue`);
    return true;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
