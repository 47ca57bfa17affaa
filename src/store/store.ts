import type { Alert } from '../alertmanager/alert.js';

/** One alert notification waiting in (or taken from) the durable queue. */
export interface QueuedEvent {
  /** queue entry id (Redis stream id, or a monotonic id in memory) */
  id: string;
  alert: Alert;
  /** how many times this entry has been handed to a consumer, this delivery included */
  deliveries: number;
}

export interface IntakeItem {
  /** dedupe key: fingerprint, startsAt and status (see alertmanager/alert.ts) */
  key: string;
  alert: Alert;
}

export interface IntakeResult {
  queued: number;
  duplicates: number;
}

/** A lock held by one owner; `token` is a fencing token, strictly increasing per lock name. */
export interface Lock {
  name: string;
  owner: string;
  token: number;
}

/** What the store keeps of a rollback record: JSON with the fields it indexes on. */
export interface StoredRecord {
  id: string;
  /** "Kind/namespace/name" of the target */
  target: string;
  state: string;
  createdAt: number;
  [field: string]: unknown;
}

export interface RecordFilter {
  target?: string;
  state?: string;
  limit?: number;
}

/**
 * Everything rollguard shares between replicas. Two implementations: Redis (production, several
 * replicas) and memory (the embedded default, one replica); test/unit/store-contract runs one
 * suite against both. Every method rejects with StoreUnavailableError when the backend cannot be
 * reached, so callers can answer 503 instead of guessing.
 */
export interface Store {
  readonly kind: 'memory' | 'redis';

  /**
   * Atomically, for every item whose dedupe key was not seen within dedupeTtlMs: remember the key
   * and append the alert to the queue. Either the whole batch is recorded or (on error) none of it.
   */
  intake(items: IntakeItem[], dedupeTtlMs: number): Promise<IntakeResult>;
  /**
   * Up to `count` entries for this consumer: entries another consumer took and did not ack within
   * claimIdleMs first (a crashed replica's work), then new ones, waiting up to blockMs for new ones.
   */
  consume(consumer: string, count: number, blockMs: number, claimIdleMs: number): Promise<QueuedEvent[]>;
  /** Marks entries handled; they leave the queue. */
  ack(ids: string[]): Promise<void>;
  /** Entries not yet acked, delivered or not. */
  queueDepth(): Promise<number>;

  /** Takes the lock if free (or expired); null if another owner holds it. */
  acquireLock(name: string, owner: string, ttlMs: number): Promise<Lock | null>;
  /** Extends a held lock; false if it was lost (expired and taken, or released). */
  renewLock(lock: Lock, ttlMs: number): Promise<boolean>;
  releaseLock(lock: Lock): Promise<boolean>;
  /** The highest fencing token handed out for this lock name (0 if never). */
  currentFence(name: string): Promise<number>;

  /** Records one event at time `at` (ms) in a sliding window kept for windowMs. */
  addEvent(key: string, at: number, windowMs: number): Promise<void>;
  /** Events recorded for key at or after `since` (ms). */
  countEvents(key: string, since: number): Promise<number>;

  /** Sets key (optionally only if absent) with an optional TTL; false when onlyIfAbsent and present. */
  setValue(key: string, value: string, opts?: { ttlMs?: number; onlyIfAbsent?: boolean }): Promise<boolean>;
  getValue(key: string): Promise<string | null>;
  deleteValue(key: string): Promise<void>;

  putRecord(record: StoredRecord): Promise<void>;
  getRecord(id: string): Promise<StoredRecord | null>;
  /** Newest first. */
  listRecords(filter?: RecordFilter): Promise<StoredRecord[]>;
  /** Deletes records created before `before` whose state is not in `keepStates`; returns how many. */
  pruneRecords(before: number, keepStates: readonly string[]): Promise<number>;

  /** Resolves when the backend answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}
