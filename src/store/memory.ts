// Why this file is longer than ~350 lines: it is the whole in-memory backend of one contract, the
// Store interface (store.ts) — the alert queue with its lanes and redelivery, dedupe keys, locks
// with fencing tokens, event counts and reservations, concurrency slot leases, values with
// compare-and-set, and the bounded rollback records — kept in one class over one set of maps, so
// that each operation is one synchronous step (what makes it atomic here, as the Lua scripts make
// the Redis one). Split by concern it would only trade that for shared mutable state across files;
// the pieces that stand alone (paging cursors in cursor.ts, drop notes in drops.ts) already do.
// The bound on the values the engine writes per alert (maxKeys, below) needs the records to tell
// which of those values still guard anything, which is one more reason to keep them together.
import { decodeCursor, encodeCursor, isAfter, newestFirst } from './cursor.js';
import { DropNotes, type DropCallbacks } from './drops.js';
import type { EventLimit, Holding, HoldersWanted, IntakeItem, IntakeResult, Lane, Lock, QueuedEvent, RecordFilter, RecordPage, Reservation, SlotLease, Store, StoredRecord } from './store.js';
import { holdsField, intakeResult, LANES, LAST_LANE, pageLimit, splitUnmatched, StoreFullError, unlessKeys } from './store.js';
import { keyDigest } from './keys.js';

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
  /** what a record holds in the cluster (Holding; default: its `holds`): such records are never pruned nor dropped */
  holding?: Holding;
  /** dedupe keys kept; the oldest are forgotten first beyond */
  maxDedupeKeys?: number;
  /** values written per alert (PER_ALERT_VALUES: claims, alert links, resolution marks) kept; dropped beyond, see trimValues */
  maxKeys?: number;
}

const FENCE_TTL_FACTOR = 2;
const SWEEP_EVERY_MS = 60_000;

/**
 * The values the engine writes for each distinct alert, which therefore grow with alert volume
 * (and with hostile labels on an open webhook) and are counted against maxKeys (MEMORY_MAX_KEYS):
 * - `claim:<record id>` (7 days while held, 10 minutes once given up; engine/claim.ts): one replica
 *   evaluates one alert for one target. It guards only until the record's write-ahead lands (milliseconds later, when it is given up): the
 *   record id is deterministic, so a redelivery finds the record and does nothing. A dropped claim
 *   whose record exists is harmless; one dropped before its record is written would let a second
 *   delivery of the same alert evaluate it at the same time.
 * - `alert-records:<digest>` (7 days, engine/record.ts linkAlert; also the older raw form): the
 *   records an alert caused, read when the alert resolves. A dropped link means the resolved alert
 *   does not find its records: a held or scheduled rollback is then not closed not_confirmed by
 *   the resolution (it is still confirmed again against its trigger when due), and the records do
 *   not get the resolution time (nor rollguard_time_to_recover_seconds).
 * - `resolved:<record id>` (30 days, record.ts markResolved): merged into a save of a copy of the
 *   record read before the alert resolved. A dropped mark means such a save, if one is still to
 *   come, writes the record without its resolution time: a note lost, nothing acted on.
 * - `burst:<record id>` (7 days, engine/burst.ts): the alerts coalesced into a record's evaluation
 *   still firing. Dropped before the record's own alert resolved, that resolution resolves it as
 *   if nothing had been coalesced into it (the behaviour before bursts were tracked); dropped
 *   after, the record is no longer resolved by its alerts and is decided on by its trigger when
 *   due (as with an Alertmanager that does not send resolved notifications). Spent once the
 *   record is closed (a succeeded record's burst included: its resolution time is then not noted).
 * Every other value is never dropped and not counted, because its loss would break a safety
 * property, and none grows with alert volume (they grow with rollbacks done, drills and
 * replicas): `lock:` (target and due-work locks; kept in the same map), `control:paused` (the
 * kill switch: lost, rollbacks would resume), `cooldown:` and `stepback:` (lost, a target could
 * be rolled back again inside its cooldown, or further back than allowed), `drill:` (an active
 * drill's mark and its records), `replica:` (heartbeats: lost, a live replica's claims would look
 * abandoned and be taken over). A value under a prefix not listed here is exempt as well, so a new
 * kind of value is never dropped by mistake (at worst it is not bounded).
 */
