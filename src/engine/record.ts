import { randomUUID } from 'node:crypto';
import type { TargetRef } from '../actions/action.js';
import type { GitOpsRecord } from '../gitops/types.js';
import type { BlockCause } from '../guards/guard.js';
import type { MigrationRecord } from '../migrations/types.js';
import { newestFirst } from '../store/cursor.js';
import { keyDigest, sha256Hex } from '../store/keys.js';
import type { RecordFilter, Store, StoredRecord } from '../store/store.js';
import type { Chain } from './chain.js';
import { withoutWrittenValues, type PlanSummary } from './change.js';

/** Where a rollback stands. Terminal states never change again (except `resolved` times). */
export const STATES = [
  'deciding',
  'held', // Prometheus down and the rule holds: retried at dueAt
  'scheduled', // SLO-at-risk re-check, or a maintenance window: run at dueAt
  'pending_approval',
  'in_progress',
  'not_confirmed',
  'notified',
  'blocked',
  'refused',
  'dry_run',
  'succeeded',
  'failed',
  'unverified',
  'interrupted',
  'rejected',
  'expired',
  'error',
] as const;
export type RollbackState = (typeof STATES)[number];

export const OPEN_STATES: readonly RollbackState[] = ['deciding', 'held', 'scheduled', 'pending_approval', 'in_progress'];
/** Closed states of records that changed nothing: kept RECORD_RETENTION_NO_ACTION, and the first to go over a store's record cap. */
export const NO_ACTION_STATES: readonly RollbackState[] = ['not_confirmed', 'blocked', 'refused', 'error', 'dry_run'];

/**
 * What a record holds in the cluster that only it can undo (the stores' Holding): the GitOps owners
 * it left suspended, until `resume-gitops` puts them back. Such a record is kept past
 * RECORD_RETENTION(_NO_ACTION) and every record cap, whatever its state: it alone says what to put
 * back. rollguard_gitops_suspended is the sum over every record. createStore gives it to the stores
 * (they judge each record by it, records written before this version included: Redis on first
 * use); RecordBook.save also writes it to the record's `holds`, which a store built without it
 * (the tests' doubles, `rollguard replay`'s) reads by default, and which a reader of the record sees.
 */
export function heldByRecord(rec: StoredRecord): number {
  const g = (rec as Partial<Pick<RollbackRecord, 'gitops'>>).gitops;
  return g?.suspended?.length && !g.resumed ? g.suspended.length : 0;
}

export interface TimelineEntry {
  at: number;
  step: string;
  message: string;
  data?: Record<string, unknown>;
}

export interface GuardVerdict {
  guard: string;
  result: 'allow' | 'block' | 'wait' | 'later';
  reason: string;
  /** a block's cause, where a reader acts on it (BlockCause: the recent-deploy guard's); absent on other blocks and on records written before it existed */
  because?: BlockCause;
}

