import { Cluster, Redis, ReplyError, type RedisOptions } from 'ioredis';
import type { IntakeItem, IntakeResult, Lock, QueuedEvent, RecordFilter, Store, StoredRecord } from './store.js';
import { StoreUnavailableError } from './store.js';

type Client = Redis | Cluster;

/*
 * Key layout. Every key carries the hash tag {PREFIX}, so that on Redis Cluster they all live in one
 * slot and the Lua scripts (multi-key) are allowed. The queue is a stream with one consumer group
 * shared by all replicas; acked entries are deleted, so XLEN is the queue depth.
 */
const GROUP = 'engine';

const INTAKE_LUA = `
-- KEYS[1]: stream; KEYS[2..]: dedupe keys; ARGV[1]: ttl ms; ARGV[2..]: payloads
local queued = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[1]) then
    redis.call('XADD', KEYS[1], '*', 'a', ARGV[i])
    queued = queued + 1
  end
end
return queued`;

const LOCK_ACQUIRE_LUA = `
-- KEYS[1]: lock; KEYS[2]: fence counter; ARGV[1]: owner; ARGV[2]: ttl ms
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token`;

const LOCK_RENEW_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

const LOCK_RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** Reply errors that mean "the store is not usable right now", not "the command was wrong". */
const TRANSIENT_REPLY = /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY|NOREPLICAS|MISCONF)/;

export interface RedisStoreOptions {
  url: string;
  prefix?: string;
  commandTimeoutMs?: number;
  /** called with each connection state change, for logs */
  onEvent?: (event: string, detail?: unknown) => void;
}