const PER_ALERT_VALUES = ['kv:claim:', 'kv:alert-records:', 'kv:resolved:', 'kv:burst:'] as const;
const perAlert = (key: string): boolean => PER_ALERT_VALUES.some((p) => key.startsWith(p));
/**
 * A claim is written a few steps before its record's write-ahead, in the same handling, with no
 * I/O between them on this store: a record still absent after this many more values were written
 * per alert (QUEUE_CONCURRENCY handlers write a few each meanwhile) is not coming.
 */
const RECENT_WRITES = 1_000;

/**
 * The embedded store: one process, one replica. Everything is kept in memory and lost on exit,
 * which is why shutdown drains the queue before closing (see main.ts). Bounded: the queue refuses
 * intake past maxQueue, closed records past maxRecords are dropped oldest first, dedupe keys past
 * maxDedupeKeys are forgotten oldest first, the values written per alert past maxKeys are dropped
 * (trimValues: expired, then spent, then oldest first; locks, the pause and every other value never),
 * and expired keys are swept once a minute.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private seq = 0;
  /** one map per lane (insertion order is queue order), and every entry by id */
  private readonly lanes: Map<string, Entry>[] = LANES.map(() => new Map());
  private readonly entries = new Map<string, Entry>();
  private readonly waiters = new Set<() => void>();
  private readonly keys = new Map<string, { value: string; expiresAt: number }>();
  /** the keys of PER_ALERT_VALUES in `keys`, in the order last written (oldest first), each with its write's number: what maxKeys counts */
  private readonly perAlertOrder = new Map<string, number>();
  private perAlertWrites = 0;
  /**
   * dedupe key's digest (keyDigest, as the Redis store names its keys) -> expiry; insertion order
   * is expiry order (one TTL per setting). The key holds the sender's fingerprint, up to
   * ALERT_MAX_LABEL_BYTES: until 2026-12-08 it was kept as it came, so MEMORY_MAX_DEDUPE_KEYS
   * (100,000) keys of 4 kB fingerprints held about 400 MB for DEDUPE_TTL.
   */
  private readonly dedupe = new Map<string, number>();
  private readonly fences = new Map<string, { token: number; expiresAt: number }>();
  /** sliding windows: each event's time and member (reserveEvents names its members) */
  private readonly events = new Map<string, { entries: { at: number; member: string }[]; windowMs: number }>();
  /** leased slots: pool -> member -> lease expiry */
  private readonly slots = new Map<string, Map<string, number>>();
  private readonly records = new Map<string, StoredRecord>();
  private readonly byState = new Map<string, Set<string>>();
  private readonly byTarget = new Map<string, Set<string>>();
  /** id -> what the record holds (above 0 only) */
  private readonly held = new Map<string, number>();
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
      this.forget(key);
      return undefined;
    }
    return v;
  }

  private forget(key: string): void {
    this.keys.delete(key);
    this.perAlertOrder.delete(key);
  }

  /** A write of `key`: a value written per alert moves to the end of the order (the newest). */
  private written(key: string): void {
    if (!perAlert(key)) return;
    this.perAlertOrder.delete(key);
    this.perAlertOrder.set(key, ++this.perAlertWrites);
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
    for (const [k, v] of this.keys) if (v.expiresAt <= now) this.forget(k);
    for (const [k, v] of this.fences) if (v.expiresAt <= now) this.fences.delete(k);
    for (const [k, v] of this.events) if (v.entries.every((e) => e.at < now - v.windowMs)) this.events.delete(k);
  }

  async intake(items: IntakeItem[], dedupeTtlMs: number): Promise<IntakeResult> {
    const { kept, unmatched } = splitUnmatched(items); // counted, never remembered (see IntakeItem.lane)
    if (kept.length === 0) return intakeResult(0, 0, unmatched);
    this.sweep();
    const maxQueue = this.bounds.maxQueue;
    if (maxQueue !== undefined && this.entries.size + kept.length > maxQueue) {
      throw new StoreFullError(`the queue holds ${this.entries.size} alerts and takes at most ${maxQueue} (QUEUE_MAX_DEPTH): nothing was queued`);
    }
    let queued = 0;
    const now = this.now();
    for (const it of kept) {
      const key = keyDigest(it.key);
      const exp = this.dedupe.get(key);
      if (exp !== undefined && exp > now) continue;
      this.dedupe.delete(key); // re-inserted at the end: insertion order stays expiry order
      this.dedupe.set(key, now + dedupeTtlMs);
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
    return intakeResult(kept.length, queued, unmatched);
  }

  /** No replicas: everything written is as durable as this process. */
  async replicated(): Promise<void> {}

  async consume(consumer: string, count: number, blockMs: number, claimIdleMs: number, lastLane?: Lane): Promise<QueuedEvent[]> {
    const lanes = lastLane === undefined ? this.lanes : this.lanes.slice(0, lastLane + 1);
    const take = (): QueuedEvent[] => {
      const now = this.now();
      const out: QueuedEvent[] = [];
      // lane by lane: stale entries of other (crashed) consumers first, then new ones
      for (const lane of lanes) {
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

  async lockOwner(name: string): Promise<string | null> {
    const v = this.alive(`lock:${name}`);
    return v ? v.value.slice(0, v.value.lastIndexOf('|')) : null;
  }

  async currentFence(name: string): Promise<number> {
    const f = this.fences.get(name);
    return f && f.expiresAt > this.now() ? f.token : 0;
  }

  async addEvent(key: string, at: number, windowMs: number): Promise<void> {
    this.recordEvent(key, `${at}-${++this.seq}`, at, windowMs);
  }

  private recordEvent(key: string, member: string, at: number, windowMs: number): void {
    // the window ending at `at` starts at at - windowMs, inclusive (as Redis keeps it: ZREMRANGEBYSCORE below it only)
    const entries = (this.events.get(key)?.entries ?? []).filter((e) => e.at >= at - windowMs && e.member !== member);
    entries.push({ at, member });
    this.events.set(key, { entries, windowMs });
  }

  async countEvents(key: string, since: number): Promise<number> {
    return (this.events.get(key)?.entries ?? []).filter((e) => e.at >= since).length;
  }

  async eventMembers(key: string, since: number, limit: number): Promise<string[]> {
    return this.members(key, since, limit);
  }

  /** The members of `key`'s events at or after `since`, newest first (one time's by member, descending), at most `limit`. */
  private members(key: string, since: number, limit: number): string[] {
    const entries = (this.events.get(key)?.entries ?? []).filter((e) => e.at >= since);
    // one time's members descending, as Redis orders equal scores (ZREVRANGEBYSCORE)
    return entries
      .sort((a, b) => b.at - a.at || (a.member < b.member ? 1 : a.member > b.member ? -1 : 0))
      .slice(0, Math.max(0, limit))
      .map((e) => e.member);
  }

  // One synchronous step (no await between the counts, the holders read and the writes): atomic in this process.
  async reserveEvents(keys: readonly EventLimit[], member: string, at: number, windowMs: number, holders?: HoldersWanted): Promise<Reservation> {
    const refused = this.refusal(keys, member, at, windowMs, holders);
    if (refused) return refused;
    for (const { key } of keys) this.recordEvent(key, member, at, windowMs);
    return { reserved: true };
  }

  async checkEvents(keys: readonly EventLimit[], member: string, at: number, windowMs: number, holders?: HoldersWanted): Promise<Reservation> {
    return this.refusal(keys, member, at, windowMs, holders) ?? { reserved: true };
  }

  /** The first key at its limit in the window ending at `at` (`member`'s own event not counted), with its holders if wanted. */
  private refusal(keys: readonly EventLimit[], member: string, at: number, windowMs: number, holders?: HoldersWanted): Reservation | undefined {
    for (const { key, limit } of keys) {
      const count = (this.events.get(key)?.entries ?? []).filter((e) => e.at >= at - windowMs && e.member !== member).length;
      if (count < limit) continue;
      return holders ? { reserved: false, key, count, holders: this.members(key, holders.since, holders.limit) } : { reserved: false, key, count };
    }
    return undefined;
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

  async slotHolders(pool: string): Promise<string[]> {
    if (!this.slots.has(pool)) return [];
    return [...this.pool(pool).keys()];
  }

  async setValue(key: string, value: string, opts: { ttlMs?: number; onlyIfAbsent?: boolean } = {}): Promise<boolean> {
    const k = `kv:${key}`;
    if (opts.onlyIfAbsent && this.alive(k)) return false;
    this.keys.set(k, { value, expiresAt: opts.ttlMs === undefined ? Number.POSITIVE_INFINITY : this.now() + opts.ttlMs });
    this.written(k);
    const max = this.bounds.maxKeys;
    if (max !== undefined && this.perAlertOrder.size > max) this.trimValues(max);
    return true;
  }

  /**
   * Keeps the values written per alert (PER_ALERT_VALUES) within maxKeys, down to 95 % of it (so
   * that a pass is not needed on every write): expired ones first (not counted as drops), then,
   * oldest written first, those that no longer guard anything (spent), then, only if still over,
   * the others, oldest written first. Oldest written rather than closest to expiry: each of these
   * values guards something only while young (a claim until its record is written, a link until
   * its alert resolves, a mark while a copy of its record read before the resolution may still be
   * saved). Within one kind, which has one TTL, the two orders are the same; across kinds, closest
   * to expiry would keep 30-day resolution marks of records long closed before the 7-day links of
   * alerts still firing. So the values still guarding something, and the newest ones, go last.
   */
  private trimValues(max: number): void {
    const now = this.now();
    for (const k of this.perAlertOrder.keys()) {
      const v = this.keys.get(k);
      if (!v || v.expiresAt <= now) this.forget(k);
    }
    const target = Math.max(1, Math.floor(max * 0.95));
    let dropped = 0;
    let guarding = 0;
    for (const pass of ['spent', 'any'] as const) {
      for (const [k, seq] of this.perAlertOrder) {
        if (this.perAlertOrder.size <= target) break;
        const spent = this.spent(k, this.perAlertWrites - seq >= RECENT_WRITES);
        if (pass === 'spent' && !spent) continue;
        if (!spent) guarding++;
        this.forget(k);
        dropped++;
      }
    }
    if (dropped === 0) return;
    const detail = `MEMORY_MAX_KEYS=${max}; ${guarding} of those dropped still guarded something (a claim or link of a record not written yet, a link or resolution mark of an open record)`;
    this.drops.note('keys', dropped, detail);
  }

  /**
   * Whether a value written per alert no longer guards anything (see PER_ALERT_VALUES): a claim
   * whose record is written, a resolution mark whose record is closed or gone, an alert link all
   * of whose records are closed. A record that is absent may be one whose write-ahead has not
   * landed yet, so a claim or link naming one counts as still guarding while it is among the
   * newest writes (`old` false); once RECENT_WRITES more have been written, its record was
   * dropped or pruned (or its attempt failed and gave the claim up): nothing left to guard.
   */
  private spent(key: string, old: boolean): boolean {
    const open = this.bounds.openStates ?? [];
    const closed = (id: string): boolean => {
      const r = this.records.get(id);
      return r === undefined ? old : !open.includes(r.state);
    };
    if (key.startsWith('kv:claim:')) {
      const id = key.slice('kv:claim:'.length);
      return this.records.has(id) || old;
    }
    if (key.startsWith('kv:resolved:')) {
      const id = key.slice('kv:resolved:'.length);
      return !this.records.has(id) || closed(id);
    }
    if (key.startsWith('kv:burst:')) return closed(key.slice('kv:burst:'.length));
    try {
      const ids = JSON.parse(this.keys.get(key)?.value ?? '[]') as unknown;
      return Array.isArray(ids) && ids.every((id) => typeof id === 'string' && closed(id));
    } catch {
      return false;
    }
  }

  async getValue(key: string): Promise<string | null> {
    return this.alive(`kv:${key}`)?.value ?? null;
  }

  async compareAndSetValue(key: string, expected: string, value: string, opts: { ttlMs?: number } = {}): Promise<boolean> {
    const v = this.alive(`kv:${key}`);
    if (!v || v.value !== expected) return false;
    v.value = value;
    if (opts.ttlMs !== undefined) v.expiresAt = this.now() + opts.ttlMs;
    this.written(`kv:${key}`);
    return true;
  }

  async deleteValue(key: string): Promise<void> {
    this.forget(`kv:${key}`);
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
    this.held.delete(id);
    this.index(this.byState, r.state, id, false);
    this.index(this.byTarget, r.target, id, false);
  }

  async putRecord(record: StoredRecord, opts: { unlessValue?: string | readonly string[]; expectState?: string } = {}): Promise<boolean> {
    if (unlessKeys(opts.unlessValue).some((v) => this.alive(`kv:${v}`))) return false;
    if (opts.expectState !== undefined && this.records.get(record.id)?.state !== opts.expectState) return false;
    this.remove(record.id);
    // kept as JSON gives it back, as Redis keeps it: what a test on this store reads is what a replica on Redis reads
    this.records.set(record.id, JSON.parse(JSON.stringify(record)) as StoredRecord);
    this.index(this.byState, record.state, record.id, true);
    this.index(this.byTarget, record.target, record.id, true);
    const holds = Math.floor((this.bounds.holding ?? holdsField)(record));
    if (holds > 0) this.held.set(record.id, holds);
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
      for (const id of ids) if (!this.held.has(id)) (noAction.has(state) ? first : then).push(this.records.get(id)!);
    }
    const oldestFirst = (a: StoredRecord, b: StoredRecord) => -newestFirst(a, b);
    const closed = [...first.sort(oldestFirst), ...then.sort(oldestFirst)];
    const drop = closed.slice(0, Math.max(0, this.records.size - Math.floor(max * 0.95)));
    for (const r of drop) this.remove(r.id);
    const newest = drop.reduce<StoredRecord | undefined>((m, r) => (m === undefined || r.createdAt > m.createdAt ? r : m), undefined);
    const detail = newest
      ? `MEMORY_MAX_RECORDS=${max}; the newest dropped was created ${new Date(newest.createdAt).toISOString()}`
      : `MEMORY_MAX_RECORDS=${max}; every record over it is open or holds what only it can undo (a GitOps suspension), none dropped`;
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
    const limit = pageLimit(filter.limit);
    const after = filter.cursor === undefined ? undefined : decodeCursor(filter.cursor);
    // the smallest index that answers the filter (of a target and a state, the smaller); every record only when there is no filter
    const { target, state } = filter;
    const byTarget = target === undefined ? undefined : (this.byTarget.get(target) ?? new Set<string>());
    const byState = state === undefined ? undefined : (this.byState.get(state) ?? new Set<string>());
    const ids = byTarget && byState ? (byState.size < byTarget.size ? byState : byTarget) : (byTarget ?? byState ?? this.records.keys());
    const hits: StoredRecord[] = [];
    for (const id of ids) {
      const r = this.records.get(id)!;
      if ((state !== undefined && r.state !== state) || (target !== undefined && r.target !== target)) continue;
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
        if (this.records.get(id)!.createdAt < before && !this.held.has(id)) {
          this.remove(id);
          n++;
        }
      }
    }
    return n;
  }

  async heldCount(): Promise<number> {
    let n = 0;
    for (const v of this.held.values()) n += v;
    return n;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.waiters]) w();
  }
}
