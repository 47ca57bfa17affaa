import type { IntakeItem, IntakeResult, Lock, QueuedEvent, RecordFilter, Store, StoredRecord } from './store.js';

interface Entry {
  id: string;
  payload: string;
  /** consumer holding it, if delivered and not acked */
  owner?: string;
  deliveredAt: number;
  deliveries: number;
}

/**
 * The embedded store: one process, one replica. Everything is kept in memory and lost on exit,
 * which is why shutdown drains the queue before closing (see main.ts).
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private seq = 0;
  private readonly entries = new Map<string, Entry>();
  private readonly waiters = new Set<() => void>();
  private readonly keys = new Map<string, { value: string; expiresAt: number }>();
  private readonly fences = new Map<string, number>();
  private readonly events = new Map<string, number[]>();
  private readonly records = new Map<string, StoredRecord>();
  private closed = false;

  constructor(private readonly now: () => number = Date.now) {}

  private alive(key: string): { value: string; expiresAt: number } | undefined {
    const v = this.keys.get(key);
    if (v && v.expiresAt <= this.now()) {
      this.keys.delete(key);
      return undefined;
    }
    return v;
  }

  private sweepExpired(): void {
    if (this.keys.size < 10_000) return;
    const now = this.now();
    for (const [k, v] of this.keys) if (v.expiresAt <= now) this.keys.delete(k);
  }

  async intake(items: IntakeItem[], dedupeTtlMs: number): Promise<IntakeResult> {
    this.sweepExpired();
    let queued = 0;
    for (const it of items) {
      const k = `dedupe:${it.key}`;
      if (this.alive(k)) continue;
      this.keys.set(k, { value: '1', expiresAt: this.now() + dedupeTtlMs });
      const id = `${this.now()}-${++this.seq}`;
      this.entries.set(id, { id, payload: JSON.stringify(it.alert), deliveredAt: 0, deliveries: 0 });
      queued++;
    }
    if (queued > 0) for (const w of [...this.waiters]) w();
    return { queued, duplicates: items.length - queued };
  }

  async consume(consumer: string, count: number, blockMs: number, claimIdleMs: number): Promise<QueuedEvent[]> {
    const take = (): QueuedEvent[] => {
      const now = this.now();
      const out: QueuedEvent[] = [];
      // stale entries of other (crashed) consumers first, then new ones
      for (const e of this.entries.values()) {
        if (out.length >= count) break;
        if (e.owner !== undefined && now - e.deliveredAt >= claimIdleMs) out.push(this.deliver(e, consumer, now));
      }
      for (const e of this.entries.values()) {
        if (out.length >= count) break;
        if (e.owner === undefined) out.push(this.deliver(e, consumer, now));
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
    return { id: e.id, alert: JSON.parse(e.payload), deliveries: e.deliveries };
  }

  async ack(ids: string[]): Promise<void> {
    for (const id of ids) this.entries.delete(id);
  }

  async queueDepth(): Promise<number> {
    return this.entries.size;
  }

  async acquireLock(name: string, owner: string, ttlMs: number): Promise<Lock | null> {
    const k = `lock:${name}`;
    if (this.alive(k)) return null;
    const token = (this.fences.get(name) ?? 0) + 1;
    this.fences.set(name, token);
    this.keys.set(k, { value: `${owner}|${token}`, expiresAt: this.now() + ttlMs });
    return { name, owner, token };
  }

  async renewLock(lock: Lock, ttlMs: number): Promise<boolean> {
    const k = `lock:${lock.name}`;
    const v = this.alive(k);
    if (!v || v.value !== `${lock.owner}|${lock.token}`) return false;
    v.expiresAt = this.now() + ttlMs;
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
    return this.fences.get(name) ?? 0;
  }

  async addEvent(key: string, at: number, windowMs: number): Promise<void> {
    const list = (this.events.get(key) ?? []).filter((t) => t > at - windowMs);
    list.push(at);
    this.events.set(key, list);
  }

  async countEvents(key: string, since: number): Promise<number> {
    return (this.events.get(key) ?? []).filter((t) => t >= since).length;
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

  async deleteValue(key: string): Promise<void> {
    this.keys.delete(`kv:${key}`);
  }

  async putRecord(record: StoredRecord): Promise<void> {
    this.records.set(record.id, structuredClone(record));
  }

  async getRecord(id: string): Promise<StoredRecord | null> {
    const r = this.records.get(id);
    return r ? structuredClone(r) : null;
  }

  async listRecords(filter: RecordFilter = {}): Promise<StoredRecord[]> {
    const limit = filter.limit ?? 100;
    return [...this.records.values()]
      .filter((r) => (filter.target === undefined || r.target === filter.target) && (filter.state === undefined || r.state === filter.state))
      .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1))
      .slice(0, limit)
      .map((r) => structuredClone(r));
  }

  async pruneRecords(before: number, keepStates: readonly string[]): Promise<number> {
    let n = 0;
    for (const [id, r] of this.records) {
      if (r.createdAt < before && !keepStates.includes(r.state)) {
        this.records.delete(id);
        n++;
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