/** One rollback (or a decision not to roll back), with everything that happened to it. */
export interface RollbackRecord extends StoredRecord {
  id: string;
  /** Kind/namespace/name */
  target: string;
  state: RollbackState;
  createdAt: number;
  updatedAt: number;
  ref: TargetRef;
  /** drill: an alert about a target while a rollback drill runs on it (src/drills/); dashboards tell drills from incidents by it */
  source: 'alert' | 'manual' | 'drill';
  /** source drill: the drill whose fault raised the alert */
  drill?: string;
  rule?: string;
  priority?: string;
  /** the alert that caused it */
  alert?: {
    fingerprint: string;
    status: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    startsAt: number;
    receivedAt: number;
    generatorURL: string;
  };
  /** manual rollbacks: who asked and why */
  requestedBy?: string;
  reason?: string;
  /** busy: prometheus_down because rollguard got no turn to ask Prometheus (PROMETHEUS_MAX_CONCURRENT), see engine/confirm.ts */
  /**
   * rolloutStartedAt: the rollout start a baseline relativeTo rollout_start was read before (the
   * revision rolled back from): the recovery check after the rollback compares with the same baseline
   */
  confirmation?: { outcome: string; reason: string; busy?: true; query?: string; value?: number; limit?: number; rolloutStartedAt?: number };
  decision?: { decision: string; reason: string; at?: number; requiresApproval?: boolean };
  /** what the rollback changes, summarised (paths, images, template hashes: change.ts), never the values written */
  plan?: PlanSummary;
  guards: GuardVerdict[];
  dryRun: boolean;
  /**
   * A human's answer. `revisions`: those of the plan the approval was asked on (what the human saw):
   * an approved rollback whose plan goes from or to another revision when it runs is asked again
   * (guards/approval.ts). Absent on records approved before 2026-12-08, and on kinds without revisions.
   */
  approval?: { by: string; at: number; decision: 'approved' | 'rejected'; comment?: string; revisions?: ApprovedRevisions };
  /** when a held/scheduled/pending rollback is looked at again (or expires) */
  dueAt?: number;
  /** when the rollback was first held, in its current hold (HOLD_MAX_AGE counts from it) */
  heldSince?: number;
  /** first found its target's lock held by a rollback that had not executed yet: re-checked until 2 × LOCK_TTL after this (the lock guard) */
  lockWaitSince?: number;
  /** the same for the locks of the other objects its plan writes (a Canary's stable Deployment), together: cleared once it holds every lock */
  writeLockWaitSince?: number;
  /** an SLO-at-risk rule's first look found its trigger true: every later look is its re-check (scheduler.ts pastFirstLook) */
  firstLookAt?: number;
  /** times the API server answered a retriable error (5xx, 429, no answer) before any cluster write (rollback.ts) */
  kubeRetries?: number;
  /** replica and fencing token of the execution */
  owner?: string;
  lockToken?: number;
  outcome?: { result: string; message: string; details?: Record<string, unknown> };
  /** who reconciles the target (Argo CD, Flux), the rule's policy, what was suspended and resumed */
  gitops?: GitOpsRecord;
  /** the migration rollback Job run before the workload write: its name and outcome (src/migrations/) */
  migration?: MigrationRecord;
  /** one target of a rule's ordered list: its place, and every target with its record (chain.ts) */
  chain?: Chain;
  /** the incident clock: time to detect, to decide, to roll back and to recover are derived from these */
  times: {
    alertStartedAt?: number;
    receivedAt?: number;
    decidedAt?: number;
    startedAt?: number;
    executedAt?: number;
    completedAt?: number;
    verifiedAt?: number;
    resolvedAt?: number;
  };
  timeline: TimelineEntry[];
}

export function targetKey(ref: Pick<TargetRef, 'kind' | 'namespace' | 'name'>): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}

/**
 * The id of the rollback an alert asks for: the same alert (fingerprint, startsAt) and rule on
 * the same target always map to the same record, on every replica and after any redelivery, so
 * an alert can never cause two rollbacks of one target.
 */
export function alertRecordId(rule: string, target: string, fingerprint: string, startsAt: number): string {
  const h = sha256Hex(`${rule}\u0000${target}\u0000${fingerprint}\u0000${startsAt}`);
  return `rb-${h.slice(0, 20)}`;
}

export function manualRecordId(): string {
  return `rb-m-${randomUUID().replaceAll('-', '').slice(0, 20)}`;
}

/** Reads and writes records; each change appends to the timeline and stamps updatedAt. */
export class RecordBook {
  constructor(
    private readonly store: Store,
    private readonly now: () => number,
  ) {}

  async get(id: string): Promise<RollbackRecord | null> {
    return read(await this.store.getRecord(id));
  }

  async list(filter: { target?: string; state?: string; limit?: number }): Promise<RollbackRecord[]> {
    return (await this.store.listRecords(filter)).map((r) => read(r)!);
  }

  /**
   * The open records of a target (OPEN_STATES), newest first, at most `limit` of each state. Read
   * from the indexes of the target and of each open state (the smaller of the two each time), so
   * the target's closed records, however many and however new (an alert flood's not_confirmed),
   * never hide an older open one, nor are they read.
   */
  async openOf(target: string, limit: number): Promise<RollbackRecord[]> {
    return this.inStates(target, OPEN_STATES, limit);
  }

