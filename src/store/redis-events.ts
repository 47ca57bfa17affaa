import type { Client } from './redis-client.js';
import { RESERVE_EVENTS_LUA } from './redis-lua.js';
import type { EventLimit, HoldersWanted, Reservation } from './store.js';

/**
 * The Redis store's sliding windows (the budgets): one sorted set per key, scored by the event's
 * time, trimmed to the window on every write and expiring with it. Errors are turned into
 * StoreUnavailableError by the store that calls these.
 */
export class RedisEvents {
  constructor(
    private readonly cmd: Client,
    private readonly k: (...parts: string[]) => string,
  ) {
    cmd.defineCommand('rgReserveEvents', { lua: RESERVE_EVENTS_LUA });
  }

  private key(key: string): string {
    return this.k('events', key);
  }

  async add(key: string, at: number, windowMs: number): Promise<void> {
    const k = this.key(key);
    const member = `${at}-${Math.random().toString(36).slice(2)}`;
    await this.cmd
      .multi()
      .zadd(k, at, member)
      .zremrangebyscore(k, '-inf', `(${at - windowMs}`)
      .pexpire(k, Math.max(1, Math.round(windowMs)))
      .exec();
  }

  async count(key: string, since: number): Promise<number> {
    return Number(await this.cmd.zcount(this.key(key), since, '+inf'));
  }

  async members(key: string, since: number, limit: number): Promise<string[]> {
    if (limit <= 0) return [];
    return (await this.cmd.zrevrangebyscore(this.key(key), '+inf', since, 'LIMIT', 0, limit)).map(String);
  }

  /**
   * Every key checked and the member added to every key in one script (see RESERVE_EVENTS_LUA);
   * `record` false: checked only. A refusal names the refusing key's holders when asked for, read
   * in the same script.
   */
  async reserve(keys: readonly EventLimit[], member: string, at: number, windowMs: number, holders: HoldersWanted | undefined, record: boolean): Promise<Reservation> {
    if (keys.length === 0) return { reserved: true };
    const reply = (await (this.cmd as unknown as { rgReserveEvents(...a: (string | number)[]): Promise<(number | string)[]> }).rgReserveEvents(
      keys.length,
      ...keys.map((k) => this.key(k.key)),
      member,
      String(Math.round(at)),
      String(Math.max(1, Math.round(windowMs))),
      record ? '1' : '0',
      holders ? String(Math.round(holders.since)) : '',
      holders ? String(Math.max(0, Math.floor(holders.limit))) : '0',
      ...keys.map((k) => String(k.limit)),
    ));
    const [i, n, ...members] = reply;
    if (Number(i) === 0) return { reserved: true };
    const refused = { reserved: false as const, key: keys[Number(i) - 1]!.key, count: Number(n) };
    return holders ? { ...refused, holders: members.map(String) } : refused;
  }

  async release(keys: readonly string[], member: string): Promise<void> {
    if (keys.length === 0) return;
    const m = this.cmd.multi();
    for (const k of keys) m.zrem(this.key(k), member);
    await m.exec();
  }
}
