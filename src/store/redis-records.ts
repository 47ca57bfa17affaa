import { encodeCursor, type Position } from './cursor.js';
import { PRUNE_LUA, PUT_RECORD_LUA, RECORDS_LAYOUT } from './redis-lua.js';
import type { Client } from './redis-client.js';
import { holdsField, pageLimit, type Holding, type RecordFilter, type RecordPage, type StoredRecord } from './store.js';

/**
 * The record-count cap (REDIS_MAX_RECORDS): with more records than ARGV[1], closed records of the
 * states given (those that changed nothing) are deleted oldest first, down to ARGV[2] records, at
 * most ARGV[3] in one call. Replies {deleted, createdAt of the newest deleted}.
 */
const CAP_RECORDS_LUA = `
-- KEYS[1]: records; KEYS[2]: meta; KEYS[3]: by-time; KEYS[4]: held (never dropped)
-- ARGV[1]: max; ARGV[2]: down to; ARGV[3]: at most; ARGV[4]: state index prefix; ARGV[5]: target index prefix; ARGV[6..]: states dropped
local count = redis.call('HLEN', KEYS[2])
if count <= tonumber(ARGV[1]) then return {0, 0} end
local want = math.min(count - tonumber(ARGV[2]), tonumber(ARGV[3]))
-- the oldest want of each state, and as many more as there are held records (which are passed over)
local reach = want + redis.call('HLEN', KEYS[4])
local cands = {}
for i = 6, #ARGV do
  local flat = redis.call('ZRANGE', ARGV[4] .. ARGV[i], 0, reach - 1, 'WITHSCORES')
  for j = 1, #flat, 2 do
    if redis.call('HEXISTS', KEYS[4], flat[j]) == 0 then cands[#cands + 1] = {flat[j], tonumber(flat[j + 1]), ARGV[4] .. ARGV[i]} end
  end
end
table.sort(cands, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
local n = 0
local newest = 0
for _, c in ipairs(cands) do
  if n >= want then break end
  local meta = redis.call('HGET', KEYS[2], c[1])
  if meta then redis.call('ZREM', ARGV[5] .. string.match(meta, '^[^|]*|[^|]*|(.*)$'), c[1]) end
  redis.call('HDEL', KEYS[1], c[1])
  redis.call('HDEL', KEYS[2], c[1])
  redis.call('ZREM', KEYS[3], c[1])
  redis.call('ZREM', c[3], c[1])
  n = n + 1
  if c[2] > newest then newest = c[2] end
end
return {n, string.format('%.0f', newest)}`;

/**
 * Sets (n > 0) or clears a record's `held` entry, only while its stored JSON is the one the caller
 * read and judged: a replica that saved the record since (a resume) has already set `held` from
 * the newer JSON. A record gone clears it.
 */
const SET_HELD_LUA = `
-- KEYS[1]: records; KEYS[2]: held; ARGV[1]: id; ARGV[2]: the JSON read; ARGV[3]: what it holds
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then redis.call('HDEL', KEYS[2], ARGV[1]) return 1 end
if json ~= ARGV[2] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) else redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1`;

/** A record-count bound: beyond max records, closed records of dropStates go, oldest first. */
export interface RecordCap {
  max: number;
  dropStates: readonly string[];
  /** told how many were dropped and the createdAt of the newest of them */
  onDropped: (n: number, newestCreatedAt: number) => void;
}

/**
 * The Redis store's rollback records: the JSON in one hash, indexed by time, by state and by target
 * (sorted sets scored by createdAt; see redis-lua.ts), so that listing by state or target and
 * pruning read only the records they ask for. Errors are turned into StoreUnavailableError by the
 * store that calls these.
 */
export class RedisRecords {
  private readonly keys: { records: string; meta: string; byTime: string; states: string; held: string };
  private indexing: Promise<void> | null = null;

  constructor(
    private readonly cmd: Client,
    private readonly k: (...parts: string[]) => string,
    private readonly cap?: RecordCap,
    private readonly holding: Holding = holdsField,
  ) {
    this.keys = { records: k('records'), meta: k('records', 'meta'), byTime: k('records', 'by-time'), states: k('records', 'states'), held: k('records', 'held') };
    cmd.defineCommand('rgPutRecord', { lua: PUT_RECORD_LUA, numberOfKeys: 7 });
    // the keys' number given first: 7 and those written only while absent (`unless`)
    cmd.defineCommand('rgPutRecordUnless', { lua: PUT_RECORD_LUA });
    cmd.defineCommand('rgCapRecords', { lua: CAP_RECORDS_LUA, numberOfKeys: 4 });
    cmd.defineCommand('rgPrune', { lua: PRUNE_LUA, numberOfKeys: 5 });
    cmd.defineCommand('rgSetHeld', { lua: SET_HELD_LUA, numberOfKeys: 2 });
  }

  private stateIndex(state: string): string {
    return this.k('records', 'state', state);
  }

