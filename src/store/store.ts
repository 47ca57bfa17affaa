import type { Alert } from '../alertmanager/alert.js';

/**
 * The queue's lanes, served in this order: 0 holds alerts of P0 rules, 1 of P1 rules, 2 of P2 rules
 * (and every alert when intake does not know the rules). A consumer takes from a lane only when
 * the lanes before it have nothing for it, so under a storm the runbooks' P0 alerts are decided
 * first, and the cluster budget and the concurrency limit go to them first.
 */
export type Lane = 0 | 1 | 2;
export const LANES: readonly Lane[] = [0, 1, 2];
export const LAST_LANE: Lane = 2;

/** The lane of a rule priority; no priority (no rule known) is the last lane. */
export function laneOf(priority: 'P0' | 'P1' | 'P2' | undefined): Lane {
  return priority === 'P0' ? 0 : priority === 'P1' ? 1 : LAST_LANE;
}

/** One alert notification waiting in (or taken from) the durable queue. */
export interface QueuedEvent {
  /** queue entry id (opaque: the lane and a Redis stream id, or a monotonic id in memory) */
  id: string;
  alert: Alert;
  /** how many times this entry has been handed to a consumer, this delivery included */
  deliveries: number;
  /** the lane it was taken from (stores always set it; absent reads as the last lane) */
  lane?: Lane;
}

export interface IntakeItem {
  /** dedupe key: fingerprint, startsAt and status (see alertmanager/alert.ts) */
  key: string;
  alert: Alert;
  /**
   * the lane it is queued in (default: the last). null: no rule matches it, so it is counted and
   * nothing else: not queued (the engine would do nothing with it) and its dedupe key not
   * remembered, so that alerts no rule matches, however many, never fill the store, and a resend
   * after a rule for it was loaded is queued
   */
  lane?: Lane | null;
}

export interface IntakeResult {
  queued: number;
  duplicates: number;
  /** alerts of lane null, resends included: counted, not queued (present only when there were some) */
  unmatched?: number;
}

/**
 * The items a store must look at (lane not null), and how many it must only count (lane null).
 * Both stores take this split before anything else: alerts no rule matches never reach the
 * store's bounds (QUEUE_MAX_DEPTH counts what would be queued) nor the store itself (a batch of
 * them alone is answered without a round trip, so an unreachable or full store does not turn them
 * into 503s that Alertmanager would retry for nothing).
 */
export function splitUnmatched(items: IntakeItem[]): { kept: IntakeItem[]; unmatched: number } {
  const kept = items.filter((i) => i.lane !== null);
  return { kept, unmatched: items.length - kept.length };
}

/** The result of an intake: `queued` of `kept` were new, the rest of `kept` duplicates, `unmatched` only counted. */
export function intakeResult(kept: number, queued: number, unmatched: number): IntakeResult {
  const res: IntakeResult = { queued, duplicates: kept - queued };
  if (unmatched > 0) res.unmatched = unmatched;
  return res;
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
  /** what it holds in the cluster that only it can undo (see Holding); absent: nothing */
  holds?: number;
  [field: string]: unknown;
}

/**
 * What a record holds in the cluster that only it can undo, as a count (0: nothing): the engine's
 * answer is the GitOps owners a rollback left suspended and not yet resumed (record.ts
 * `heldByRecord`, which the engine also writes to the record's `holds`). A record holding something
 * is never pruned nor dropped under a record cap (its state and age aside), and `heldCount()` sums
 * what every record holds.
 */
export type Holding = (record: StoredRecord) => number;

/** putRecord's `unlessValue`, one or several, as a list. */
export const unlessKeys = (v: string | readonly string[] | undefined): readonly string[] => (v === undefined ? [] : typeof v === 'string' ? [v] : v);

/** Both stores' Holding unless told otherwise: the record's own `holds`. */
export const holdsField: Holding = (r) => (typeof r.holds === 'number' && r.holds > 0 ? Math.floor(r.holds) : 0);

/** A sliding-window key and the most events it may hold in its window. */
export interface EventLimit {
  key: string;
  limit: number;
}

/**
 * What reserveEvents (or checkEvents) came to: reserved under every key (or room under every key),
 * or refused by `key`, which holds `count`; with `holders` when asked for: the members of `key`'s
 * events at or after `since`, newest first, at most `limit`, read in the same atomic step as the
 * refusal (read after it, a holder that gave its unit back in between would be missing).
 */