  /** The records of a target in each of `states`, newest first, at most `limit` of each, each read from the smaller of the target's and the state's index. */
  async inStates(target: string, states: readonly RollbackState[], limit: number): Promise<RollbackRecord[]> {
    const lists = await Promise.all(states.map((state) => this.list({ target, state, limit })));
    return lists.flat().sort(newestFirst);
  }

  /** One page, newest first, and the cursor of the next (null on the last page). */
  async page(filter: RecordFilter): Promise<{ records: RollbackRecord[]; nextCursor: string | null }> {
    const p = await this.store.listRecordsPage(filter);
    return { records: p.records.map((r) => read(r)!), nextCursor: p.nextCursor };
  }

  /**
   * Every record in one state, page by page (the state's index only): the scheduler's way to see
   * all due work, so that more than one page of held or in-progress records never starves the oldest.
   */
  async *inState(state: RollbackState, pageSize = 100): AsyncGenerator<RollbackRecord> {
    let cursor: string | undefined;
    for (;;) {
      const p = await this.page({ state, limit: pageSize, ...(cursor !== undefined ? { cursor } : {}) });
      yield* p.records;
      if (p.nextCursor === null) return;
      cursor = p.nextCursor;
    }
  }

  step(rec: RollbackRecord, step: string, message: string, data?: Record<string, unknown>): void {
    const e: TimelineEntry = { at: this.now(), step, message };
    if (data) e.data = data;
    rec.timeline.push(e);
  }

  /**
   * Writes the record. Two things other replicas write are kept in keys of their own (marks) and
   * merged here, so a replica saving an older copy of the record never erases them: the alert's
   * resolution (written by whichever replica handled the resolved alert), and a `resume-gitops`
   * (written by the replica that took the request, while this copy still holds the suspension: a
   * close saving the record again after its notification, moments after a human resumed). The store
   * writes the record only while neither mark is set (one atomic step, one round trip); when one is,
   * it is merged and the record written again. `first`: the record's first write (its write-ahead):
   * nothing can have marked a record that was never written (a resolution is marked on the records
   * found through the alert's links), so no check. Until 2026-12-07 a resume landing between a
   * close's two writes was erased by the second: the record held the owner again.
   *
   * `expectState`: a transition that may race with another replica's (out of pending_approval:
   * approve, reject, expiry): written only while the stored record is still in that state, in the
   * same atomic step as the write. Returns false when it was not (another transition won; nothing
   * written); true otherwise, and always without expectState.
   */
  async save(rec: RollbackRecord, opts?: { first?: boolean; expectState?: RollbackState }): Promise<boolean> {
    rec.updatedAt = this.now();
    this.setHolds(rec);
    const expect = opts?.expectState !== undefined ? { expectState: opts.expectState } : {};
    const marks = opts?.first === true ? [] : [...(rec.times.resolvedAt === undefined ? [resolvedMark(rec.id)] : []), ...(rec.holds ? [resumedMark(rec.id)] : [])];
    if (marks.length === 0) return this.store.putRecord(rec, expect);
    if (await this.store.putRecord(rec, { unlessValue: marks, ...expect })) return true;
    // refused by a mark, or (expectState) by the stored state: merged if marked, then written
    // again with the state check alone, which refuses it again only if the state differs
    const [resolved, resumed] = await Promise.all([
      rec.times.resolvedAt === undefined ? this.store.getValue(resolvedMark(rec.id)) : null,
      rec.holds ? this.store.getValue(resumedMark(rec.id)) : null,
    ]);
    if (resolved !== null) {
      rec.times.resolvedAt = Number(resolved);
      if (!rec.timeline.some((e) => e.step === 'resolved')) {
        rec.timeline.push({ at: Number(resolved), step: 'resolved', message: `alert resolved at ${new Date(Number(resolved)).toISOString()}` });
      }
    }
    const m = resumed === null ? null : resumedMarkOf(resumed);
    if (m && rec.gitops && !rec.gitops.resumed) {
      rec.gitops.resumed = m.resumed;
      if (!rec.timeline.some((e) => e.step === m.step.step && e.at === m.step.at)) {
        // in its place by time: before the steps this copy took since (a close's notification)
        const i = rec.timeline.findIndex((e) => e.at > m.step.at);
        rec.timeline.splice(i < 0 ? rec.timeline.length : i, 0, m.step);
      }
      this.setHolds(rec);
    }
    return this.store.putRecord(rec, expect);
  }

