// Why this file is longer than ~350 lines: it is the Redis backend of one contract, the Store
// interface (store.ts), method for method beside memory.ts — the lanes' streams and consumer
// group, dedupe, fenced locks, event reservations, concurrency slot leases, values and records —
// over one connection and one key prefix. What stands alone is already out: the Lua scripts
// (redis-lua.ts), records (redis-records.ts), events (redis-events.ts), the client
// (redis-client.ts); what is left is the wiring of each Store method to them and the mapping of
// Redis errors to StoreUnavailableError / StoreFullError, which reads best in one place.
import { ReplyError, type Redis, type RedisOptions } from 'ioredis';
import { decodeCursor } from './cursor.js';
import { createRedisClient, type Client } from './redis-client.js';
import {
  ACK_LUA,
  CONSUME_LUA,
  FENCE_TTL_FACTOR,
  FULL_REPLY,
  INTAKE_LUA,
  LOCK_ACQUIRE_LUA,
  LOCK_RELEASE_LUA,
  LOCK_RENEW_LUA,
  MEMORY_LUA,
  SLOT_ACQUIRE_LUA,
  SLOT_HOLDERS_LUA,
  SLOT_RENEW_LUA,
  TRANSIENT_REPLY,
} from './redis-lua.js';
import type { EventLimit, Holding, HoldersWanted, IntakeItem, IntakeResult, Lane, Lock, QueuedEvent, RecordFilter, RecordPage, Reservation, SlotLease, Store, StoredRecord } from './store.js';
import { RedisEvents } from './redis-events.js';
import { RedisRecords } from './redis-records.js';
import { keyDigest } from './keys.js';
import { DropNotes, type DropCallbacks } from './drops.js';
import { intakeResult, LANES, LAST_LANE, pageLimit, splitUnmatched, StoreFullError, StoreUnavailableError, unlessKeys } from './store.js';
import { withTimeout } from '../timeout.js';
import { Rounds } from '../rounds.js';

export { createRedisClient } from './redis-client.js';

/*
 * Key layout (see redis-lua.ts): every key carries the hash tag {PREFIX}, so that on Redis Cluster
 * they all live in one slot and the Lua scripts (multi-key) are allowed. The queue is one stream
 * per lane, each with one consumer group shared by all replicas; acked entries are deleted, so the
 * sum of the XLENs is the queue depth. A QueuedEvent's id is "lane:stream id".
 */
const GROUP = 'engine';

export interface RedisStoreOptions extends DropCallbacks {
  url: string;
  prefix?: string;
  commandTimeoutMs?: number;
  /** called with each connection state change, for logs */
  onEvent?: (event: string, detail?: unknown) => void;
  /** queued and not yet acked entries; intake beyond is refused (StoreFullError). 0 or unset: no bound */
  maxQueue?: number;
  /**
   * share of Redis' maxmemory (0-1) above which intake is refused (StoreFullError), leaving the rest
   * for the engine to turn what is queued into records. 0 or unset: no bound; no maxmemory: no bound
   */
  intakeMaxMemory?: number;
  /**
   * records kept (REDIS_MAX_RECORDS): beyond, closed records of noActionStates (those that changed
   * nothing) are deleted oldest first; records of rollbacks done and open ones are kept. Unset: no cap
   */
  maxRecords?: number;
  noActionStates?: readonly string[];
  /** what a record holds in the cluster (Holding; default: its `holds`): such records are never pruned nor dropped */
  holding?: Holding;
  /** REDIS_MIN_REPLICAS_ACK: replicas that must confirm writes (WAIT) before intake answers and before a rollback writes; 0 or unset: none */
  minReplicasAck?: number;
  /** REDIS_REPLICA_ACK_TIMEOUT: how long WAIT may take (ms; at most half of commandTimeoutMs) */
  replicaAckTimeoutMs?: number;
}

/** What Redis reports of its memory (INFO memory). */
export interface RedisMemory {
  usedBytes: number;
  maxBytes: number;
  policy: string;
}

/** Commands timed out in a row after which the command connection is opened again (see timedOut). */
const RECONNECT_AFTER_TIMEOUTS = 2;