  private targetIndex(target: string): string {
    return this.k('records', 'target', target);
  }

  /**
   * Writes one record and its indexes; returns how many records there are, or -1 when one of
   * `unless` (full key names) exists, or when `expectState` is given and the stored record is not in
   * it (or absent): then nothing was written.
   */
  private async putNow(record: StoredRecord, json: string, unless: readonly string[] = [], expectState?: string): Promise<number> {
    const r = this.keys;
    const { id, createdAt, state, target } = record;
    const cmd = this.cmd as unknown as { rgPutRecord(...a: string[]): Promise<number>; rgPutRecordUnless(n: number, ...a: string[]): Promise<number> };
    const keys = [r.records, r.meta, r.byTime, r.states, this.stateIndex(state), this.targetIndex(target), r.held];
    const held = String(Math.max(0, Math.floor(this.holding(record))));
    const args = [id, json, String(createdAt), state, target, this.stateIndex(''), this.targetIndex(''), held, ...(expectState === undefined ? [] : [expectState])];
    return await (unless.length === 0 ? cmd.rgPutRecord(...keys, ...args) : cmd.rgPutRecordUnless(keys.length + unless.length, ...keys, ...unless, ...args));
  }

  /**
   * Records written before the per-state and per-target indexes existed are indexed once (every
   * replica may do it at the same time: putting a record again is harmless), then a marker says so.
   */
  private ensureIndexed(): Promise<void> {
    this.indexing ??= this.indexOldRecords().catch((err: unknown) => {
      this.indexing = null;
      throw err;
    });
    return this.indexing;
  }

