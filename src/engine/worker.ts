import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import type { QueuedEvent, Store } from '../store/store.js';
import { StoreUnavailableError } from '../store/store.js';

export type EventHandler = (event: QueuedEvent) => Promise<void>;

export interface WorkerOptions {
  store: Store;
  handler: EventHandler;
  metrics: Metrics;
  logger: Logger;
  consumer: string;
  claimIdleMs: number;
  maxDeliveries: number;
  /** called for an event that failed maxDeliveries times, before it is acked (record it, escalate) */
  onDead?: (event: QueuedEvent, err: unknown) => Promise<void>;
  batch?: number;
  blockMs?: number;
}

/**
 * Consumes the durable queue: each event is handed to the engine and acked only once handled, so a
 * replica that dies mid-event leaves it pending, and another replica claims it after claimIdleMs.
 * An event that keeps failing is recorded as dead after maxDeliveries and acked (no endless loop).
 */
export class QueueWorker {
  private running = false;
  private loop: Promise<void> | null = null;
  private backoffMs = 0;

  constructor(private readonly o: WorkerOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stops taking new events; resolves when the event in hand is finished. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.loop = null;
  }

  /**
   * Handles whatever is queued until the queue is empty or the deadline passes (used at shutdown,
   * so the in-memory store loses nothing it accepted). Returns the events left.
   */
  async drain(deadline: number): Promise<number> {
    await this.stop();
    while (Date.now() < deadline) {
      const events = await this.take(0);
      if (events.length === 0) break;
      for (const ev of events) await this.handle(ev);
    }
    try {
      return await this.o.store.queueDepth();
    } catch {
      return -1;
    }
  }

  private async take(blockMs: number): Promise<QueuedEvent[]> {
    return this.o.store.consume(this.o.consumer, this.o.batch ?? 16, blockMs, this.o.claimIdleMs);
  }

  private async run(): Promise<void> {
    while (this.running) {
      let events: QueuedEvent[];
      try {
        events = await this.take(this.o.blockMs ?? 1000);
        this.backoffMs = 0;
      } catch (err) {
        this.o.metrics.storeErrors.inc({ op: 'consume' });
        this.backoffMs = Math.min(Math.max(this.backoffMs * 2, 100), 5000);
        this.o.logger.error({ err, retryInMs: this.backoffMs }, 'cannot read the alert queue');
        await sleep(this.backoffMs);
        continue;
      }
      for (const ev of events) await this.handle(ev);
    }
  }

  private async handle(ev: QueuedEvent): Promise<void> {
    const log = this.o.logger.child({ event: ev.id, fingerprint: ev.alert.fingerprint, deliveries: ev.deliveries });
    try {
      await this.o.handler(ev);
      this.o.metrics.eventsProcessed.inc({ outcome: 'handled' });
    } catch (err) {
      if (err instanceof StoreUnavailableError || ev.deliveries < this.o.maxDeliveries) {
        // Left pending: claimed again after claimIdleMs, by this replica or another.
        this.o.metrics.eventsProcessed.inc({ outcome: 'failed' });
        log.error({ err }, 'event handling failed; it stays queued and will be retried');
        return;
      }
      this.o.metrics.eventsProcessed.inc({ outcome: 'dead_lettered' });
      log.error({ err }, `event failed ${ev.deliveries} times; recorded as dead and removed from the queue`);
      try {
        await this.o.onDead?.(ev, err);
      } catch (deadErr) {
        log.error({ err: deadErr }, 'could not record the dead event; it stays queued');
        return;
      }
    }
    try {
      await this.o.store.ack([ev.id]);
    } catch (err) {
      this.o.metrics.storeErrors.inc({ op: 'ack' });
      log.error({ err }, 'could not ack a handled event; it may be delivered again (handling is idempotent)');
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
