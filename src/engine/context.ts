import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import type { Action, ActionContext, TargetKind, TargetRef } from '../actions/action.js';
import type { Config } from '../config.js';
import type { SlotHold } from '../guards/concurrency.js';
import { objectKey } from '../guards/guard.js';
import { checkFence, replicatedBeforeWriting } from '../guards/lock.js';
import { outOfScope } from '../guards/scope.js';
import type { Kube } from '../kube/kube.js';
import { elapsedSeconds, namespaceLabel, type Metrics } from '../metrics.js';
import type { Notification, Notifications } from '../notify/notifier.js';
import type { PrometheusApi } from '../prometheus/client.js';
import type { RuleSet } from '../rules/ruleset.js';
import { guardsSchema, type Guards, type Rule } from '../rules/schema.js';
import { laneOf, type Lock, type Store } from '../store/store.js';
import type { Precedence } from '../turns.js';
import { chainGoesOn, prepareNext } from './chain.js';
import { changeCause, type Message } from './messages.js';
import { RecordBook, targetKey, type RollbackRecord, type RollbackState } from './record.js';
import { formatTarget, resolveTargets, TargetResolutionError } from '../rules/targets.js';
import { canonicalJson } from '../canonical-json.js';

export interface EngineDeps {
  config: Config;
  store: Store;
  metrics: Metrics;
  logger: Logger;
  /** the rules in force (swapped whole on reload) */
  rules: { readonly rules: RuleSet };
  prometheus: PrometheusApi | null;
  kube: Kube | null;
  actions: Partial<Record<TargetKind, Action>>;
  notifications: Notifications;
  /** this replica's name (queue consumer, lock owner) */
  owner: string;
  now?: () => number;
}

export interface ManualRequest {
  ref: TargetRef;
  reason: string;
  requestedBy: string;
  dryRun?: boolean;
}

/** What a rollback stopped by a store failure held when it stopped (EngineContext.leftBehind), and when. */
export interface LeftBehind {
  locks: Lock[];
  slot?: SlotHold;
  at: number;
  /** attempts stopped by the store in a row, and when the next may start: at the next tick, then 2 s, doubling, at most 2 × LOCK_TTL */
  tries: number;
  nextAt: number;
  /** a close's notification held back because the close's answer was lost: sent once the record shows it landed */
  unsent?: { state: RollbackState; at: number; send: () => void };
}

/**
 * Record ids in hand in this process, counted: a delivery, an approval, a chain's start and the
 * scheduler may each hold one id at once, and each gives back only its own hold (a Set would let
 * the first to end drop the mark while another still runs).
 */
export class InHand {
  private readonly n = new Map<string, number>();
  has(id: string): boolean {
    return this.n.has(id);
  }
  add(id: string): void {
    this.n.set(id, (this.n.get(id) ?? 0) + 1);
  }
  delete(id: string): void {
    const left = (this.n.get(id) ?? 0) - 1;
    if (left > 0) this.n.set(id, left);
    else this.n.delete(id);
  }
}

/** The guard settings of a rollback without a rule (manual), or whose rule is no longer loaded. */
export const DEFAULT_GUARDS: Guards = guardsSchema.parse({});

const DEAD_ESCALATED_MAX = 10_000;

/** Ids remembered up to `max`, the oldest forgotten first. */
export class RecentIds {
  private readonly ids = new Set<string>();
  constructor(private readonly max: number) {}
  /** True when `id` was not remembered (it is now). */
  add(id: string): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value!);
    return true;
  }
}

/**
 * What every stage of the engine shares (intake, evaluate, rollback, verify, scheduler, requests):
 * the dependencies, the record book, this process's bookkeeping of what it is running, and the
 * few steps every stage ends with (notify, finish). Each stage is a file of functions taking this
 * context, as Alertmanager's notify pipeline stages share one context.
 */