export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  private readonly cmd: Client;
  private readonly blocking: Client;
  /** REDIS_MIN_REPLICAS_ACK: the connection WAIT blocks (never the command connection; see waitReplicas) */
  private readonly waiter: Client | null;
  /** the WAIT in flight on it, and the one queued behind it (shared by every caller meanwhile) */
  private readonly replicaRounds = new Rounds<string, void>((op) => this.replicaRound(op));
  /** rounds of waitReplicas so far (each one's token) */
  private rounds = 0;
  private readonly waiterId = `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  private readonly p: string;
  private groupReady = false;
  /** commands timed out in a row on the command connection, no answer between them */
  private timeoutsInARow = 0;
  /** REDIS_COMMAND_TIMEOUT */
  private readonly commandTimeoutMs: number;
  private readonly recordsOf: RedisRecords;
  private readonly eventsOf: RedisEvents;

  constructor(private readonly opts: RedisStoreOptions) {
    const prefix = opts.prefix ?? 'rollguard';
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 2000;
    this.p = `{${prefix}}`;
    const base: RedisOptions = {
      // Fail fast instead of queueing commands while disconnected: intake must answer 503 at once.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.commandTimeoutMs,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
      lazyConnect: false,
    };
    // No auto-pipelining: each command is written to the socket as it is issued, in order, so the
    // calls the engine issues together still reach Redis together (one read, one fsync, one round
    // trip) and run in the order sent. ioredis' auto-pipelining queues them for a later tick and
    // wraps each in a pipeline, a promise and its callbacks: measured on the storm's dry-run path
    // it cost a quarter more CPU per alert and drained slower (docs/benchmarks.md, storm-split).
    this.cmd = createRedisClient(opts.url, { ...base, enableAutoPipelining: false });
    // Blocking reads get their own connection (a blocked connection serves nothing else).
    this.blocking = createRedisClient(opts.url, { ...base, commandTimeout: undefined });
    // WAIT blocks the connection it is sent on: on the command connection it would hold every other
    // store call behind it, for REDIS_REPLICA_ACK_TIMEOUT each time while a replica is away
    this.waiter = opts.minReplicasAck ? createRedisClient(opts.url, base) : null;
    for (const c of [this.cmd, this.blocking, ...(this.waiter ? [this.waiter] : [])]) {
      c.on('error', (err) => opts.onEvent?.('error', err));
      c.on('ready', () => opts.onEvent?.('ready'));
      c.on('end', () => opts.onEvent?.('end'));
    }
    this.cmd.defineCommand('rgIntake', { lua: INTAKE_LUA });
    this.cmd.defineCommand('rgConsume', { lua: CONSUME_LUA, numberOfKeys: LANES.length });
    // the same script over the first lanes only (consume's lastLane): the key count goes first
    this.cmd.defineCommand('rgConsumeFirst', { lua: CONSUME_LUA });
    this.cmd.defineCommand('rgAck', { lua: ACK_LUA, numberOfKeys: LANES.length });
    this.cmd.defineCommand('rgLockAcquire', { lua: LOCK_ACQUIRE_LUA, numberOfKeys: 2 });
    this.cmd.defineCommand('rgLockRenew', { lua: LOCK_RENEW_LUA, numberOfKeys: 2 });
    this.cmd.defineCommand('rgMemory', { lua: MEMORY_LUA, numberOfKeys: 1 });
    this.cmd.defineCommand('rgLockRelease', { lua: LOCK_RELEASE_LUA, numberOfKeys: 1 });
    this.cmd.defineCommand('rgCompareAndSet', { lua: COMPARE_AND_SET_LUA, numberOfKeys: 1 });
    this.cmd.defineCommand('rgSlotAcquire', { lua: SLOT_ACQUIRE_LUA, numberOfKeys: 1 });
    this.cmd.defineCommand('rgSlotRenew', { lua: SLOT_RENEW_LUA, numberOfKeys: 1 });
    this.cmd.defineCommand('rgSlotHolders', { lua: SLOT_HOLDERS_LUA, numberOfKeys: 1 });
    const drops = new DropNotes(opts, Date.now);
    const max = opts.maxRecords;
    this.recordsOf = new RedisRecords(
      this.cmd,
      (...parts) => this.k(...parts),
      max === undefined
        ? undefined
        : {
            max,
            dropStates: opts.noActionStates ?? [],
            onDropped: (n, newest) =>
              drops.note('records', n, n > 0 ? `REDIS_MAX_RECORDS=${max}; the newest dropped was created ${new Date(newest).toISOString()}` : `REDIS_MAX_RECORDS=${max}; no closed record that changed nothing is left to drop`),
          },
      opts.holding,
    );
    this.eventsOf = new RedisEvents(this.cmd, (...parts) => this.k(...parts));
  }

  private k(...parts: string[]): string {
    return `${this.p}:${parts.join(':')}`;
  }

  /** The stream of a lane; the last lane keeps the one stream of earlier versions. */
  private streamOf(lane: Lane): string {
    return lane === LAST_LANE ? this.k('queue') : this.k('queue', `p${lane}`);
  }

  private get streams(): string[] {
    return LANES.map((l) => this.streamOf(l));
  }

  private get stream(): string {
    return this.streamOf(LAST_LANE);
  }

  /** Runs a store operation, turning connection-level failures into StoreUnavailableError. */
  private async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      const r = await fn();
      this.timeoutsInARow = 0;
      return r;
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw err;
      const isReply = err instanceof ReplyError;
      const msg = err instanceof Error ? err.message : String(err);
      if (isReply) this.timeoutsInARow = 0;
      else if (/Command timed out/.test(msg)) this.timedOut(op);
      if (isReply && /NOGROUP/.test(msg)) this.groupReady = false;
      if (isReply && FULL_REPLY.test(msg)) throw new StoreFullError(`redis ${op}: Redis is at its maxmemory (${msg})`);
      if (!isReply || TRANSIENT_REPLY.test(msg) || /NOGROUP/.test(msg)) {
        throw new StoreUnavailableError(`redis ${op}: ${msg}`, { cause: err });
      }
      throw err;
    }
  }

  /**
   * A command that times out may be a slow Redis, or a connection whose far end is gone without a
   * word (a Redis pod deleted in a failover: its IP answers nothing, no reset comes), which TCP
   * reports only after its keepalive or retransmissions give up, many minutes on. ioredis waits for
   * that, so the command connection is opened again at the second timeout in a row instead: a slow
   * Redis costs a reconnection, a dead connection no longer stops the store.
   */
  private timedOut(op: string): void {
    if (++this.timeoutsInARow < RECONNECT_AFTER_TIMEOUTS) return;
    this.timeoutsInARow = 0;
    this.opts.onEvent?.('error', new Error(`redis ${op}: ${RECONNECT_AFTER_TIMEOUTS} commands in a row timed out (REDIS_COMMAND_TIMEOUT=${this.commandTimeoutMs}ms); opening the connection again`));
    this.cmd.disconnect(true);
  }

  /** Resolves once both connections (commands, blocking reads) answer. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.ping();
        await this.run('ping', async () => {
          await this.blocking.ping();
          await this.waiter?.ping();
        });
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private async ensureGroup(): Promise<void> {
    if (this.groupReady) return;
    for (const stream of this.streams) {
      try {
        // '0': entries added before the group existed are consumed too.
        await this.cmd.xgroup('CREATE', stream, GROUP, '0', 'MKSTREAM');
      } catch (err) {
        if (!(err instanceof Error && /BUSYGROUP/.test(err.message))) throw err;
      }
    }
    this.groupReady = true;
  }

  async intake(items: IntakeItem[], dedupeTtlMs: number): Promise<IntakeResult> {
    // alerts no rule matches are only counted: no key, no payload, no round trip when all are such
    const { kept, unmatched } = splitUnmatched(items);
    if (kept.length === 0) return intakeResult(0, 0, unmatched);
    return this.run('intake', async () => {
      // the dedupe key holds the sender's fingerprint: hashed before it names a Redis key
      const keys = kept.map((i) => this.k('dedupe', keyDigest(i.key)));
      const lanes = kept.map((i) => String(i.lane ?? LAST_LANE));
      const payloads = kept.map((i) => JSON.stringify(i.alert));
      const [code, a, b] = (
        (await (this.cmd as unknown as { rgIntake(...a: (string | number)[]): Promise<number[]> }).rgIntake(
          keys.length + LANES.length,
          ...this.streams,
          ...keys,
          String(Math.max(1, Math.round(dedupeTtlMs))),
          String(this.opts.maxQueue ?? 0),
          String(this.opts.intakeMaxMemory ?? 0),
          ...lanes,
          ...payloads,
        )) as (number | string)[]
      ).map(Number) as [number, number?, number?];
      if (code === -1) throw new StoreFullError(`the queue holds ${a} alerts and takes at most ${b} (QUEUE_MAX_DEPTH): nothing was queued`);
      if (code === -2) {
        const share = Math.round((this.opts.intakeMaxMemory ?? 0) * 100);
        throw new StoreFullError(`Redis uses ${mib(a!)} of its maxmemory ${mib(b!)}, over the ${share} % intake takes (REDIS_INTAKE_MAX_MEMORY): nothing was queued`);
      }
      const res = intakeResult(kept.length, code, unmatched);
      // its duplicates too: a batch answered 503 for want of replicas is confirmed by its resend
      await this.waitReplicas('intake');
      return res;
    });
  }

  async replicated(): Promise<void> {
    if (!this.opts.minReplicasAck) return;
    return this.run('replicated', () => this.waitReplicas('replicated'));
  }

  /**
   * Resolves once REDIS_MIN_REPLICAS_ACK replicas hold every write this store had been answered for
   * when it was called. WAIT covers the writes of the connection it is sent on, so a round writes
   * one small key on the waiter connection first (Redis runs commands one at a time: that write
   * comes after every write already answered) and waits for it. Callers arriving while a round is
   * in flight share the next one, so a missing replica costs each caller at most two rounds and
   * never holds the command connection.
   */
  private waitReplicas(op: string): Promise<void> {
    if (!this.waiter || !this.opts.minReplicasAck) return Promise.resolve();
    return this.replicaRounds.run(op);
  }

  private async replicaRound(op: string): Promise<void> {
    const waiter = this.waiter as Redis;
    const want = this.opts.minReplicasAck ?? 0;
    const timeout = this.opts.replicaAckTimeoutMs ?? 500;
    // a key of this process's own (another replica's rounds must not overwrite its token), expiring
    const key = this.k('replicated', this.waiterId);
    const token = String(++this.rounds);
    try {
      await waiter.set(key, token, 'PX', 60_000);
      const got = Number(await waiter.wait(want, timeout));
      if (got < want) {
        throw new StoreUnavailableError(
          `redis ${op}: ${got} of the ${want} replicas REDIS_MIN_REPLICAS_ACK asks for confirmed the writes within REDIS_REPLICA_ACK_TIMEOUT (${timeout} ms); check the replicas' link to the primary (INFO replication), or lower REDIS_MIN_REPLICAS_ACK`,
        );
      }
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw err;
      const msg = err instanceof Error ? err.message : String(err);
      // a primary gone without a word (a failover): open the waiter again rather than wait for TCP
      if (/Command timed out/.test(msg)) waiter.disconnect(true);
      throw new StoreUnavailableError(`redis ${op}: waiting for the replicas (REDIS_MIN_REPLICAS_ACK): ${msg}`, { cause: err });
    }
    // the wait proves something only of the primary it was sent to: the command connection must
    // reach the same one (each finds its primary on its own, and a failover may part them). Read
    // on the command connection and outside the waiter's handling: a timeout here is the command
    // connection's, which run() counts toward opening that one again (not the waiter)
    if ((await this.cmd.get(key)) !== token) {
      throw new StoreUnavailableError(`redis ${op}: the command connection and the wait for the replicas (REDIS_MIN_REPLICAS_ACK) reached different Redis primaries (a failover under way?): not confirmed`);
    }
  }

  /** Redis' memory use, limit and eviction policy (of the node holding this store's keys). */
  async memory(): Promise<RedisMemory> {
    return this.run('memory', async () => {
      const [used, max, policy] = (await (this.cmd as unknown as { rgMemory(k: string): Promise<string[]> }).rgMemory(this.stream)) as [string, string, string];
      return { usedBytes: Number(used), maxBytes: Number(max), policy };
    });
  }

  async consume(consumer: string, count: number, blockMs: number, claimIdleMs: number, lastLane?: Lane): Promise<QueuedEvent[]> {
    return this.run('consume', async () => {
      await this.ensureGroup();
      // the lanes' streams, lane 0 first (the script numbers lanes by their key's place)
      const streams = lastLane === undefined ? this.streams : this.streams.slice(0, lastLane + 1);
      const script = this.cmd as unknown as { rgConsume(...a: (string | number)[]): Promise<(string | number)[]>; rgConsumeFirst(...a: (string | number)[]): Promise<(string | number)[]> };
      // One round trip: claims and new entries, lane by lane (redis-lua.ts).
      const flat = (lastLane === undefined
        ? await script.rgConsume(...streams, GROUP, consumer, count, claimIdleMs)
        : await script.rgConsumeFirst(streams.length, ...streams, GROUP, consumer, count, claimIdleMs)) as (string | number)[];
      const out: QueuedEvent[] = [];
      for (let i = 0; i + 3 < flat.length; i += 4) {
        const lane = Number(flat[i]) as Lane;
        out.push({ id: `${lane}:${flat[i + 1]}`, alert: JSON.parse(String(flat[i + 2]) || 'null'), deliveries: Number(flat[i + 3]), lane });
      }
      if (out.length > 0 || blockMs <= 0) return out;
      // Every lane empty: wait for the first new entry in any of them. At most count in all (a
      // blocking read hands out up to COUNT per stream), highest lane first.
      const per = Math.max(1, Math.floor(count / streams.length));
      const args: (string | number)[] = ['GROUP', GROUP, consumer, 'COUNT', per, 'BLOCK', blockMs, 'STREAMS', ...streams, ...streams.map(() => '>')];
      const res = (await this.boundedBlockingRead(args, blockMs)) as [string, [string, string[]][]][] | null;
      if (!res) return [];
      const laneOfStream = new Map(LANES.map((l) => [this.streamOf(l), l]));
      return res
        .flatMap(([stream, entries]) => entries.map((e) => this.decode(laneOfStream.get(stream) ?? LAST_LANE, e, 1)))
        .sort((x, y) => (x.lane ?? LAST_LANE) - (y.lane ?? LAST_LANE));
    });
  }

  /**
   * The blocking read, given up at BLOCK plus the command timeout (the blocking connection has no
   * command timeout of its own: its commands wait by design). No answer by then means the connection
   * is dead without a word (see timedOut): it is opened again, and the worker reads again after its
   * back-off, instead of waiting on it for ever.
   */
  private boundedBlockingRead(args: (string | number)[], blockMs: number): Promise<unknown> {
    const bound = blockMs + this.commandTimeoutMs;
    const read = (this.blocking as unknown as { xreadgroup(...a: (string | number)[]): Promise<unknown> }).xreadgroup(...args);
    return withTimeout(read, bound, () => {
      const err = new StoreUnavailableError(`redis consume: the blocking read (BLOCK ${blockMs}ms) had no answer within ${bound}ms (REDIS_COMMAND_TIMEOUT=${this.commandTimeoutMs}ms more); opening its connection again`);
      this.opts.onEvent?.('error', err);
      this.blocking.disconnect(true);
      return err;
    });
  }

  private decode(lane: Lane, e: [string, string[]], deliveries: number): QueuedEvent {
    const fields = e[1];
    const i = fields.indexOf('a');
    return { id: `${lane}:${e[0]}`, alert: JSON.parse(fields[i + 1] ?? 'null'), deliveries, lane };
  }

  async ack(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const byLane = new Map<Lane, string[]>();
    for (const id of ids) {
      const i = id.indexOf(':');
      const lane = (i < 0 ? LAST_LANE : Number(id.slice(0, i))) as Lane;
      const list = byLane.get(lane) ?? [];
      list.push(i < 0 ? id : id.slice(i + 1));
      byLane.set(lane, list);
    }
    const args: string[] = [GROUP];
    for (const lane of LANES) {
      const list = byLane.get(lane) ?? [];
      args.push(String(list.length), ...list);
    }
    await this.run('ack', async () => {
      await (this.cmd as unknown as { rgAck(...a: string[]): Promise<number> }).rgAck(...this.streams, ...args);
    });
  }

  async queueDepth(): Promise<number> {
    return this.run('queueDepth', async () => {
      const m = this.cmd.multi();
      for (const stream of this.streams) m.xlen(stream);
      const res = (await m.exec()) ?? [];
      return res.reduce((n, [err, len]) => {
        if (err) throw err;
        return n + Number(len);
      }, 0);
    });
  }

  async acquireLock(name: string, owner: string, ttlMs: number): Promise<Lock | null> {
    return this.run('acquireLock', async () => {
      const token = await (this.cmd as unknown as { rgLockAcquire(...a: string[]): Promise<number | null> }).rgLockAcquire(
        this.k('lock', name),
        this.k('fence', name),
        owner,
        String(Math.round(ttlMs)),
        String(Math.round(FENCE_TTL_FACTOR * ttlMs)),
      );
      return token === null ? null : { name, owner, token: Number(token) };
    });
  }

  async renewLock(lock: Lock, ttlMs: number): Promise<boolean> {
    return this.run('renewLock', async () => {
      const r = await (this.cmd as unknown as { rgLockRenew(...a: string[]): Promise<number> }).rgLockRenew(
        this.k('lock', lock.name),
        this.k('fence', lock.name),
        `${lock.owner}|${lock.token}`,
        String(Math.round(ttlMs)),
        String(Math.round(FENCE_TTL_FACTOR * ttlMs)),
      );
      return Number(r) === 1;
    });
  }

  async releaseLock(lock: Lock): Promise<boolean> {
    return this.run('releaseLock', async () => {
      const r = await (this.cmd as unknown as { rgLockRelease(...a: string[]): Promise<number> }).rgLockRelease(
        this.k('lock', lock.name),
        `${lock.owner}|${lock.token}`,
      );
      return Number(r) === 1;
    });
  }

  async lockOwner(name: string): Promise<string | null> {
    return this.run('lockOwner', async () => {
      const v = await this.cmd.get(this.k('lock', name));
      return v === null ? null : v.slice(0, v.lastIndexOf('|'));
    });
  }

  async currentFence(name: string): Promise<number> {
    return this.run('currentFence', async () => Number((await this.cmd.get(this.k('fence', name))) ?? 0));
  }

  async addEvent(key: string, at: number, windowMs: number): Promise<void> {
    await this.run('addEvent', () => this.eventsOf.add(key, at, windowMs));
  }

  async countEvents(key: string, since: number): Promise<number> {
    return this.run('countEvents', () => this.eventsOf.count(key, since));
  }

  async eventMembers(key: string, since: number, limit: number): Promise<string[]> {
    return this.run('eventMembers', () => this.eventsOf.members(key, since, limit));
  }

  async reserveEvents(keys: readonly EventLimit[], member: string, at: number, windowMs: number, holders?: HoldersWanted): Promise<Reservation> {
    return this.run('reserveEvents', () => this.eventsOf.reserve(keys, member, at, windowMs, holders, true));
  }

  async checkEvents(keys: readonly EventLimit[], member: string, at: number, windowMs: number, holders?: HoldersWanted): Promise<Reservation> {
    return this.run('checkEvents', () => this.eventsOf.reserve(keys, member, at, windowMs, holders, false));
  }

  async releaseEvents(keys: readonly string[], member: string): Promise<void> {
    await this.run('releaseEvents', () => this.eventsOf.release(keys, member));
  }

  async acquireSlot(pool: string, member: string, max: number, ttlMs: number): Promise<SlotLease> {
    return this.run('acquireSlot', async () => {
      const [taken, ...holders] = (await (this.cmd as unknown as { rgSlotAcquire(...a: string[]): Promise<(number | string)[]> }).rgSlotAcquire(
        this.k('slots', pool),
        member,
        String(max),
        String(Math.max(1, Math.round(ttlMs))),
      )) as (number | string)[];
      return Number(taken) === 1 ? { acquired: true } : { acquired: false, holders: holders.map(String) };
    });
  }

  async renewSlot(pool: string, member: string, ttlMs: number): Promise<boolean> {
    return this.run('renewSlot', async () => {
      const r = await (this.cmd as unknown as { rgSlotRenew(...a: string[]): Promise<number> }).rgSlotRenew(this.k('slots', pool), member, String(Math.max(1, Math.round(ttlMs))));
      return Number(r) === 1;
    });
  }

  async releaseSlot(pool: string, member: string): Promise<void> {
    await this.run('releaseSlot', async () => {
      await this.cmd.zrem(this.k('slots', pool), member);
    });
  }

  async slotHolders(pool: string): Promise<string[]> {
    return this.run('slotHolders', async () => {
      const r = await (this.cmd as unknown as { rgSlotHolders(key: string): Promise<string[]> }).rgSlotHolders(this.k('slots', pool));
      return r.map(String);
    });
  }

  async setValue(key: string, value: string, opts: { ttlMs?: number; onlyIfAbsent?: boolean } = {}): Promise<boolean> {
    return this.run('setValue', async () => {
      const k = this.k('kv', key);
      const args: (string | number)[] = [];
      if (opts.ttlMs !== undefined) args.push('PX', Math.max(1, Math.round(opts.ttlMs)));
      if (opts.onlyIfAbsent) args.push('NX');
      const r = await (this.cmd as Redis).set(k, value, ...(args as []));
      return r === 'OK';
    });
  }

  async getValue(key: string): Promise<string | null> {
    return this.run('getValue', async () => this.cmd.get(this.k('kv', key)));
  }

  async compareAndSetValue(key: string, expected: string, value: string, opts: { ttlMs?: number } = {}): Promise<boolean> {
    return this.run('compareAndSetValue', async () => {
      const ttl = opts.ttlMs === undefined ? '' : String(Math.max(1, Math.round(opts.ttlMs)));
      const r = await (this.cmd as unknown as { rgCompareAndSet(...a: string[]): Promise<number> }).rgCompareAndSet(this.k('kv', key), expected, value, ttl);
      return Number(r) === 1;
    });
  }

  async deleteValue(key: string): Promise<void> {
    await this.run('deleteValue', async () => {
      await this.cmd.del(this.k('kv', key));
    });
  }

  async putRecord(record: StoredRecord, opts: { unlessValue?: string | readonly string[]; expectState?: string } = {}): Promise<boolean> {
    return this.run('putRecord', () => this.recordsOf.put(record, unlessKeys(opts.unlessValue).map((v) => this.k('kv', v)), opts.expectState));
  }

  async getRecord(id: string): Promise<StoredRecord | null> {
    return this.run('getRecord', () => this.recordsOf.get(id));
  }

  async listRecords(filter: RecordFilter = {}): Promise<StoredRecord[]> {
    return (await this.listRecordsPage(filter)).records;
  }

  async listRecordsPage(filter: RecordFilter = {}): Promise<RecordPage> {
    // bad paging is the caller's error, said before run() (which would take it for Redis')
    const after = filter.cursor === undefined ? undefined : decodeCursor(filter.cursor);
    const limit = pageLimit(filter.limit);
    return this.run('listRecords', () => this.recordsOf.page({ ...filter, limit }, after));
  }

  async heldCount(): Promise<number> {
    return this.run('heldCount', () => this.recordsOf.heldCount());
  }

  async pruneRecords(before: number, keepStates: readonly string[]): Promise<number> {
    return this.run('pruneRecords', () => this.recordsOf.prune(before, keepStates));
  }

  async ping(): Promise<void> {
    await this.run('ping', async () => {
      await this.cmd.ping();
    });
  }

  async close(): Promise<void> {
    for (const c of [this.blocking, this.cmd, ...(this.waiter ? [this.waiter] : [])]) {
      // a connection gone silent never answers QUIT: closed without it past the command timeout
      try {
        await withTimeout(c.quit(), this.commandTimeoutMs);
      } catch {
        c.disconnect();
      }
    }
  }
}

/** KEYS[1]: the key; ARGV[1]: expected value; ARGV[2]: new value; ARGV[3]: TTL ms, or '' to keep the key's TTL. */
const COMPARE_AND_SET_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`;

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
