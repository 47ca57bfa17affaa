// Why this file is longer than ~350 lines: it is the whole in-memory backend of one contract, the
// Store interface (store.ts) — the alert queue with its lanes and redelivery, dedupe keys, locks
// with fencing tokens, event counts and reservations, concurrency slot leases, values with
// compare-and-set, and the bounded rollback records — kept in one class over one set of maps, so
// that each operation is one synchronous step (what makes it atomic here, as the Lua scripts make
// the Redis one). Split by concern it would only trade that for shared mutable state across files;
// the pieces that stand alone (paging cursors in cursor.ts, drop notes in drops.ts) already do.
import { decodeCursor, encodeCursor, isAfter, newestFirst } from './cursor.js';
import { DropNotes, type DropCallbacks } from './drops.js';
import type { EventLimit, IntakeItem, IntakeResult, Lane, Lock, QueuedEvent, RecordFilter, RecordPage, Reservation, SlotLease, Store, StoredRecord } from './store.js';
import { LANES, LAST_LANE, StoreFullError } from './store.js';

interface Entry {
  id: string;
  lane: Lane;
  payload: string;
  /** consumer holding it, if delivered and not acked */
  owner?: string;
  deliveredAt: number;
  deliveries: number;
}

export interface MemoryBounds extends DropCallbacks {
  /** queued and not yet acked entries; intake beyond is refused (StoreFullError) */
  maxQueue?: number;
  /** records kept; closed ones beyond are dropped, oldest first: those of noActionStates first, then the others */
  maxRecords?: number;
  /** the states of open records, which are never dropped */
  openStates?: readonly string[];
  /** the states of closed records that changed nothing (dropped before records of rollbacks done) */
  noActionStates?: readonly string[];
  /** dedupe keys kept; the oldest are forgotten first beyond */
  maxDedupeKeys?: number;
}

const FENCE_TTL_FACTOR = 2;
const SWEEP_EVERY_MS = 60_000;