export class EngineContext {
  readonly config: Config;
  readonly store: Store;
  readonly metrics: Metrics;
  readonly prometheus: PrometheusApi | null;
  readonly actions: Partial<Record<TargetKind, Action>>;
  /** this replica's name (queue consumer, lock owner) */
  readonly owner: string;
  readonly now: () => number;
  readonly log: Logger;
  readonly records: RecordBook;
  /** aborted by stop(): actions stop waiting, verification hands its record over */
  readonly abort = new AbortController();
  /** rollbacks running in this process (manual and approved ones run in the background) */
  readonly running = new Set<Promise<unknown>>();
  /** records this process is deciding right now; one of ours left 'deciding' and not in here was stopped by a failure */
  readonly decidingHere = new InHand();
  /**
   * Records a rollback of this process left deciding after a store failure before any cluster
   * write (rollback.ts), with what its attempt held (its locks, its slot), which the store may
   * have been too far gone to take back: the scheduler gives them back (each lock only while still
   * held under its own token) and decides the record again at its next tick (scheduler.ts).
   */
  readonly leftBehind = new Map<string, LeftBehind>();
  /** claims this process failed to give up while the store was down, retried in the background; tryClaim() cancels them (claim.ts) */
  readonly releasing = new Map<string, { cancelled: boolean }>();
  /** dead-lettered events this process escalated (dead.ts): each once, however often it comes back; the newest DEAD_ESCALATED_MAX */
  readonly deadEscalated = new RecentIds(DEAD_ESCALATED_MAX);
  /** namespaces where a plan found its target: the only ones metrics name when SCOPE_NAMESPACES is unset (metrics.ts namespaceLabel) */
  readonly knownNamespaces = new Set<string>();

  constructor(private readonly deps: EngineDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.metrics = deps.metrics;
    this.prometheus = deps.prometheus;
    this.actions = deps.actions;
    this.owner = deps.owner;
    this.now = deps.now ?? Date.now;
    this.log = deps.logger.child({ component: 'engine' });
    this.records = new RecordBook(deps.store, this.now);
    // Every wait of a rollback in flight (a verification polling its rollout: sleep() in
    // rollout-status.ts) listens on this one signal and stops listening when it ends; with more
    // than ten verifications at once Node would warn of a leak (MaxListenersExceededWarning).
    setMaxListeners(0, this.abort.signal);
  }

  get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  /** The rules in force now (a reload swaps them). */
  get rules(): RuleSet {
    return this.deps.rules.rules;
  }

  /** The rule a record came from, if it is still loaded. */
  ruleFor(rec: RollbackRecord): Rule | undefined {
    return rec.rule ? this.rules.get(rec.rule) : undefined;
  }