export type Reservation = { reserved: true } | { reserved: false; key: string; count: number; holders?: string[] };

/** The holders a refused reservation names (Reservation's `holders`). */
export interface HoldersWanted {
  since: number;
  limit: number;
}

/** What acquireSlot came to: a lease on one slot, or refused, naming the members holding every slot. */
export type SlotLease = { acquired: true } | { acquired: false; holders: string[] };

export interface RecordFilter {
  target?: string;
  state?: string;
  limit?: number;
  /** continue after this position: the nextCursor of an earlier page (see cursor.ts) */
  cursor?: string;
}

/** A listing's page size: RecordFilter's `limit` (default 100), a whole number of 0 or more; anything else is refused, naming it. */
export function pageLimit(limit: number | undefined): number {
  if (limit === undefined) return 100;
  if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`listRecords: limit must be a whole number of 0 or more, got ${String(limit)}`);
  return limit;
}

export interface RecordPage {
  records: StoredRecord[];
  /** where the next page starts; null on the last page */
  nextCursor: string | null;
}

/**
 * Everything rollguard shares between replicas. Two implementations: Redis (production, several
 * replicas) and memory (the embedded default, one replica); test/support/store-contract.ts runs one
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
  // (Intake rejects with StoreFullError, a StoreUnavailableError, when the queue or the store is at
  // its bound: nothing of the batch is recorded, and the webhook answers 503 so Alertmanager retries.
  // Items of lane null are split off first (splitUnmatched): they count toward no bound, and a batch
  // of them alone never reaches the store, so it is answered even while the store is down or full.)
  /**
   * Up to `count` entries for this consumer, lane by lane (0 first): in each lane, entries another
   * consumer took and did not ack within claimIdleMs first (a crashed replica's work), then new
   * ones; the next lane only while fewer than `count` were found. When every lane is empty, waits
   * up to blockMs for new ones in any lane. `lastLane`: the lanes up to this one only (0: P0 alerts
   * alone, for the worker's places kept for them, src/engine/worker.ts); the others are left queued.
   */
  consume(consumer: string, count: number, blockMs: number, claimIdleMs: number, lastLane?: Lane): Promise<QueuedEvent[]>;
  /**
   * Resolves once every write this store has made so far is on the replicas the store was asked
   * to wait for (REDIS_MIN_REPLICAS_ACK; Redis' WAIT); rejects with StoreUnavailableError naming the
   * setting when too few confirm in time. A store with no replicas to wait for resolves at once.
   * Intake waits before its answer; a rollback waits before its first cluster write (checkFence).
   */
  replicated(): Promise<void>;
  /** Marks entries handled (of any lanes, in one round trip); they leave the queue. */
  ack(ids: string[]): Promise<void>;
  /** Entries not yet acked, delivered or not, in every lane. */
  queueDepth(): Promise<number>;

  /** Takes the lock if free (or expired); null if another owner holds it. */
  acquireLock(name: string, owner: string, ttlMs: number): Promise<Lock | null>;
  /** Extends a held lock; false if it was lost (expired and taken, or released). */
  renewLock(lock: Lock, ttlMs: number): Promise<boolean>;
  releaseLock(lock: Lock): Promise<boolean>;
  /** Who holds the lock now (the owner given to acquireLock), or null when it is free (or expired). */
  lockOwner(name: string): Promise<string | null>;
  /**
   * The highest fencing token handed out for this lock name (0 if never, or if the lock has not been
   * held for a while: fence keys expire some time after their lock). Tokens only grow, across
   * that expiry too (they are at least the store's clock in ms).
   */
  currentFence(name: string): Promise<number>;

  /** Records one event at time `at` (ms) in a sliding window kept for windowMs. */
  addEvent(key: string, at: number, windowMs: number): Promise<void>;
  /** Events recorded for key at or after `since` (ms). */
  countEvents(key: string, since: number): Promise<number>;
  /**
   * In one atomic step over every replica: when each key holds fewer events than its limit in the
   * window ending at `at` (the same window as countEvents(key, at - windowMs)), records the event
   * `member` at `at` under every key; otherwise records nothing and names the first key at its limit.
   * A member already recorded under a key does not count against itself (reserving again is a no-op);
   * its own event from before the window makes no room for it. The window includes its first
   * millisecond (an event at exactly at - windowMs counts).
   * A refusal names the refusing key's holders when `holders` asks for them.
   */
  reserveEvents(keys: readonly EventLimit[], member: string, at: number, windowMs: number, holders?: HoldersWanted): Promise<Reservation>;
  /** reserveEvents' check alone, in one atomic step: records nothing (a dry run's budget). */
  checkEvents(keys: readonly EventLimit[], member: string, at: number, windowMs: number, holders?: HoldersWanted): Promise<Reservation>;
  /** The members of key's events at or after `since`, newest first (one time's by member, descending), at most `limit` (reserveEvents' are the names it was given). */
  eventMembers(key: string, since: number, limit: number): Promise<string[]>;
  /** Gives a reservation back: removes `member` from each key. */
  releaseEvents(keys: readonly string[], member: string): Promise<void>;

  /**
   * A counting semaphore over every replica (the concurrency limit). In one atomic step: drops the
   * pool's expired leases, then gives `member` a lease of ttlMs when it holds one already (renewed)
   * or fewer than `max` members hold one; otherwise changes nothing and names the holders. Leases
   * expire unless renewed, so a crashed replica's slots come back after ttlMs. Expiry is the
   * store's clock (Redis' TIME), the same for every replica.
   */
  acquireSlot(pool: string, member: string, max: number, ttlMs: number): Promise<SlotLease>;
  /** Extends member's lease for ttlMs; false (and nothing taken) when it holds none any more. */
  renewSlot(pool: string, member: string, ttlMs: number): Promise<boolean>;
  /** Gives member's slot back (a no-op when it holds none). */
  releaseSlot(pool: string, member: string): Promise<void>;
  /** The members holding a lease of the pool now (expired leases left out), taking nothing. */
  slotHolders(pool: string): Promise<string[]>;

  /** Sets key (optionally only if absent) with an optional TTL; false when onlyIfAbsent and present. */
  setValue(key: string, value: string, opts?: { ttlMs?: number; onlyIfAbsent?: boolean }): Promise<boolean>;
  getValue(key: string): Promise<string | null>;
  /**
   * Atomically replaces key's value with `value` (and its TTL, if given) only if it is `expected`
   * now; false (and nothing changed) otherwise, an absent key included.
   */
  compareAndSetValue(key: string, expected: string, value: string, opts?: { ttlMs?: number }): Promise<boolean>;
  deleteValue(key: string): Promise<void>;

  /**
   * Writes the record (true). `unlessValue`: only while that value (setValue's key), or each of
   * those values, is absent, in the same atomic step; when one is set, nothing is written and false
   * is returned. (The engine writes a record this way unless its alert's resolution, or a
   * resume-gitops, was marked meanwhile, which it then merges first: a record is never stored
   * without a resolution or a resume marked before the write.)
   * `expectState`: only while the stored record (same id) is in that state, in the same atomic step;
   * when it is in another, or there is none, nothing is written and false is returned. (The engine
   * moves a record out of pending_approval this way, so that of an approval, a rejection and an
   * expiry racing on several replicas exactly one is written.) Both may be given: both must hold.
   */
  putRecord(record: StoredRecord, opts?: { unlessValue?: string | readonly string[]; expectState?: string }): Promise<boolean>;
  getRecord(id: string): Promise<StoredRecord | null>;
  /**
   * Newest first (createdAt, then id). Indexed by state and by target: a filtered listing reads
   * only the records of that state or target (of both, the smaller index), never every record.
   * `limit` (default 100) is a whole number of 0 or more; any other is refused (RangeError).
   */
  listRecords(filter?: RecordFilter): Promise<StoredRecord[]>;
  /** One page of listRecords, and the cursor of the next. */
  listRecordsPage(filter?: RecordFilter): Promise<RecordPage>;
  /**
   * Deletes records created before `before` whose state is not in `keepStates`; returns how many.
   * Records in a kept state are skipped (read from the other states' indexes only), wherever they
   * are, and so is every record that holds something (Holding).
   */
  pruneRecords(before: number, keepStates: readonly string[]): Promise<number>;
  /** The sum, over every record, of what it holds (the store's Holding); 0 without one. Reads only the held records. */
  heldCount(): Promise<number>;

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

/** The store is at one of its bounds (queue depth, memory): nothing was taken; retry later. */
export class StoreFullError extends StoreUnavailableError {
  constructor(message: string) {
    super(message);
    this.name = 'StoreFullError';
  }
}