/**
 * The embedded store: one process, one replica. Everything is kept in memory and lost on exit,
 * which is why shutdown drains the queue before closing (see main.ts). Bounded: the queue refuses
 * intake past maxQueue, closed records past maxRecords are dropped oldest first, dedupe keys past
 * maxDedupeKeys are forgotten oldest first, and expired keys are swept once a minute.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private seq = 0;
  /** one map per lane (insertion order is queue order), and every entry by id */
  private readonly lanes: Map<string, Entry>[] = LANES.map(() => new Map());
  private readonly entries = new Map<string, Entry>();
  private readonly waiters = new Set<() => void>();
  private readonly keys = new Map<string, { value: string; expiresAt: number }>();
  /** dedupe key -> expiry; insertion order is expiry order (one TTL per setting) */
  private readonly dedupe = new Map<string, number>();
  private readonly fences = new Map<string, { token: number; expiresAt: number }>();
  /** sliding windows: each event's time and member (reserveEvents names its members) */
  private readonly events = new Map<string, { entries: { at: number; member: string }[]; windowMs: number }>();
  /** leased slots: pool -> member -> lease expiry */
  private readonly slots = new Map<string, Map<string, number>>();
  private readonly records = new Map<string, StoredRecord>();
  private readonly byState = new Map<string, Set<string>>();
  private readonly byTarget = new Map<string, Set<string>>();
  private readonly drops: DropNotes;
  private lastSweep = 0;
  private closed = false;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly bounds: MemoryBounds = {},
  ) {
    this.drops = new DropNotes(bounds, now);
  }

  private alive(key: string): { value: string; expiresAt: number } | undefined {
    const v = this.keys.get(key);
    if (v && v.expiresAt <= this.now()) {
      this.keys.delete(key);
      return undefined;
    }
    return v;
  }

  /** Expired keys, fences and event windows go once a minute (a full pass over them). */
  private sweep(): void {
    const now = this.now();
    for (const [k, exp] of this.dedupe) {
      if (exp > now) break;
      this.dedupe.delete(k);
    }
    if (now - this.lastSweep < SWEEP_EVERY_MS) return;
    this.lastSweep = now;
    for (const [k, v] of this.keys) if (v.expiresAt <= now) this.keys.delete(k);
    for (const [k, v] of this.fences) if (v.expiresAt <= now) this.fences.delete(k);
    for (const [k, v] of this.events) if (v.entries.every((e) => e.at <= now - v.windowMs)) this.events.delete(k);
  }

  async intake(items: IntakeItem[], dedupeTtlMs: number): Promise<IntakeResult> {
    this.sweep();
    const maxQueue = this.bounds.maxQueue;
    if (maxQueue !== undefined && this.entries.size + items.length > maxQueue) {
      throw new StoreFullError(`the queue holds ${this.entries.size} alerts and takes at most ${maxQueue} (QUEUE_MAX_DEPTH): nothing was queued`);
    }
    let queued = 0;
    let unmatched = 0;
    const now = this.now();
    for (const it of items) {
      const exp = this.dedupe.get(it.key);
      if (exp !== undefined && exp > now) continue;
      this.dedupe.delete(it.key); // re-inserted at the end: insertion order stays expiry order
      this.dedupe.set(it.key, now + dedupeTtlMs);
      if (it.lane === null) {
        unmatched++;
        continue;
      }
      const lane = it.lane ?? LAST_LANE;
      const id = `${now}-${++this.seq}`;
      const e: Entry = { id, lane, payload: JSON.stringify(it.alert), deliveredAt: 0, deliveries: 0 };
      this.entries.set(id, e);
      this.lanes[lane]!.set(id, e);
      queued++;
    }
    const maxKeys = this.bounds.maxDedupeKeys;
    if (maxKeys !== undefined && this.dedupe.size > maxKeys) {
      let n = 0;
      for (const k of this.dedupe.keys()) {
        if (this.dedupe.size <= maxKeys) break;
        this.dedupe.delete(k);
        n++;
      }
      this.drops.note('dedupe_keys', n, `MEMORY_MAX_DEDUPE_KEYS=${maxKeys}`);
    }
    if (queued > 0) for (const w of [...this.waiters]) w();
    const res: IntakeResult = { queued, duplicates: items.length - queued - unmatched };
    if (unmatched > 0) res.unmatched = unmatched;
    return res;
  }

  async consume(consumer: string, count: number, blockMs: number, claimIdleMs: number): Promise<QueuedEvent[]> {
    const take = (): QueuedEvent[] => {
      const now = this.now();
      const out: QueuedEvent[] = [];
      // lane by lane: stale entries of other (crashed) consumers first, then new ones
      for (const lane of this.lanes) {
        for (const e of lane.values()) {
          if (out.length >= count) break;
          if (e.owner !== undefined && now - e.deliveredAt >= claimIdleMs) out.push(this.deliver(e, consumer, now));
        }
        for (const e of lane.values()) {
          if (out.length >= count) break;
          if (e.owner === undefined) out.push(this.deliver(e, consumer, now));
        }
      }
      return out;
    };
    const got = take();
    if (got.length > 0 || blockMs <= 0 || this.closed) return got;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, blockMs);
      this.waiters.add(done);
    });
    return take();
  }

  private deliver(e: Entry, consumer: string, now: number): QueuedEvent {
    e.owner = consumer;
    e.deliveredAt = now;
    e.deliveries++;
    return { id: e.id, alert: JSON.parse(e.payload), deliveries: e.deliveries, lane: e.lane };
  }

  async ack(ids: string[]): Promise<void> {
    for (const id of ids) {
      const e = this.entries.get(id);
      if (!e) continue;
      this.entries.delete(id);
      this.lanes[e.lane]!.delete(id);
    }
  }

  async queueDepth(): Promise<number> {
    return this.entries.size;
  }

  async acquireLock(name: string, owner: string, ttlMs: number): Promise<Lock | null> {
    const k = `lock:${name}`;
    if (this.alive(k)) return null;
    const now = this.now();
    const f = this.fences.get(name);
    const token = Math.max((f && f.expiresAt > now ? f.token : 0) + 1, now);
    this.fences.set(name, { token, expiresAt: now + FENCE_TTL_FACTOR * ttlMs });
    this.keys.set(k, { value: `${owner}|${token}`, expiresAt: now + ttlMs });
    return { name, owner, token };
  }

  async renewLock(lock: Lock, ttlMs: number): Promise<boolean> {
    const k = `lock:${lock.name}`;
    const v = this.alive(k);
    if (!v || v.value !== `${lock.owner}|${lock.token}`) return false;
    const now = this.now();
    v.expiresAt = now + ttlMs;
    const f = this.fences.get(lock.name);
    if (f) f.expiresAt = Math.max(f.expiresAt, now + FENCE_TTL_FACTOR * ttlMs);
    return true;
  }

  async releaseLock(lock: Lock): Promise<boolean> {
    const k = `lock:${lock.name}`;
    const v = this.alive(k);
    if (!v || v.value !== `${lock.owner}|${lock.token}`) return false;
    this.keys.delete(k);
    return true;
  }

  async currentFence(name: string): Promise<number> {
    const f = this.fences.get(name);
    return f && f.expiresAt > this.now() ? f.token : 0;
  }

  async addEvent(key: string, at: number, windowMs: number): Promise<void> {
    this.recordEvent(key, `${at}-${++this.seq}`, at, windowMs);
  }

  private recordEvent(key: string, member: string, at: number, windowMs: number): void {
    const entries = (this.events.get(key)?.entries ?? []).filter((e) => e.at > at - windowMs && e.member !== member);
    entries.push({ at, member });
    this.events.set(key, { entries, windowMs });
  }

  async countEvents(key: string, since: number): Promise<number> {
    return (this.events.get(key)?.entries ?? []).filter((e) => e.at >= since).length;
  }

  // One synchronous step (no await between the counts and the writes): atomic in this process.
  async reserveEvents(keys: readonly EventLimit[], member: string, at: number, windowMs: number): Promise<Reservation> {
    for (const { key, limit } of keys) {
      const count = (this.events.get(key)?.entries ?? []).filter((e) => e.at >= at - windowMs && e.member !== member).length;
      if (count >= limit) return { reserved: false, key, count };
    }
    for (const { key } of keys) this.recordEvent(key, member, at, windowMs);
    return { reserved: true };
  }

  async releaseEvents(keys: readonly string[], member: string): Promise<void> {
    for (const key of keys) {
      const w = this.events.get(key);
      if (w) w.entries = w.entries.filter((e) => e.member !== member);
    }
  }

  /** The pool's leases, the expired ones dropped. */
  private pool(name: string): Map<string, number> {
    const now = this.now();
    const pool = this.slots.get(name) ?? new Map<string, number>();
    for (const [m, exp] of pool) if (exp <= now) pool.delete(m);
    this.slots.set(name, pool);
    return pool;
  }

  // One synchronous step (no await between the count and the write): atomic in this process.
  async acquireSlot(pool: string, member: string, max: number, ttlMs: number): Promise<SlotLease> {
    const p = this.pool(pool);
    if (!p.has(member) && p.size >= max) return { acquired: false, holders: [...p.keys()] };
    p.set(member, this.now() + ttlMs);
    return { acquired: true };
  }

  async renewSlot(pool: string, member: string, ttlMs: number): Promise<boolean> {
    const p = this.pool(pool);
    if (!p.has(member)) return false;
    p.set(member, this.now() + ttlMs);
    return true;
  }

  async releaseSlot(pool: string, member: string): Promise<void> {
    const p = this.slots.get(pool);
    p?.delete(member);
    if (p?.size === 0) this.slots.delete(pool);
  }

  async setValue(key: string, value: string, opts: { ttlMs?: number; onlyIfAbsent?: boolean } = {}): Promise<boolean> {
    const k = `kv:${key}`;
    if (opts.onlyIfAbsent && this.alive(k)) return false;
    this.keys.set(k, { value, expiresAt: opts.ttlMs === undefined ? Number.POSITIVE_INFINITY : this.now() + opts.ttlMs });
    return true;
  }

  async getValue(key: string): Promise<string | null> {
    return this.alive(`kv:${key}`)?.value ?? null;
  }

  async compareAndSetValue(key: string, expected: string, value: string, opts: { ttlMs?: number } = {}): Promise<boolean> {
    const v = this.alive(`kv:${key}`);
    if (!v || v.value !== expected) return false;
    v.value = value;
    if (opts.ttlMs !== undefined) v.expiresAt = this.now() + opts.ttlMs;
    return true;
  }

  async deleteValue(key: string): Promise<void> {
    this.keys.delete(`kv:${key}`);
  }

  private index(map: Map<string, Set<string>>, key: string, id: string, add: boolean): void {
    let set = map.get(key);
    if (add) {
      if (!set) map.set(key, (set = new Set()));
      set.add(id);
    } else if (set) {
      set.delete(id);
      if (set.size === 0) map.delete(key);
    }
  }

  private remove(id: string): void {
    const r = this.records.get(id);
    if (!r) return;
    this.records.delete(id);
    this.index(this.byState, r.state, id, false);
    this.index(this.byTarget, r.target, id, false);
  }

  async putRecord(record: StoredRecord, opts: { unlessValue?: string; expectState?: string } = {}): Promise<boolean> {
    if (opts.unlessValue !== undefined && this.alive(`kv:${opts.unlessValue}`)) return false;
    if (opts.expectState !== undefined && this.records.get(record.id)?.state !== opts.expectState) return false;
    this.remove(record.id);
    this.records.set(record.id, structuredClone(record));
    this.index(this.byState, record.state, record.id, true);
    this.index(this.byTarget, record.target, record.id, true);
    const max = this.bounds.maxRecords;
    if (max !== undefined && this.records.size > max) this.dropClosed(max);
    return true;
  }

  /**
   * Drops closed records down to 95 % of max (so a pass is not needed on every put): those that
   * changed nothing (noActionStates) oldest first, then, only if still over, the other closed ones.
   */
  private dropClosed(max: number): void {
    const open = new Set(this.bounds.openStates ?? []);
    const noAction = new Set(this.bounds.noActionStates ?? []);
    const first: StoredRecord[] = [];
    const then: StoredRecord[] = [];
    for (const [state, ids] of this.byState) {
      if (open.has(state)) continue;
      for (const id of ids) (noAction.has(state) ? first : then).push(this.records.get(id)!);
    }
    const oldestFirst = (a: StoredRecord, b: StoredRecord) => -newestFirst(a, b);
    const closed = [...first.sort(oldestFirst), ...then.sort(oldestFirst)];
    const drop = closed.slice(0, Math.max(0, this.records.size - Math.floor(max * 0.95)));
    for (const r of drop) this.remove(r.id);
    const newest = drop.reduce<StoredRecord | undefined>((m, r) => (m === undefined || r.createdAt > m.createdAt ? r : m), undefined);
    const detail = newest
      ? `MEMORY_MAX_RECORDS=${max}; the newest dropped was created ${new Date(newest.createdAt).toISOString()}`
      : `MEMORY_MAX_RECORDS=${max}; every record over it is open, none dropped`;
    this.drops.note('records', drop.length, detail);
  }

  async getRecord(id: string): Promise<StoredRecord | null> {
    const r = this.records.get(id);
    return r ? structuredClone(r) : null;
  }

  async listRecords(filter: RecordFilter = {}): Promise<StoredRecord[]> {
    return (await this.listRecordsPage(filter)).records;
  }

  async listRecordsPage(filter: RecordFilter = {}): Promise<RecordPage> {
    const limit = filter.limit ?? 100;
    const after = filter.cursor === undefined ? undefined : decodeCursor(filter.cursor);
    // the smallest index that answers the filter; every record only when there is no filter
    const ids =
      filter.target !== undefined ? this.byTarget.get(filter.target) : filter.state !== undefined ? this.byState.get(filter.state) : this.records.keys();
    const hits: StoredRecord[] = [];
    for (const id of ids ?? []) {
      const r = this.records.get(id)!;
      if (filter.state !== undefined && r.state !== filter.state) continue;
      if (after && !isAfter(r, after)) continue;
      hits.push(r);
    }
    hits.sort(newestFirst);
    const page = hits.slice(0, limit);
    const last = page[page.length - 1];
    return { records: page.map((r) => structuredClone(r)), nextCursor: hits.length > limit && last ? encodeCursor(last) : null };
  }

  async pruneRecords(before: number, keepStates: readonly string[]): Promise<number> {
    let n = 0;
    for (const [state, ids] of [...this.byState]) {
      if (keepStates.includes(state)) continue;
      for (const id of [...ids]) {
        if (this.records.get(id)!.createdAt < before) {
          this.remove(id);
          n++;
        }
      }
    }
    return n;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.waiters]) w();
  }
}