  /**
   * Why nothing may be rolled back any more for a record of a rule: the rule is not loaded now (a
   * reload removed or renamed it), or no longer resolves the record's target for its alert (a
   * reload changed its targets), or rolls it back otherwise (its kind's options, or the revision it
   * pins, changed). Undefined for a loaded rule's record of its target, and a manual one. A held or
   * scheduled re-check, an approval given, an ordered chain's next target and a record taken up
   * after its replica died all close it `expired` on this, rather than run on the default guards.
   *
   * `adopt`: the record is decided afresh from its trigger (a held or scheduled re-check, one
   * taken up undecided): a target the rule still names but rolls back otherwise is taken as the
   * rule names it now (a step on the timeline says so), as a new alert would be. Its record id
   * names only the target, so closing it would leave the alert, still firing, never acted on. A
   * record the lock guard sent back keeps the revision its rule pins (only a step back's is
   * dropped: rollback.ts), so a rule no reload changed is never taken as retargeted.
   */
  ruleGone(rec: RollbackRecord, o: { adopt?: boolean } = {}): string | undefined {
    if (rec.rule === undefined) return undefined;
    const rule = this.rules.get(rec.rule);
    if (!rule) return `rule ${rec.rule} is no longer loaded (a reload removed or renamed it): nothing is rolled back on its behalf`;
    if (!rec.alert) return undefined;
    // its targets changed (a bad commit's target fixed): the record's target is what the rule said then
    let refs: TargetRef[];
    try {
      refs = resolveTargets(rule.targets, rec.alert.labels);
    } catch (e) {
      if (!(e instanceof TargetResolutionError)) throw e;
      return `rule ${rec.rule} as reloaded names no target for this alert (${e.message}): nothing is rolled back on its behalf`;
    }
    const now = refs.find((r) => targetKey(r) === targetKey(rec.ref));
    if (!now) return `rule ${rec.rule} as reloaded no longer targets ${formatTarget(rec.ref)} for this alert (now ${refs.map(formatTarget).join(', ')}): nothing is rolled back on its behalf`;
    const same = sameRollback(now, rec.ref, steppedBack(rec));
    if (same && !o.adopt) return undefined;
    if (o.adopt) {
      if (!same) this.records.step(rec, 'retargeted', `rule ${rec.rule} as reloaded rolls back ${targetKey(rec.ref)} as ${formatTarget(now)} (was ${formatTarget(rec.ref)}): decided on that`);
      // the rule's revision, or none (a step back's pin is chosen again from the cooldown as it is then)
      rec.ref = now;
      return undefined;
    }
    return `rule ${rec.rule} as reloaded rolls back ${rec.ref.kind} ${rec.ref.namespace}/${rec.ref.name} otherwise for this alert (now ${formatTarget(now)}, was ${formatTarget(rec.ref)}): nothing is rolled back on its behalf`;
  }

  /** The guard settings of a record's rule, or the defaults (manual rollbacks; a rule no longer loaded, for a rollback already written). */
  settingsFor(rec: RollbackRecord): Guards {
    return this.ruleFor(rec)?.guards ?? DEFAULT_GUARDS;
  }

  /** Sends a message (messages.ts) about a record to every notifier and notes it in the timeline. */
  notify(rec: RollbackRecord, m: Message): void {
    this.notifyOnceWritten(rec, m)();
  }

  /** Sends a message outside any record's timeline (an alert the queue gave up on: dead.ts), linking `about` if given. */
  escalate(m: Message, about?: RollbackRecord): void {
    this.deps.notifications.emit(this.notification(m, about));
  }

  /**
   * notify() for a message that must go out only once the record's next write has landed (a close
   * that fails on the store is decided again, and must not say "blocked" each time): the timeline
   * step now, written with the record; the message when the returned function is called.
   */
  notifyOnceWritten(rec: RollbackRecord, m: Message): () => void {
    const n = this.notification(m, rec);
    this.records.step(rec, 'notified', `${m.kind}: ${m.title}`);
    return () => this.deps.notifications.emit(n);
  }

  private notification(m: Message, rec?: RollbackRecord): Notification {
    const n: Notification = { kind: m.kind, severity: m.severity, title: m.title, lines: m.lines.filter((l) => l !== ''), at: this.now() };
    if (!rec) return n;
    n.recordId = rec.id;
    n.target = rec.target;
    if (rec.rule) n.rule = rec.rule;
    if (this.config.EXTERNAL_URL) n.link = `${this.config.EXTERNAL_URL.replace(/\/$/, '')}/v1/rollbacks/${rec.id}/report`;
    return n;
  }

  /**
   * Closes a record in `state` with its outcome, and counts it. A record of an ordered chain whose
   * next target starts (chain.ts, chainGoesOn) first writes that target's record ahead, and starts
   * it once this one is closed; a chain that stops writes the rest blocked once the close landed.
   * `alongside`: store calls started together with the closing write, not after it (usually one
   * round trip on Redis), such as a rollback giving back the locks it took before it wrote anything
   * to the cluster; awaited with it (its failure is logged, and does not fail the close). No order
   * between the two is promised: on Redis the release may land before the record (the record's
   * save first awaits its index), so no reader may take a free lock to mean the record is closed.
   */
  async finish(rec: RollbackRecord, state: RollbackState, message: string, alongside?: () => Promise<void>): Promise<RollbackState> {
    await this.close(rec, state, message, { ...(alongside ? { alongside } : {}) });
    return state;
  }