  private async indexOldRecords(): Promise<void> {
    const marker = this.k('records', 'layout');
    if ((await this.cmd.get(marker)) !== RECORDS_LAYOUT) {
      const { records, meta } = this.keys;
      let cursor = '0';
      do {
        const [next, flat] = await this.cmd.hscan(records, cursor, 'COUNT', 500);
        cursor = next;
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const id = flat[i]!;
          const r = JSON.parse(flat[i + 1]!) as StoredRecord;
          if (await this.cmd.hexists(meta, id)) {
            // indexed by layout 2, which had no `held`: only that is added, and only while the
            // record is as this scan read it (a replica may have saved a newer one since: a resume)
            const held = Math.floor(this.holding(r));
            if (held > 0) await this.setHeld(id, flat[i + 1]!, held);
            continue;
          }
          await this.putNow(r, flat[i + 1]!);
        }
      } while (cursor !== '0');
      await this.cmd.set(marker, RECORDS_LAYOUT);
    }
  }

  /**
   * Writes the record unless one of `unless` (full key names) exists, and, with `expectState`, only
   * while the stored record is in that state: false otherwise, and nothing written.
   */
  async put(record: StoredRecord, unless: readonly string[] = [], expectState?: string): Promise<boolean> {
    await this.ensureIndexed();
    const count = Number(await this.putNow(record, JSON.stringify(record), unless, expectState));
    if (count < 0) return false;
    if (this.cap && count > this.cap.max) await this.trim(this.cap);
    return true;
  }

  /** Over the cap: closed records that changed nothing go, oldest first, down to 95 % of it (so not on every put). */
  private async trim(cap: RecordCap): Promise<void> {
    const r = this.keys;
    const [n, newest] = (
      (await (this.cmd as unknown as { rgCapRecords(...a: string[]): Promise<(number | string)[]> }).rgCapRecords(
        r.records,
        r.meta,
        r.byTime,
        r.held,
        String(cap.max),
        String(Math.floor(cap.max * 0.95)),
        '5000',
        this.stateIndex(''),
        this.targetIndex(''),
        ...cap.dropStates,
      )) as (number | string)[]
    ).map(Number) as [number, number];
    cap.onDropped(n, newest);
  }

  private async setHeld(id: string, json: string, held: number): Promise<void> {
    await (this.cmd as unknown as { rgSetHeld(...a: string[]): Promise<number> }).rgSetHeld(this.keys.records, this.keys.held, id, json, String(held));
  }

  /**
   * Every `held` entry judged again from its record as stored now, and corrected where it differs:
   * a replica of an earlier version (a rolling upgrade) saves a resumed record without clearing its
   * entry, and would keep it past retention and in rollguard_gitops_suspended for ever. Run before
   * each prune (hourly); reads only the held records.
   */
  private async reconcileHeld(): Promise<void> {
    let cursor = '0';
    do {
      const [next, flat] = await this.cmd.hscan(this.keys.held, cursor, 'COUNT', 200);
      cursor = next;
      const ids = flat.filter((_, i) => i % 2 === 0);
      if (ids.length === 0) continue;
      const values = await this.cmd.hmget(this.keys.records, ...ids);
      for (const [i, id] of ids.entries()) {
        const json = values[i];
        const held = json ? Math.floor(this.holding(JSON.parse(json) as StoredRecord)) : 0;
        if (String(held) !== flat[2 * i + 1]) await this.setHeld(id, json ?? '', held);
      }
    } while (cursor !== '0');
  }

  /** The sum of what the held records hold (see Holding). */
  async heldCount(): Promise<number> {
    await this.ensureIndexed();
    return (await this.cmd.hvals(this.keys.held)).reduce((sum, v) => sum + Number(v), 0);
  }

  async get(id: string): Promise<StoredRecord | null> {
    const s = await this.cmd.hget(this.keys.records, id);
    return s ? (JSON.parse(s) as StoredRecord) : null;
  }

  async page(filter: RecordFilter, after: Position | undefined): Promise<RecordPage> {
    const limit = pageLimit(filter.limit);
    await this.ensureIndexed();
    const { target, state } = filter;
    const index = await this.smallestIndex(target, state);
    // records read that are not listed: those of the other filter (a state and a target together),
    // and those that moved on or were pruned between the read of the index and of the records
    const listed = (r: StoredRecord) => (state === undefined || r.state === state) && (target === undefined || r.target === target);
    const out: StoredRecord[] = [];
    let more = false;
    // a chunk of limit + 1 answers a one-filter listing in one read; a listing of two filters may
    // pass over many records of the index it reads, so its chunks double (at most 500 ids each)
    const grow = target !== undefined && state !== undefined;
    for await (const ids of this.idsNewestFirst(index, after, Math.min(limit + 1, 500), grow)) {
      const values = await this.cmd.hmget(this.keys.records, ...ids);
      for (const v of values) {
        if (!v) continue; // pruned meanwhile
        const r = JSON.parse(v) as StoredRecord;
        if (!listed(r)) continue;
        if (out.length === limit) {
          more = true;
          break;
        }
        out.push(r);
      }
      if (more) break;
    }
    const last = out[out.length - 1];
    return { records: out, nextCursor: more && last ? encodeCursor(last) : null };
  }

  /**
   * The index a listing reads: a target's records, a state's, or all; with both a target and a
   * state, the smaller of their two indexes (the records in_progress of a target with thousands of
   * closed ones: the few ids of the state's index, not the target's thousands).
   */
  private async smallestIndex(target: string | undefined, state: string | undefined): Promise<string> {
    if (target === undefined) return state === undefined ? this.keys.byTime : this.stateIndex(state);
    if (state === undefined) return this.targetIndex(target);
    const [byTarget, byState] = await Promise.all([this.cmd.zcard(this.targetIndex(target)), this.cmd.zcard(this.stateIndex(state))]);
    return byState < byTarget ? this.stateIndex(state) : this.targetIndex(target);
  }

  /**
   * Ids of a sorted set (score createdAt) newest first, strictly after `after`, in chunks. Each
   * chunk starts after the last id of the one before (its position), not at an offset: a record
   * added (newer, above) or leaving the index (a state index, as its record moves on) between two
   * chunks would shift every offset after it, and one listing would then show a record twice or
   * skip one. Redis orders equal scores by member, descending, as the cursor does; only a chunk
   * made entirely of ids of one createdAt already passed moves on by offset. `grow`: each chunk
   * twice the one before, up to 500 ids (a listing that passes over records it reads).
   */
  private async *idsNewestFirst(key: string, after: Position | undefined, first: number, grow: boolean): AsyncGenerator<string[]> {
    let pos = after;
    let ties = 0;
    let chunk = Math.max(1, first);
    for (let n = 0; ; n++) {
      if (grow && n > 0) chunk = Math.min(chunk * 2, 500);
      const flat = await this.cmd.zrevrangebyscore(key, pos ? String(pos.createdAt) : '+inf', '-inf', 'WITHSCORES', 'LIMIT', ties, chunk);
      const ids: string[] = [];
      let last: Position | undefined;
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const id = flat[i]!;
        const createdAt = Number(flat[i + 1]);
        if (pos && createdAt === pos.createdAt && id >= pos.id) continue;
        ids.push(id);
        last = { createdAt, id };
      }
      if (ids.length > 0) yield ids;
      if (flat.length < 2 * chunk) return;
      if (last) {
        pos = last;
        ties = 0;
      } else ties += chunk;
    }
  }

  /** Deletes closed records in batches of 500 (one script each), reading only the closed states' indexes. */
  async prune(before: number, keepStates: readonly string[]): Promise<number> {
    await this.ensureIndexed();
    await this.reconcileHeld();
    const r = this.keys;
    let n = 0;
    for (;;) {
      const batch = Number(
        await (this.cmd as unknown as { rgPrune(...a: string[]): Promise<number> }).rgPrune(
          r.records,
          r.meta,
          r.byTime,
          r.states,
          r.held,
          String(before),
          '500',
          this.stateIndex(''),
          this.targetIndex(''),
          ...keepStates,
        ),
      );
      n += batch;
      if (batch < 500) return n;
    }
  }
}