/** Builds an ioredis client from redis://, rediss://, redis-sentinel:// or redis-cluster:// URLs. */
export function createRedisClient(url: string, extra: RedisOptions): Client {
  // URL() cannot parse several host:port pairs, so multi-host schemes are split by hand.
  const m = /^([a-z-]+):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)(?:\/([^?#]*))?/.exec(url);
  if (!m) throw new Error(`cannot parse Redis URL ${JSON.stringify(url.replace(/:[^:@/]*@/, ':***@'))}`);
  const [, scheme, user, pass, authority, path] = m;
  const hosts = authority!.split(',').map((hp) => {
    const i = hp.lastIndexOf(':');
    return i < 0 ? { host: hp, port: 6379 } : { host: hp.slice(0, i) || '127.0.0.1', port: Number(hp.slice(i + 1)) };
  });
  const password = pass ? decodeURIComponent(pass) : undefined;
  const username = user ? decodeURIComponent(user) : undefined;
  if (scheme === 'redis-sentinel') {
    return new Redis({ ...extra, sentinels: hosts, name: path || 'mymaster', password, username, sentinelPassword: password });
  }
  if (scheme === 'redis-cluster') {
    return new Cluster(hosts, {
      redisOptions: { ...extra, password, username },
      enableOfflineQueue: extra.enableOfflineQueue ?? false,
      lazyConnect: extra.lazyConnect ?? false,
    });
  }
  return new Redis(url, extra);
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  private readonly cmd: Client;
  private readonly blocking: Client;
  private readonly p: string;
  private groupReady = false;

  constructor(private readonly opts: RedisStoreOptions) {
    const prefix = opts.prefix ?? 'rollguard';
    this.p = `{${prefix}}`;
    const base: RedisOptions = {
      // Fail fast instead of queueing commands while disconnected: intake must answer 503 at once.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs ?? 2000,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
      lazyConnect: false,
    };
    this.cmd = createRedisClient(opts.url, base);
    // Blocking reads get their own connection (a blocked connection serves nothing else).
    this.blocking = createRedisClient(opts.url, { ...base, commandTimeout: undefined });
    for (const c of [this.cmd, this.blocking]) {
      c.on('error', (err) => opts.onEvent?.('error', err));
      c.on('ready', () => opts.onEvent?.('ready'));
      c.on('end', () => opts.onEvent?.('end'));
    }
    this.cmd.defineCommand('rgIntake', { lua: INTAKE_LUA });
    this.cmd.defineCommand('rgLockAcquire', { lua: LOCK_ACQUIRE_LUA, numberOfKeys: 2 });
    this.cmd.defineCommand('rgLockRenew', { lua: LOCK_RENEW_LUA, numberOfKeys: 1 });
    this.cmd.defineCommand('rgLockRelease', { lua: LOCK_RELEASE_LUA, numberOfKeys: 1 });
  }

  private k(...parts: string[]): string {
    return [this.p, ...parts].join(':');
  }

  private get stream(): string {
    return this.k('queue');
  }

  /** Runs a store operation, turning connection-level failures into StoreUnavailableError. */
  private async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StoreUnavailableError) throw err;
      const isReply = err instanceof ReplyError;
      const msg = err instanceof Error ? err.message : String(err);
      if (isReply && /NOGROUP/.test(msg)) this.groupReady = false;
      if (!isReply || TRANSIENT_REPLY.test(msg) || /NOGROUP/.test(msg)) {
        throw new StoreUnavailableError(`redis ${op}: ${msg}`, { cause: err });
      }
      throw err;
    }
  }

  /** Resolves once both connections (commands, blocking reads) answer. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.ping();
        await this.run('ping', async () => {
          await this.blocking.ping();
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
    try {
      // '0': entries added before the group existed are consumed too.
      await this.cmd.xgroup('CREATE', this.stream, GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error && /BUSYGROUP/.test(err.message))) throw err;
    }
    this.groupReady = true;
  }

  async intake(items: IntakeItem[], dedupeTtlMs: number): Promise<IntakeResult> {
    if (items.length === 0) return { queued: 0, duplicates: 0 };
    return this.run('intake', async () => {
      const keys = items.map((i) => this.k('dedupe', i.key));
      const payloads = items.map((i) => JSON.stringify(i.alert));
      const queued = Number(
        await (this.cmd as unknown as { rgIntake(...a: (string | number)[]): Promise<number> }).rgIntake(
          keys.length + 1,
          this.stream,
          ...keys,
          String(Math.max(1, Math.round(dedupeTtlMs))),
          ...payloads,
        ),
      );
      return { queued, duplicates: items.length - queued };
    });
  }

  async consume(consumer: string, count: number, blockMs: number, claimIdleMs: number): Promise<QueuedEvent[]> {
    return this.run('consume', async () => {
      await this.ensureGroup();
      const claimed = (await this.cmd.xautoclaim(this.stream, GROUP, consumer, claimIdleMs, '0-0', 'COUNT', count)) as [
        string,
        ([string, string[]] | null)[],
        string[]?,
      ];
      const stale = claimed[1].filter((e): e is [string, string[]] => e !== null);
      if (stale.length > 0) {
        const ids = stale.map((e) => e[0]);
        const pending = (await this.cmd.xpending(this.stream, GROUP, ids[0]!, ids[ids.length - 1]!, ids.length * 4)) as [
          string,
          string,
          number,
          number,
        ][];
        const deliveries = new Map(pending.map((p) => [p[0], Number(p[3])]));
        return stale.map((e) => this.decode(e, deliveries.get(e[0]) ?? 2));
      }
      const args: (string | number)[] = ['GROUP', GROUP, consumer, 'COUNT', count];
      if (blockMs > 0) args.push('BLOCK', blockMs);
      args.push('STREAMS', this.stream, '>');
      const res = (await (this.blocking as unknown as { xreadgroup(...a: (string | number)[]): Promise<unknown> }).xreadgroup(...args)) as
        | [string, [string, string[]][]][]
        | null;
      if (!res) return [];
      return res.flatMap(([, entries]) => entries.map((e) => this.decode(e, 1)));
    });
  }

  private decode(e: [string, string[]], deliveries: number): QueuedEvent {
    const fields = e[1];
    const i = fields.indexOf('a');
    return { id: e[0], alert: JSON.parse(fields[i + 1] ?? 'null'), deliveries };
  }

  async ack(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.run('ack', async () => {
      await this.cmd.multi().xack(this.stream, GROUP, ...ids).xdel(this.stream, ...ids).exec();
    });
  }

  async queueDepth(): Promise<number> {
    return this.run('queueDepth', async () => Number(await this.cmd.xlen(this.stream)));
  }

  async acquireLock(name: string, owner: string, ttlMs: number): Promise<Lock | null> {
    return this.run('acquireLock', async () => {
      const token = await (this.cmd as unknown as { rgLockAcquire(...a: string[]): Promise<number | null> }).rgLockAcquire(
        this.k('lock', name),
        this.k('fence', name),
        owner,
        String(Math.round(ttlMs)),
      );
      return token === null ? null : { name, owner, token: Number(token) };
    });
  }

  async renewLock(lock: Lock, ttlMs: number): Promise<boolean> {
    return this.run('renewLock', async () => {
      const r = await (this.cmd as unknown as { rgLockRenew(...a: string[]): Promise<number> }).rgLockRenew(
        this.k('lock', lock.name),
        `${lock.owner}|${lock.token}`,
        String(Math.round(ttlMs)),
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

  async currentFence(name: string): Promise<number> {
    return this.run('currentFence', async () => Number((await this.cmd.get(this.k('fence', name))) ?? 0));
  }

  async addEvent(key: string, at: number, windowMs: number): Promise<void> {
    await this.run('addEvent', async () => {
      const k = this.k('events', key);
      const member = `${at}-${Math.random().toString(36).slice(2)}`;
      await this.cmd
        .multi()
        .zadd(k, at, member)
        .zremrangebyscore(k, '-inf', `(${at - windowMs}`)
        .pexpire(k, Math.max(1, Math.round(windowMs)))
        .exec();
    });
  }

  async countEvents(key: string, since: number): Promise<number> {
    return this.run('countEvents', async () => Number(await this.cmd.zcount(this.k('events', key), since, '+inf')));
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

  async deleteValue(key: string): Promise<void> {
    await this.run('deleteValue', async () => {
      await this.cmd.del(this.k('kv', key));
    });
  }

  async putRecord(record: StoredRecord): Promise<void> {
    await this.run('putRecord', async () => {
      await this.cmd
        .multi()
        .hset(this.k('records'), record.id, JSON.stringify(record))
        .zadd(this.k('records', 'by-time'), record.createdAt, record.id)
        .exec();
    });
  }

  async getRecord(id: string): Promise<StoredRecord | null> {
    return this.run('getRecord', async () => {
      const s = await this.cmd.hget(this.k('records'), id);
      return s ? (JSON.parse(s) as StoredRecord) : null;
    });
  }

  async listRecords(filter: RecordFilter = {}): Promise<StoredRecord[]> {
    return this.run('listRecords', async () => {
      const limit = filter.limit ?? 100;
      const out: StoredRecord[] = [];
      const page = 500;
      for (let start = 0; out.length < limit; start += page) {
        const ids = await this.cmd.zrevrange(this.k('records', 'by-time'), start, start + page - 1);
        if (ids.length === 0) break;
        const values = await this.cmd.hmget(this.k('records'), ...ids);
        for (const v of values) {
          if (!v) continue;
          const r = JSON.parse(v) as StoredRecord;
          if (filter.target !== undefined && r.target !== filter.target) continue;
          if (filter.state !== undefined && r.state !== filter.state) continue;
          out.push(r);
          if (out.length >= limit) break;
        }
      }
      return out;
    });
  }

  async pruneRecords(before: number, keepStates: readonly string[]): Promise<number> {
    return this.run('pruneRecords', async () => {
      let n = 0;
      for (;;) {
        const ids = await this.cmd.zrangebyscore(this.k('records', 'by-time'), '-inf', `(${before}`, 'LIMIT', 0, 500);
        if (ids.length === 0) return n;
        const values = await this.cmd.hmget(this.k('records'), ...ids);
        const drop = ids.filter((id, i) => {
          const v = values[i];
          return !v || !keepStates.includes((JSON.parse(v) as StoredRecord).state);
        });
        if (drop.length > 0) {
          await this.cmd.multi().hdel(this.k('records'), ...drop).zrem(this.k('records', 'by-time'), ...drop).exec();
          n += drop.length;
        }
        if (drop.length < ids.length) return n; // the rest are kept (open): stop, they stay oldest
      }
    });
  }

  async ping(): Promise<void> {
    await this.run('ping', async () => {
      await this.cmd.ping();
    });
  }

  async close(): Promise<void> {
    for (const c of [this.blocking, this.cmd]) {
      try {
        await c.quit();
      } catch {
        c.disconnect();
      }
    }
  }
}