  /**
   * Closes a record in `state` only if the stored record is still in `from` (one atomic write:
   * RecordBook.save's expectState), for a transition another replica may race (out of
   * pending_approval: a rejection or an expiry against an approval; a recovery's close). False when
   * another transition won: nothing written, counted or started (a next target written ahead is
   * left to the scheduler, which starts it once: its claim).
   */
  finishFrom(rec: RollbackRecord, from: RollbackState, state: RollbackState, message: string): Promise<boolean> {
    return this.close(rec, state, message, { expectState: from });
  }

  private async close(rec: RollbackRecord, state: RollbackState, message: string, opts: { alongside?: () => Promise<void>; expectState?: RollbackState }): Promise<boolean> {
    rec.state = state;
    rec.outcome = { result: state, message };
    delete rec.dueAt;
    this.records.step(rec, state === 'succeeded' ? 'verified' : 'ended', `${state}: ${message}`);
    // the next target to start is written ahead of the close; a chain that stops is written after it
    const ahead = rec.chain !== undefined && chainGoesOn(state);
    const next = ahead ? await prepareNext(this, rec, state) : undefined;
    const saving = this.records.save(rec, opts.expectState !== undefined ? { expectState: opts.expectState } : {});
    // started at once, beside the save; a throw or rejection is logged, never the save's outcome
    const alongside = opts.alongside;
    const beside = alongside && (async () => alongside())().catch((err: unknown) => this.log.warn({ err, record: rec.id }, 'what goes with the closing write failed'));
    let written: boolean;
    try {
      written = await saving;
    } catch (err) {
      next?.abandon();
      throw err;
    } finally {
      await beside;
    }
    if (!written) {
      next?.abandon();
      return false;
    }
    if (rec.chain && !ahead) {
      await prepareNext(this, rec, state).catch((err: unknown) => this.log.error({ err, record: rec.id }, "the record is closed, but its chain's next targets could not be written blocked"));
    }
    this.closed(rec, state, message);
    next?.start();
    return true;
  }

  /** Counts and logs a record just closed. */
  private closed(rec: RollbackRecord, state: RollbackState, message: string): void {
    this.metrics.rollbacks.inc({ rule: rec.rule ?? 'manual', namespace: namespaceLabel(rec.ref.namespace, this.config, this.knownNamespaces), kind: rec.ref.kind, outcome: state });
    this.log.info({ record: rec.id, target: rec.target, state, message }, 'rollback record closed');
  }

  /** Stamps the decision time (time to decide). */
  markDecided(rec: RollbackRecord): void {
    rec.times.decidedAt = this.now();
    if (rec.times.receivedAt !== undefined) this.metrics.timeToDecide.observe(elapsedSeconds(rec.times.receivedAt, rec.times.decidedAt));
  }

  /** Runs a rollback in the background of this process (idle() waits for it). */
  background(p: Promise<unknown>): void {
    const tracked = p.catch((err) => this.log.error({ err }, 'background rollback failed')).finally(() => this.running.delete(tracked));
    this.running.add(tracked);
  }