  /** rec.holds: what the record holds (heldByRecord), the stores' index of held records. */
  private setHolds(rec: RollbackRecord): void {
    const holds = heldByRecord(rec);
    if (holds > 0) rec.holds = holds;
    else delete rec.holds;
  }

  /**
   * Notes that record `id`'s GitOps owners were resumed (`resumed`, said by timeline entry `step`),
   * before the record carrying them is saved (see save).
   */
  async markResumed(id: string, resumed: NonNullable<GitOpsRecord['resumed']>, step: TimelineEntry): Promise<void> {
    await this.store.setValue(resumedMark(id), JSON.stringify({ resumed, step }), { ttlMs: 30 * 86_400_000 });
  }

  /** Notes that the alert behind record `id` resolved at `at` (see save). */
  async markResolved(id: string, at: number): Promise<void> {
    await this.store.setValue(resolvedMark(id), String(at), { ttlMs: 30 * 86_400_000 });
  }

  /** The records an alert is linked to so far (linkAlert's read, which a caller may issue ahead). */
  async alertLinks(fingerprint: string, startsAt: number): Promise<string[]> {
    return JSON.parse((await this.store.getValue(alertRecordsKey(fingerprint, startsAt))) ?? '[]') as string[];
  }

  /**
   * Remembers which records an alert caused, so its resolution can be written to them. `known`:
   * alertLinks() read just before (only this alert's handler writes its links).
   */
  async linkAlert(fingerprint: string, startsAt: number, id: string, known?: string[]): Promise<void> {
    const ids = new Set(known ?? (await this.alertLinks(fingerprint, startsAt)));
    ids.add(id);
    await this.store.setValue(alertRecordsKey(fingerprint, startsAt), JSON.stringify([...ids]), { ttlMs: 7 * 86_400_000 });
  }

  async recordsOfAlert(fingerprint: string, startsAt: number): Promise<string[]> {
    // Links written by versions that named the key by the raw fingerprint are read too (they expire within 7 days).
    const [now, legacy] = await Promise.all([this.store.getValue(alertRecordsKey(fingerprint, startsAt)), this.store.getValue(`alert-records:${fingerprint}:${startsAt}`)]);
    return [...new Set([...(JSON.parse(now ?? '[]') as string[]), ...(JSON.parse(legacy ?? '[]') as string[])])];
  }
}

/** A resume mark's value (markResumed), or null when it is not one (never written by rollguard: ignored, not thrown on every save). */
function resumedMarkOf(v: string): { resumed: NonNullable<GitOpsRecord['resumed']>; step: TimelineEntry } | null {
  try {
    const m = JSON.parse(v) as { resumed?: { at?: unknown; by?: unknown; restored?: unknown }; step?: { at?: unknown; step?: unknown; message?: unknown } };
    const ok = typeof m.resumed?.at === 'number' && typeof m.resumed.by === 'string' && Array.isArray(m.resumed.restored) && typeof m.step?.at === 'number' && typeof m.step.step === 'string' && typeof m.step.message === 'string';
    return ok ? (m as { resumed: NonNullable<GitOpsRecord['resumed']>; step: TimelineEntry }) : null;
  } catch {
    return null;
  }
}

/** The marks save merges: the alert's resolution, and a resume-gitops. */
const resolvedMark = (id: string) => `resolved:${id}`;
const resumedMark = (id: string) => `gitops-resumed:${id}`;

/** The key of an alert's record list: the fingerprint is the sender's, so it is hashed (keyDigest). */
function alertRecordsKey(fingerprint: string, startsAt: number): string {
  return `alert-records:${keyDigest(`${fingerprint}:${startsAt}`)}`;
}

/** A stored record as the engine and the API read it (records of earlier versions lose the values their writes held). */
function read(r: StoredRecord | null): RollbackRecord | null {
  if (r === null) return null;
  const rec = r as RollbackRecord;
  withoutWrittenValues(rec.plan);
  return rec;
}

/** The revisions of the plan an approval was given on (RollbackRecord.approval.revisions). */
export interface ApprovedRevisions {
  fromRevision?: number;
  toRevision?: number;
}
