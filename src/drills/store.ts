// Drill records and the one-drill-per-target lock, in the shared Store (Redis or memory) under
// keys of their own: a drill is not a rollback, so GET /v1/rollbacks never lists one. The engine
// reads activeDrill() to mark the records of alerts raised during a drill `source: drill`.
import { randomUUID } from 'node:crypto';
import type { Lock, Store } from '../store/store.js';
import type { LinkName } from './links.js';
import type { DrillKind } from './workload.js';

/** running until the result is in and, for a drill that did not pass, the workload restored */
export type DrillState = 'running' | 'passed' | 'failed';

/** One link of the chain as the drill saw it: when it was first seen and what was seen. */
export interface LinkSeen {
  at: number;
  detail: string;
}

export interface DrillRecord {
  id: string;
  source: 'drill';
  /** Kind/namespace/name */
  target: string;
  ref: { kind: DrillKind; namespace: string; name: string };
  state: DrillState;
  /**
   * what the fault does, in words that may be recorded (never an env value), and the fingerprint of
   * the pod template it wrote (templateHash: the restore undoes only that template; records written
   * before 2026-12-07 have none)
   */
  fault: { kind: string; summary: string; templateHash?: string };
  requestedBy: string;
  /** the replica running the drill */
  owner: string;
  createdAt: number;
  updatedAt: number;
  /** from the fault to back on the pre-drill revision, healthy, trigger cleared */
  deadlineMs: number;
  /** whether the alert's arrival in Alertmanager is watched (ALERTMANAGER_URL set) */
  watchesAlertmanager: boolean;
  /** the workload before the fault: its revision, a fingerprint of its pod template, its images */
  before: { revision: number; templateHash: string; images: string[] };
  /** when the fault was written, and the revision it made once the controller numbered it */
  faultAt?: number;
  faultRevision?: number;
  /** each link of the chain, once seen (links.ts) */
  links: Partial<Record<LinkName, LinkSeen>>;
  /** what was seen last of the links not reached yet: the evidence a failure names */
  seen: Partial<Record<LinkName, string>>;
  /** rollguard's rollback record of the drill's alert */
  rollback?: string;
  result?: { passed: boolean; link?: LinkName; message: string; at: number };
  /** moved_on: the workload was on neither the pre-drill template nor the fault's (a release made during the drill): left as it is */
  restore?: { outcome: 'restored' | 'already_back' | 'moved_on' | 'failed'; message: string; at: number; revision?: number };
  timeline: Array<{ at: number; step: string; message: string }>;
}

const INDEX = 'drill:index';
/** how many drills GET /v1/drills can list (the newest); older records stay readable by id until retention */
export const INDEX_MAX = 500;
const recordKey = (id: string) => `drill:record:${id}`;
const activeKey = (target: string) => `drill:active:${target}`;
export const drillLockName = (target: string) => `drill:${target}`;

export function newDrillId(): string {
  return `dr-${randomUUID().replaceAll('-', '').slice(0, 20)}`;
}

/** The drill running on a target now (its id), or null. */
export async function activeDrill(store: Store, target: string): Promise<string | null> {
  return store.getValue(activeKey(target));
}

export class DrillStore {
  constructor(
    private readonly store: Store,
    /** how long a record is kept (RECORD_RETENTION) */
    private readonly retentionMs: number,
  ) {}

  async get(id: string): Promise<DrillRecord | null> {
    const v = await this.store.getValue(recordKey(id));
    return v === null ? null : (JSON.parse(v) as DrillRecord);
  }

  async put(rec: DrillRecord, now: number): Promise<void> {
    rec.updatedAt = now;
    await this.store.setValue(recordKey(rec.id), JSON.stringify(rec), { ttlMs: this.retentionMs });
  }

  /** Forgets a drill that never started (its fault was refused): nothing of it stays. */
  async forget(id: string): Promise<void> {
    await this.store.deleteValue(recordKey(id));
  }

  /**
   * Adds a drill to the listing, newest first. The index is one value read and written whole: a
   * writer checks its id is there afterwards and writes again if a concurrent writer (another
   * replica starting a drill on another target at the same moment) overwrote it.
   */
  async index(id: string): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const ids = await this.ids();
      if (ids.includes(id)) return;
      await this.store.setValue(INDEX, JSON.stringify([id, ...ids].slice(0, INDEX_MAX)), { ttlMs: this.retentionMs });
    }
  }

  private async ids(): Promise<string[]> {
    return JSON.parse((await this.store.getValue(INDEX)) ?? '[]') as string[];
  }

  /** Drills newest first (records past their retention are skipped). */
  async list(filter: { target?: string; state?: DrillState; limit?: number } = {}): Promise<DrillRecord[]> {
    const recs = await Promise.all((await this.ids()).map((id) => this.get(id)));
    return recs
      .filter((r): r is DrillRecord => r !== null && (!filter.target || r.target === filter.target) && (!filter.state || r.state === filter.state))
      .slice(0, filter.limit ?? INDEX_MAX);
  }

  /** One drill per target at a time, across replicas: the lock is renewed while the drill runs. */
  lock(target: string, owner: string, ttlMs: number): Promise<Lock | null> {
    return this.store.acquireLock(drillLockName(target), owner, ttlMs);
  }

  renew(lock: Lock, ttlMs: number): Promise<boolean> {
    return this.store.renewLock(lock, ttlMs);
  }

  async unlock(lock: Lock): Promise<void> {
    await this.store.releaseLock(lock).catch(() => false);
  }

  /** Marks `target` as drilled by `id` (the engine's activeDrill), for at most `ttlMs`. */
  async setActive(target: string, id: string, ttlMs: number): Promise<void> {
    await this.store.setValue(activeKey(target), id, { ttlMs });
  }

  async clearActive(target: string, id: string): Promise<void> {
    if ((await this.store.getValue(activeKey(target))) === id) await this.store.deleteValue(activeKey(target));
  }
}