  /**
   * What an action is given: the cluster, the change cause, and the fence check against every lock
   * `locks()` holds (the target's and those of the other objects the plan writes).
   */
  actionContext(rec: RollbackRecord, locks: () => readonly Lock[], o: { recovering?: boolean; currentOnly?: boolean } = {}): ActionContext {
    const log = this.log;
    let logger: Logger | undefined;
    let replicated = false;
    return {
      // recovering: what the record keeps of its first plan's writes (a Canary goes on with its stable count)
      ...(o.recovering ? { recovering: true, ...(rec.plan?.writes ? { firstWrites: rec.plan.writes } : {}) } : {}),
      ...(o.currentOnly ? { currentOnly: true } : {}),
      kube: this.deps.kube,
      // made on first use: a rollback that ends before its action logs (dry run, a block) makes none
      get logger(): Logger {
        return (logger ??= log.child({ record: rec.id, target: rec.target }));
      },
      changeCause: changeCause(rec),
      signal: this.abort.signal,
      // its reads wait their turn (KUBE_MAX_CONCURRENT_READS) by the rule's priority, as its queries do
      ...precedenceOf(rec),
      // Before the first cluster write (an owner's suspension, a migration Job, the rollback's
      // own), what this rollback wrote to the store (claim, cooldown, budget, write-ahead) must be
      // on the replicas REDIS_MIN_REPLICAS_ACK asks for: a failover after the write cannot forget
      // the cooldown and let a second rollback through. Later writes do not wait again: failing
      // one for want of replicas would only leave the rollback half done.
      checkFence: async () => {
        await checkFence(this.store, locks(), this.config.LOCK_TTL);
        if (replicated) return;
        await replicatedBeforeWriting(this.store);
        replicated = true;
      },
      // what a plan finds without reading it (a Helm manifest's workloads) is not read outside scope
      outOfScope: (o) => outOfScope(this.config, objectKey(o), o.namespace),
      ...(this.config.CONFIG_CHECK_SECRETS ? {} : { checkSecrets: false }),
      ...(this.config.CONFIG_SNAPSHOTS && this.settingsFor(rec).configDrift === 'restore' ? { configRestore: { secrets: this.config.CONFIG_SNAPSHOTS_SECRETS } } : {}),
      ...(this.config.CONFIG_SNAPSHOTS && this.config.CONFIG_SNAPSHOTS_KEY ? { snapshotKey: this.config.CONFIG_SNAPSHOTS_KEY } : {}),
    };
  }
}

/**
 * A record's turn at the API server (src/turns.ts): its rule's priority lane. A human's rollback
 * (manual, no rule) leaves it unset: first in line (lane 0), but not in the places kept for P0
 * alerts' reads (P0_EXTRA_CALLS), which a stream of manual rollbacks would otherwise take from them.
 */
function precedenceOf(rec: RollbackRecord): { precedence?: Precedence } {
  if (rec.source === 'manual') return {};
  const p = rec.priority;
  return { precedence: laneOf(p === 'P0' || p === 'P1' || p === 'P2' ? p : undefined) };
}

/**
 * Whether `rec`, a record's target, is rolled back as `now`, what its rule resolves for the alert,
 * says: the kind's options alike (in any key order), and the revision: the rule's, or, one the
 * rule pins none, none or a step back's (`stepped`: rollback.ts). A revision the rule pinned and
 * a reload unpinned (it was the bad one) is not the same.
 */
function sameRollback(now: TargetRef, rec: TargetRef, stepped: boolean): boolean {
  if (now.toRevision !== undefined ? now.toRevision !== rec.toRevision : rec.toRevision !== undefined && !stepped) return false;
  return canonicalJson(now.options ?? {}) === canonicalJson(rec.options ?? {});
}

/**
 * Whether a record's pinned revision is a step back's, not its rule's: its last `step_back` step
 * names it, and no `retargeted` step came after (that took the rule's revision, which a step back
 * sent back by the lock guard may have named too: a reload unpinning it is then a change).
 */
function steppedBack(rec: RollbackRecord): boolean {
  const to = rec.ref.toRevision;
  if (to === undefined) return false;
  const last = rec.timeline.findLast((s) => s.step === 'step_back' || s.step === 'retargeted');
  return (
    last?.step === 'step_back' &&
    ((last.data as { toRevision?: unknown } | undefined)?.toRevision === to || last.message.endsWith(`stepping back to revision ${to}`))
  );
}
