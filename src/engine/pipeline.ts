import type { Logger } from 'pino';
import type { Action, ActionContext, ExecuteResult, RollbackPlan, TargetKind, TargetRef } from '../actions/action.js';
import type { Alert } from '../alertmanager/alert.js';
import type { Config } from '../config.js';
import { spendBudget } from '../guards/budget.js';
import { cooldownKey, stepBackKey } from '../guards/cooldown.js';
import { GUARDS, type GuardContext } from '../guards/index.js';
import { fmtDuration } from '../guards/guard.js';
import { lockName } from '../guards/lock.js';
import type { Kube } from '../kube/client.js';
import type { Metrics } from '../metrics.js';
import type { Notification, Notifications } from '../notify/notifier.js';
import type { PrometheusApi } from '../prometheus/client.js';
import type { RuleSet } from '../rules/ruleset.js';
import { guardsSchema, type Guards, type Rule } from '../rules/schema.js';
import { resolveTargets, TargetResolutionError, type ResolvedTarget } from '../rules/targets.js';
import type { Lock, QueuedEvent, Store } from '../store/store.js';
import { confirmTrigger, type Confirmation } from './confirm.js';
import { decide, recordDecision } from './decide.js';
import { alertRecordId, manualRecordId, OPEN_STATES, RecordBook, targetKey, type RollbackRecord, type RollbackState } from './record.js';

export interface EngineDeps {
  config: Config;
  store: Store;
  metrics: Metrics;
  logger: Logger;
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

const DEFAULT_GUARDS: Guards = guardsSchema.parse({});

/**
 * The path of one alert from the queue to a finished rollback: match the rules, confirm the trigger
 * in Prometheus, decide (the seeds' tree), run the guards in their fixed order, execute, verify,
 * and record every step. Every rollback an alert asks for has a deterministic id, so redelivery
 * (another replica, a restart, an Alertmanager resend past the dedupe TTL) finds the same record
 * and never acts twice.
 */
export class Engine {
  readonly records: RecordBook;
  private readonly now: () => number;
  private readonly log: Logger;
  private stopped = false;
  private readonly abort = new AbortController();
  /** records whose verification the caller waits for (a rule's ordered list of targets) */
  private readonly awaitVerification = new Set<string>();
  private lastPrune = 0;
  /** rollbacks running in this process (manual and approved ones run in the background) */
  private readonly running = new Set<Promise<unknown>>();
  /** records this process is deciding right now; one of ours left 'deciding' and not in here was stopped by a failure */
  private readonly decidingHere = new Set<string>();

  constructor(private readonly d: EngineDeps) {
    this.now = d.now ?? Date.now;
    this.records = new RecordBook(d.store, this.now);
    this.log = d.logger.child({ component: 'engine' });
  }

  /** The queue worker's handler. Throws only when the event must be retried (store down). */
  async handle(ev: QueuedEvent): Promise<void> {
    const alert = ev.alert;
    const log = this.log.child({ fingerprint: alert.fingerprint, alertname: alert.labels.alertname, status: alert.status });
    if (alert.status === 'resolved') {
      await this.resolve(alert, log);
      return;
    }
    const rules = this.d.rules.rules.match(alert);
    if (rules.length === 0) {
      log.debug('no rule matches this alert');
      return;
    }
    for (const rule of rules) await this.handleRule(rule, alert, log.child({ rule: rule.name }));
  }

  private async handleRule(rule: Rule, alert: Alert, log: Logger): Promise<void> {
    let refs: TargetRef[];
    try {
      refs = resolveTargets(rule.targets, alert.labels).map(toRef);
    } catch (err) {
      if (!(err instanceof TargetResolutionError)) throw err;
      // Recorded (the alert asked for something we cannot name safely) and nothing is touched.
      const ref: TargetRef = { kind: rule.targets[0]?.kind ?? 'Deployment', namespace: '?', name: '?' };
      const id = alertRecordId(rule.name, 'unresolved', alert.fingerprint, alert.startsAt);
      if (await this.records.get(id)) return;
      const rec = this.newRecord(id, ref, { rule, alert });
      rec.target = `unresolved/${rule.name}`;
      this.records.step(rec, 'received', `alert ${alert.labels.alertname ?? ''} received`);
      await this.finish(rec, 'error', `target could not be resolved from the alert's labels: ${err.message}`);
      log.warn({ err: err.message }, 'target not resolved');
      return;
    }
    // A list of targets is rolled back in order; the chain stops at the first that does not roll back.
    let chainBroken: string | undefined;
    for (const ref of refs) {
      const id = alertRecordId(rule.name, targetKey(ref), alert.fingerprint, alert.startsAt);
      const existing = await this.records.get(id);
      if (existing) {
        log.info({ record: id, state: existing.state }, 'alert already handled for this target (redelivery): nothing more to do here');
        if (existing.state === 'in_progress') await this.recoverIfOrphaned(existing);
        if (!['succeeded', 'dry_run'].includes(existing.state)) chainBroken ??= existing.id;
        continue;
      }
      // Claim the record: only one replica ever evaluates one alert for one target. A replica that
      // finds it claimed but not yet written leaves the event queued and looks again later.
      // Our own claim without a record (the store failed right after the claim) is taken up again.
      if (!(await this.d.store.setValue(`claim:${id}`, this.d.owner, { onlyIfAbsent: true, ttlMs: 7 * 86_400_000 }))) {
        if ((await this.d.store.getValue(`claim:${id}`)) !== this.d.owner || this.decidingHere.has(id)) {
          throw new Error(`rollback ${id} is being evaluated by another replica; the event stays queued`);
        }
      }
      this.decidingHere.add(id);
      try {
        const rec = this.newRecord(id, ref, { rule, alert });
        rec.owner = this.d.owner;
        this.records.step(rec, 'alert_started', `alert ${alert.labels.alertname ?? ''} started firing`, { at: alert.startsAt });
        this.records.step(rec, 'received', `received from Alertmanager (receiver ${alert.receiver})`);
        await this.records.save(rec); // write-ahead: a replica dying from here on leaves a record to recover
        this.d.metrics.timeToDetect.observe(Math.max(0, alert.receivedAt - alert.startsAt) / 1000);
        await this.records.linkAlert(alert.fingerprint, alert.startsAt, id);
        if (chainBroken) {
          await this.finish(rec, 'blocked', `an earlier target of rule ${rule.name} did not roll back (${chainBroken}); the ordered chain stops there`);
          continue;
        }
        if (refs.length > 1) this.awaitVerification.add(id); // in order: each target verified before the next
        const state = await this.evaluate(rec, rule, false).finally(() => this.awaitVerification.delete(id));
        if (!['succeeded', 'dry_run', 'in_progress'].includes(state)) chainBroken = rec.id;
      } finally {
        this.decidingHere.delete(id);
      }
    }
  }

  private newRecord(id: string, ref: TargetRef, from: { rule?: Rule; alert?: Alert; manual?: ManualRequest }): RollbackRecord {
    const now = this.now();
    const rec: RollbackRecord = {
      id,
      target: targetKey(ref),
      state: 'deciding',
      createdAt: now,
      updatedAt: now,
      ref,
      source: from.manual ? 'manual' : 'alert',
      guards: [],
      dryRun: from.manual?.dryRun ?? false,
      times: {},
      timeline: [],
    };
    if (from.rule) {
      rec.rule = from.rule.name;
      rec.priority = from.rule.priority;
    }
    if (from.alert) {
      const a = from.alert;
      rec.alert = { fingerprint: a.fingerprint, status: a.status, labels: a.labels, annotations: a.annotations, startsAt: a.startsAt, receivedAt: a.receivedAt, generatorURL: a.generatorURL };
      rec.times.alertStartedAt = a.startsAt;
      rec.times.receivedAt = a.receivedAt;
    }
    if (from.manual) {
      rec.requestedBy = from.manual.requestedBy;
      rec.reason = from.manual.reason;
      rec.times.receivedAt = now;
    }
    return rec;
  }

  /** Confirm and decide, then act on the decision. `recheck`: the delayed look of an SLO-at-risk rule. */
  private async evaluate(rec: RollbackRecord, rule: Rule, recheck: boolean): Promise<RollbackState> {
    const now = this.now();
    const confirmation = await this.confirm(rule, rec);
    rec.confirmation = { outcome: confirmation.outcome, reason: confirmation.reason };
    if (confirmation.query !== undefined) rec.confirmation.query = confirmation.query;
    if (confirmation.value !== undefined) rec.confirmation.value = confirmation.value;
    if (confirmation.limit !== undefined) rec.confirmation.limit = confirmation.limit;
    this.records.step(rec, 'confirmed', `${confirmation.outcome}: ${confirmation.reason}`, { query: confirmation.query, value: confirmation.value, limit: confirmation.limit });

    const d = decide({ rule, alert: { status: 'firing' }, confirmation, now, recheck });
    recordDecision(this.d.metrics, rule, d);
    rec.decision = { decision: d.decision, reason: d.reason };
    if (d.at !== undefined) rec.decision.at = d.at;
    if (d.requiresApproval) rec.decision.requiresApproval = true;
    this.records.step(rec, 'decided', `${d.decision}: ${d.reason}`);

    switch (d.decision) {
      case 'no_action':
        return this.finish(rec, 'not_confirmed', d.reason);
      case 'notify_only':
        this.markDecided(rec);
        this.notify(rec, 'notify_only', 'warning', `${rule.priority} alert on ${rec.target}: hotfix forward, no rollback`, [d.reason]);
        return this.finish(rec, 'notified', d.reason);
      case 'hold':
      case 'recheck_later':
      case 'scheduled':
        rec.state = d.decision === 'hold' ? 'held' : 'scheduled';
        rec.dueAt = d.at ?? now;
        await this.records.save(rec);
        return rec.state;
      case 'rollback_now':
        this.markDecided(rec);
        return this.rollback(rec, rule.guards);
    }
  }

  private markDecided(rec: RollbackRecord): void {
    rec.times.decidedAt = this.now();
    if (rec.times.receivedAt !== undefined) this.d.metrics.timeToDecide.observe((rec.times.decidedAt - rec.times.receivedAt) / 1000);
  }

  private async confirm(rule: Rule, rec: RollbackRecord): Promise<Confirmation> {
    const now = this.now();
    if (!this.d.prometheus) {
      return {
        rule: rule.name,
        outcome: 'prometheus_down',
        reason: 'no Prometheus configured (PROMETHEUS_URL)',
        onPrometheusDown: rule.onPrometheusDown,
        evaluatedAt: now,
        window: { startMs: now - rule.trigger.forMs, endMs: now, stepMs: rule.trigger.stepMs },
      };
    }
    const input: Parameters<typeof confirmTrigger>[0] = { rule, alert: { labels: rec.alert?.labels ?? {} }, now };
    if (rule.trigger.baseline?.relativeTo === 'rollout_start') {
      // "P95 > 2x the baseline before the current rollout": the rollout began when the current revision was created.
      const started = await this.rolloutStartedAt(rec);
      if (started !== undefined) input.rolloutStartedAt = started;
    }
    return confirmTrigger(input, { prometheus: this.d.prometheus, metrics: this.d.metrics });
  }

  /** When the target's current revision was created (read-only plan), or undefined if unknown. */
  private async rolloutStartedAt(rec: RollbackRecord): Promise<number | undefined> {
    const action = this.d.actions[rec.ref.kind];
    if (!action) return undefined;
    try {
      const plan = await action.plan(rec.ref, this.actionContext(rec, () => undefined));
      return plan.current?.createdAt;
    } catch (err) {
      this.log.warn({ err, record: rec.id }, 'could not read the rollout start for the baseline');
      return undefined;
    }
  }

  /** A manual rollback (POST /v1/rollbacks): the same guards, no trigger. Runs in the background. */
  async manual(req: ManualRequest): Promise<RollbackRecord> {
    const rec = this.newRecord(manualRecordId(), req.ref, { manual: req });
    rec.owner = this.d.owner;
    this.records.step(rec, 'received', `manual rollback requested by ${req.requestedBy}: ${req.reason}`);
    this.markDecided(rec);
    rec.decision = { decision: 'rollback_now', reason: `manual: ${req.reason}` };
    this.decidingHere.add(rec.id);
    await this.records.save(rec);
    this.background(this.rollback(rec, DEFAULT_GUARDS).finally(() => this.decidingHere.delete(rec.id)));
    return rec;
  }

  async approve(id: string, by: string, comment?: string): Promise<{ record: RollbackRecord } | { error: string; status: number }> {
    const rec = await this.records.get(id);
    if (!rec) return { error: `no rollback ${id}`, status: 404 };
    if (rec.state !== 'pending_approval') return { error: `rollback ${id} is ${rec.state}, not pending approval`, status: 409 };
    rec.approval = { by, at: this.now(), decision: 'approved', ...(comment ? { comment } : {}) };
    this.records.step(rec, 'approved', `approved by ${by}${comment ? `: ${comment}` : ''}`);
    rec.state = 'deciding';
    rec.owner = this.d.owner;
    delete rec.dueAt;
    this.decidingHere.add(rec.id);
    await this.records.save(rec).catch((err) => {
      this.decidingHere.delete(rec.id);
      throw err;
    });
    const rule = rec.rule ? this.d.rules.rules.rules.find((r) => r.name === rec.rule) : undefined;
    this.background(this.rollback(rec, rule?.guards ?? DEFAULT_GUARDS).finally(() => this.decidingHere.delete(rec.id)));
    return { record: rec };
  }

  async reject(id: string, by: string, comment?: string): Promise<{ record: RollbackRecord } | { error: string; status: number }> {
    const rec = await this.records.get(id);
    if (!rec) return { error: `no rollback ${id}`, status: 404 };
    if (rec.state !== 'pending_approval') return { error: `rollback ${id} is ${rec.state}, not pending approval`, status: 409 };
    rec.approval = { by, at: this.now(), decision: 'rejected', ...(comment ? { comment } : {}) };
    await this.finish(rec, 'rejected', `rejected by ${by}${comment ? `: ${comment}` : ''}`);
    return { record: rec };
  }

  /** Runs the guards, then executes and verifies. Returns the state it ended in. */
  private async rollback(rec: RollbackRecord, settings: Guards): Promise<RollbackState> {
    const action = this.d.actions[rec.ref.kind];
    if (!action) return this.finish(rec, 'error', `no action for kind ${rec.ref.kind}`);
    // A step back (allowStepBack, the last rollback did not recover) goes on from the revision that
    // rollback restored; kubectl's default "previous revision" would be the bad one it left.
    if (settings.allowStepBack && rec.ref.toRevision === undefined) {
      const prev = await this.d.store.getValue(cooldownKey(rec.target));
      const last = prev === null ? undefined : (JSON.parse(prev) as { id: string; outcome?: string });
      const steps = Number((await this.d.store.getValue(stepBackKey(rec.target))) ?? '0');
      const restored = last?.outcome === 'failed' && steps < settings.maxStepBack ? (await this.records.get(last.id))?.plan?.toRevision : undefined;
      if (restored !== undefined) {
        if (restored <= 1) return this.finish(rec, 'refused', `no revision older than ${restored} (restored by ${last!.id}, which did not recover) to step back to`);
        rec.ref = { ...rec.ref, toRevision: restored - 1 };
        this.records.step(rec, 'step_back', `${last!.id} restored revision ${restored} and did not recover: stepping back to revision ${restored - 1}`);
      }
    }
    const ctx: GuardContext = { record: rec, settings, config: this.d.config, store: this.d.store, now: this.now(), owner: this.d.owner };
    let plan: RollbackPlan | undefined;
    const actx = this.actionContext(rec, () => ctx.lock);
    try {
      rec.guards = [];
      for (const guard of GUARDS) {
        if (guard.needsPlan && !plan) {
          plan = await action.plan(rec.ref, actx);
          rec.plan = summarisePlan(plan);
          this.records.step(rec, 'planned', plan.summary, { fromRevision: plan.fromRevision, toRevision: plan.toRevision });
          if (plan.refusal?.code === 'no_cluster' && this.d.config.DRY_RUN) {
            // The embedded default: no cluster, dry-run. Record what would have been done.
            this.d.metrics.guardBlocked.inc({ guard: 'dry-run' });
            rec.guards.push({ guard: 'dry-run', result: 'block', reason: 'dry-run: no cluster is configured' });
            return await this.finish(rec, 'dry_run', `no cluster configured (dry-run): would roll back ${rec.target}${rec.ref.toRevision ? ` to revision ${rec.ref.toRevision}` : ' to its previous revision'}`);
          }
          if (plan.refusal) {
            const state = await this.finish(rec, 'refused', plan.refusal.message);
            this.notify(rec, 'rollback_refused', plan.refusal.code === 'paused' ? 'critical' : 'warning', `Rollback of ${rec.target} refused`, [plan.refusal.message]);
            return state;
          }
          ctx.plan = plan;
        }
        ctx.now = this.now();
        const r = await guard.check(ctx);
        rec.guards.push({ guard: guard.name, result: r.verdict, reason: r.reason });
        this.records.step(rec, `guard:${guard.name}`, `${r.verdict}: ${r.reason}`);
        if (r.verdict === 'block') {
          this.d.metrics.guardBlocked.inc({ guard: guard.name });
          if (guard.name === 'dry-run') {
            this.notify(rec, 'dry_run', 'info', `Dry run: would roll back ${rec.target}`, [plan?.summary ?? '', r.reason]);
            return await this.finish(rec, 'dry_run', `${r.reason}; would have: ${plan?.summary ?? 'no plan'}`);
          }
          this.notify(rec, 'rollback_blocked', 'warning', `Rollback of ${rec.target} blocked by the ${guard.name} guard`, [r.reason]);
          return await this.finish(rec, 'blocked', `blocked by ${guard.name}: ${r.reason}`);
        }
        if (r.verdict === 'wait') {
          this.d.metrics.guardBlocked.inc({ guard: guard.name });
          rec.state = 'pending_approval';
          rec.dueAt = r.until;
          await this.records.save(rec);
          this.notify(rec, 'approval_requested', 'warning', `Approval needed: roll back ${rec.target}?`, [r.reason, plan?.summary ?? '', `POST /v1/rollbacks/${rec.id}/approve or /reject`]);
          return rec.state;
        }
      }
      return await this.execute(rec, action, plan!, actx, ctx.lock!, settings);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (isKubeError(err)) this.d.metrics.kubeErrors.inc({ status: String(err.status) });
      this.log.error({ err, record: rec.id }, 'rollback stopped by an error');
      if (rec.state === 'in_progress') {
        this.d.metrics.escalations.inc({ reason: 'error' });
        this.notify(rec, 'rollback_failed', 'critical', `Rollback of ${rec.target} FAILED: escalate`, [msg]);
        return await this.finish(rec, 'failed', `error during the rollback: ${msg}`);
      }
      return await this.finish(rec, 'error', msg);
    } finally {
      if (ctx.lock && rec.state !== 'in_progress') await this.d.store.releaseLock(ctx.lock).catch(() => false);
    }
  }

  private actionContext(rec: RollbackRecord, lock: () => Lock | undefined): ActionContext {
    return {
      kube: this.d.kube,
      logger: this.log.child({ record: rec.id, target: rec.target }),
      changeCause: changeCause(rec),
      signal: this.abort.signal,
      checkFence: async () => {
        const l = lock();
        if (!l) throw new Error('no lock held for this rollback');
        const fence = await this.d.store.currentFence(l.name);
        if (fence !== l.token) throw new Error(`lock on ${rec.target} lost (fencing token ${l.token}, current ${fence}): not writing`);
        if (!(await this.d.store.renewLock(l, this.d.config.LOCK_TTL))) throw new Error(`lock on ${rec.target} expired: not writing`);
      },
    };
  }

  private async execute(rec: RollbackRecord, action: Action, plan: RollbackPlan, actx: ActionContext, lock: Lock, settings: Guards): Promise<RollbackState> {
    const renew = setInterval(() => {
      this.d.store.renewLock(lock, this.d.config.LOCK_TTL).catch((err) => this.log.warn({ err, record: rec.id }, 'lock renewal failed'));
    }, Math.max(1000, Math.floor(this.d.config.LOCK_TTL / 3)));
    renew.unref();
    this.d.metrics.rollbacksInProgress.inc();
    let handedOff = false;
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      clearInterval(renew);
      this.d.metrics.rollbacksInProgress.dec();
      await this.d.store.releaseLock(lock).catch(() => false);
    };
    try {
      // Write-ahead: the record says in_progress (with our fencing token) before the cluster changes,
      // so a crash between here and the end is found and never executed twice.
      rec.state = 'in_progress';
      rec.owner = this.d.owner;
      rec.lockToken = lock.token;
      rec.times.startedAt = this.now();
      this.records.step(rec, 'started', `rolling back: ${plan.summary}`);
      await this.records.save(rec);
      const kind = rec.rule ? this.d.rules.rules.rules.find((r) => r.name === rec.rule)?.trigger.kind : undefined;
      this.notify(rec, 'rollback_started', 'warning', `Rollback in progress: ${rec.target}`, startedLines(rec, plan, kind, this.d.config));

      const previous = await this.d.store.getValue(cooldownKey(rec.target));
      const res = await action.execute(plan, actx);
      const now = this.now();
      if (!res.applied) {
        if (res.refusal) {
          this.notify(rec, 'rollback_refused', 'warning', `Rollback of ${rec.target} refused`, [res.refusal.message]);
          return await this.finish(rec, 'refused', res.refusal.message);
        }
        return await this.finish(rec, 'error', res.message);
      }
      rec.times.executedAt = now;
      this.d.metrics.lastRollbackTimestamp.set(now / 1000);
      this.records.step(rec, 'executed', res.message, { attempts: res.attempts, generation: res.newGeneration });
      await spendBudget(this.d.store, rec.target, rec.rule, now);
      if (previous && settings.allowStepBack && (JSON.parse(previous) as { outcome?: string }).outcome === 'failed') {
        const steps = Number((await this.d.store.getValue(stepBackKey(rec.target))) ?? '0') + 1;
        await this.d.store.setValue(stepBackKey(rec.target), String(steps), { ttlMs: settings.cooldown });
      }
      await this.setCooldown(rec, settings, undefined);
      await this.records.save(rec);

      // The cluster is changed: the queue event can be acked. Waiting for the rollout and the
      // recovery check (minutes) goes on in the background, so this replica's next alert does not
      // wait behind it; a crash from here on is found by recoverIfOrphaned (executedAt is set).
      const rest = this.verifyAndEnd(rec, action, res.replanned ?? plan, res, actx, settings).finally(() => release());
      handedOff = true;
      if (this.awaitVerification.has(rec.id)) return await rest;
      this.background(rest);
      return 'in_progress';
    } finally {
      if (!handedOff) await release();
    }
  }

  private async verifyAndEnd(rec: RollbackRecord, action: Action, plan: RollbackPlan, res: ExecuteResult, actx: ActionContext, settings: Guards): Promise<RollbackState> {
    try {
      const v = await action.verify(plan, actx, { timeoutMs: this.d.config.VERIFY_TIMEOUT, execution: res });
      if (this.stopped) return await this.leaveForRecovery(rec);
      this.records.step(rec, 'rollout', `${v.outcome}: ${v.message}`, v.details);
      if (v.outcome !== 'succeeded') {
        return await this.end(rec, settings, v.outcome, `rollout ${v.outcome}: ${v.message}`);
      }
      rec.times.completedAt = this.now();
      if (rec.times.decidedAt !== undefined) this.d.metrics.timeToRollback.observe((rec.times.completedAt - rec.times.decidedAt) / 1000);
      const health = await this.verifyRecovered(rec);
      if (health.stopped) return await this.leaveForRecovery(rec);
      return await this.end(rec, settings, health.outcome, health.message, [...health.lines, healthLine(v.details)]);
    } catch (err) {
      if (this.stopped) return await this.leaveForRecovery(rec);
      const msg = err instanceof Error ? err.message : String(err);
      this.log.error({ err, record: rec.id }, 'verification stopped by an error');
      this.d.metrics.escalations.inc({ reason: 'error' });
      this.notify(rec, 'rollback_failed', 'critical', `Rollback of ${rec.target} FAILED: escalate`, [msg]);
      return await this.finish(rec, 'failed', `error while verifying the rollback: ${msg}`);
    }
  }

  /** Shutting down mid-verification: the record stays in_progress and its lock is released, for the next replica. */
  private async leaveForRecovery(rec: RollbackRecord): Promise<RollbackState> {
    this.records.step(rec, 'handover', `${this.d.owner} is shutting down; verification is left to the next replica`);
    await this.records.save(rec).catch((err) => this.log.error({ err, record: rec.id }, 'could not write the handover'));
    this.log.warn({ record: rec.id, target: rec.target }, 'shutting down mid-verification: the rollback stays in_progress for recovery');
    return 'in_progress';
  }

  /** After the rollout: the trigger must clear in Prometheus within RECOVERY_TIMEOUT. */
  private async verifyRecovered(rec: RollbackRecord): Promise<{ outcome: 'succeeded' | 'failed' | 'unverified'; message: string; lines: string[]; stopped?: boolean }> {
    const rule = rec.rule ? this.d.rules.rules.rules.find((r) => r.name === rec.rule) : undefined;
    if (!rule) return { outcome: 'succeeded', message: 'rollout complete (manual rollback: no trigger to re-check)', lines: [] };
    if (!this.d.prometheus) return { outcome: 'unverified', message: 'rollout complete; no Prometheus to re-check the trigger', lines: [] };
    // "Still true" = the trigger holds over its last two steps; recovered = it no longer does.
    const probe: Rule = { ...rule, trigger: { ...rule.trigger, forMs: rule.trigger.stepMs * 2 } };
    const deadline = this.now() + this.d.config.RECOVERY_TIMEOUT;
    let last = '';
    let lines: string[] = [];
    for (;;) {
      const c = await confirmTrigger({ rule: probe, alert: { labels: rec.alert?.labels ?? {} }, now: this.now() }, { prometheus: this.d.prometheus });
      last = `${c.outcome}: ${c.reason}`;
      lines = c.value === undefined ? [] : [`${measureName(rule.trigger.kind)}: ${fmtValue(rule.trigger.kind, c.value)}${c.limit === undefined ? '' : ` (limit ${fmtValue(rule.trigger.kind, c.limit)})`}`];
      if (c.outcome === 'not_confirmed') {
        rec.times.verifiedAt = this.now();
        return { outcome: 'succeeded', message: `rollout complete and the trigger cleared (${c.reason})`, lines };
      }
      if (this.stopped) return { outcome: 'unverified', message: 'shutting down', lines, stopped: true };
      if (this.now() >= deadline) break;
      await sleep(Math.min(this.d.config.RECOVERY_POLL, Math.max(0, deadline - this.now())));
    }
    if (last.startsWith('prometheus_down') || last.startsWith('error') || last.startsWith('insufficient_data')) {
      return { outcome: 'unverified', message: `rollout complete; the trigger could not be re-checked (${last})`, lines };
    }
    return { outcome: 'failed', message: `rollout complete but the trigger still holds after ${Math.round(this.d.config.RECOVERY_TIMEOUT / 1000)}s (${last})`, lines };
  }

  private async setCooldown(rec: RollbackRecord, settings: Guards, outcome: string | undefined): Promise<void> {
    const at = rec.times.executedAt ?? this.now();
    const value = JSON.stringify({ id: rec.id, at, until: at + settings.cooldown, ...(outcome ? { outcome } : {}) });
    await this.d.store.setValue(cooldownKey(rec.target), value, { ttlMs: Math.max(1, at + settings.cooldown - this.now()) });
  }

  private async end(rec: RollbackRecord, settings: Guards, outcome: 'succeeded' | 'failed' | 'unverified', message: string, lines: string[] = []): Promise<RollbackState> {
    await this.setCooldown(rec, settings, outcome);
    if (outcome === 'succeeded') {
      if (rec.times.alertStartedAt !== undefined && rec.times.verifiedAt !== undefined) {
        this.d.metrics.timeToRecover.observe((rec.times.verifiedAt - rec.times.alertStartedAt) / 1000);
      }
      this.notify(rec, 'rollback_succeeded', 'info', `Rollback completed: ${rec.target}`, [...lines, message, ...(rec.plan ? [rec.plan.summary] : [])]);
    } else if (outcome === 'failed') {
      // Escalated once; never retried in a loop (the cooldown blocks the next attempt).
      this.d.metrics.escalations.inc({ reason: 'rollback_failed' });
      this.notify(rec, 'rollback_failed', 'critical', `Rollback of ${rec.target} did not recover the service: escalate`, [message, ...lines, 'Failed Rollback Recovery: stop traffic, then restore the last good version by hand (seed runbook)']);
    } else {
      this.notify(rec, 'rollback_unverified', 'warning', `Rollback of ${rec.target} done, recovery not verified`, [message, ...lines]);
    }
    return this.finish(rec, outcome, message);
  }

  private async finish(rec: RollbackRecord, state: RollbackState, message: string): Promise<RollbackState> {
    rec.state = state;
    rec.outcome = { result: state, message };
    delete rec.dueAt;
    this.records.step(rec, state === 'succeeded' ? 'verified' : 'ended', `${state}: ${message}`);
    await this.records.save(rec);
    this.d.metrics.rollbacks.inc({ rule: rec.rule ?? 'manual', namespace: rec.ref.namespace, kind: rec.ref.kind, outcome: state });
    this.log.info({ record: rec.id, target: rec.target, state, message }, 'rollback record closed');
    return state;
  }

  /** A resolved alert: written to the records it caused (MTTR ends here if not verified earlier). */
  private async resolve(alert: Alert, log: Logger): Promise<void> {
    const ids = await this.records.recordsOfAlert(alert.fingerprint, alert.startsAt);
    for (const id of ids) {
      const rec = await this.records.get(id);
      if (!rec || rec.times.resolvedAt !== undefined) continue;
      rec.times.resolvedAt = alert.endsAt ?? alert.receivedAt;
      await this.records.markResolved(id, rec.times.resolvedAt);
      this.records.step(rec, 'resolved', `alert resolved at ${new Date(rec.times.resolvedAt).toISOString()}`);
      if (rec.state === 'succeeded' && rec.times.verifiedAt === undefined && rec.times.alertStartedAt !== undefined) {
        this.d.metrics.timeToRecover.observe((rec.times.resolvedAt - rec.times.alertStartedAt) / 1000);
      }
      if (rec.state === 'held' || rec.state === 'scheduled') {
        // Nothing to do any more: the alert cleared before its re-check or window.
        await this.finish(rec, 'not_confirmed', 'the alert resolved before the scheduled re-check');
        continue;
      }
      await this.records.save(rec);
    }
    log.info({ records: ids.length }, 'alert resolved');
  }

  /**
   * Runs due work: held and scheduled decisions whose time has come, expired approvals, and
   * rollbacks left in_progress by a replica that died (found by their free lock).
   */
  async tick(): Promise<void> {
    const now = this.now();
    await this.heartbeat();
    // Records left deciding (before anything was executed) by a dead replica, or by this one when a
    // store failure stopped it (its redelivery finds the record and does nothing): decide again.
    // Our own wait until any target lock the failed attempt took has expired.
    for (const rec of await this.records.list({ state: 'deciding', limit: 100 })) {
      const mine = rec.owner === this.d.owner;
      if (mine && (this.decidingHere.has(rec.id) || now - rec.updatedAt < Math.max(2 * this.heartbeatTtl(), 2 * this.d.config.LOCK_TTL))) continue;
      if (!mine && (now - rec.updatedAt < 2 * this.heartbeatTtl() || (await this.alive(rec.owner)))) continue;
      const claim = await this.d.store.acquireLock(`due:${rec.id}`, this.d.owner, 60_000);
      if (!claim) continue;
      this.decidingHere.add(rec.id);
      try {
        const fresh = await this.records.get(rec.id);
        if (!fresh || fresh.state !== 'deciding') continue;
        this.records.step(fresh, 'recovery', mine ? `left deciding by this replica (${this.d.owner}) when a store call failed; decided again` : `left deciding by ${fresh.owner ?? '?'}, which is gone; taken up by ${this.d.owner}`);
        fresh.owner = this.d.owner;
        const rule = fresh.rule ? this.d.rules.rules.rules.find((r) => r.name === fresh.rule) : undefined;
        if (fresh.source === 'manual' || fresh.approval?.decision === 'approved') {
          await this.rollback(fresh, rule?.guards ?? DEFAULT_GUARDS);
        } else if (rule) {
          await this.evaluate(fresh, rule, false);
        } else {
          await this.finish(fresh, 'expired', `rule ${fresh.rule} is no longer loaded`);
        }
      } finally {
        this.decidingHere.delete(rec.id);
        await this.d.store.releaseLock(claim).catch(() => false);
      }
    }
    for (const state of ['held', 'scheduled'] as const) {
      for (const rec of await this.records.list({ state, limit: 100 })) {
        if ((rec.dueAt ?? 0) > now) continue;
        const claim = await this.d.store.acquireLock(`due:${rec.id}`, this.d.owner, 60_000);
        if (!claim) continue;
        try {
          const fresh = await this.records.get(rec.id);
          if (!fresh || fresh.state !== state) continue;
          const rule = fresh.rule ? this.d.rules.rules.rules.find((r) => r.name === fresh.rule) : undefined;
          if (!rule) {
            await this.finish(fresh, 'expired', `rule ${fresh.rule} is no longer loaded`);
            continue;
          }
          this.records.step(fresh, 'due', `${state} rollback due: confirming again`);
          await this.evaluate(fresh, rule, fresh.decision?.decision === 'recheck_later');
        } finally {
          await this.d.store.releaseLock(claim).catch(() => false);
        }
      }
    }
    const pending = await this.records.list({ state: 'pending_approval', limit: 1000 });
    this.d.metrics.pendingApprovals.set(pending.length);
    for (const rec of pending) {
      if ((rec.dueAt ?? Infinity) > now) continue;
      await this.finish(rec, 'expired', `approval not given before ${new Date(rec.dueAt!).toISOString()}`);
    }
    for (const rec of await this.records.list({ state: 'in_progress', limit: 100 })) await this.recoverIfOrphaned(rec);
    if (now - this.lastPrune >= 3_600_000) {
      this.lastPrune = now;
      const n = await this.d.store.pruneRecords(now - this.d.config.RECORD_RETENTION, OPEN_STATES);
      if (n > 0) this.log.info({ pruned: n, retentionMs: this.d.config.RECORD_RETENTION }, 'old rollback records deleted');
    }
  }

  /**
   * A rollback in_progress whose target lock is free was left by a replica that died. It is never
   * executed again: if the cluster shows the rollback applied, it is verified and completed;
   * otherwise it is marked interrupted and escalated.
   */
  async recoverIfOrphaned(rec: RollbackRecord): Promise<void> {
    const lock = await this.d.store.acquireLock(lockName(rec.target), this.d.owner, this.d.config.LOCK_TTL);
    if (!lock) return; // its owner is alive (or another replica is recovering it)
    try {
      const fresh = await this.records.get(rec.id);
      if (!fresh || fresh.state !== 'in_progress') return;
      const action = this.d.actions[fresh.ref.kind];
      this.records.step(fresh, 'recovery', `found in progress with its owner ${fresh.owner ?? '?'} gone; taken up by ${this.d.owner}`);
      const actx = this.actionContext(fresh, () => lock);
      const plan = action ? await action.plan(fresh.ref, actx).catch(() => undefined) : undefined;
      // Applied: recorded as executed, or the target already matches, or it carries this rollback's
      // change cause (the write landed after the replica died, before it could record it).
      const applied =
        fresh.times.executedAt !== undefined ||
        plan?.refusal?.code === 'already_matches' ||
        (plan?.current?.annotations['kubernetes.io/change-cause']?.includes(fresh.id) ?? false);
      if (action && plan && applied) {
        const v = await action.verify(plan, actx, { timeoutMs: this.d.config.VERIFY_TIMEOUT });
        this.records.step(fresh, 'rollout', `${v.outcome}: ${v.message}`);
        const settings = (fresh.rule && this.d.rules.rules.rules.find((r) => r.name === fresh.rule)?.guards) || DEFAULT_GUARDS;
        if (v.outcome === 'succeeded') {
          fresh.times.completedAt = this.now();
          const h = await this.verifyRecovered(fresh);
          await this.end(fresh, settings, h.outcome, `recovered after a restart: ${h.message}`, [...h.lines, healthLine(v.details)]);
        } else {
          await this.end(fresh, settings, v.outcome, `recovered after a restart: rollout ${v.outcome}: ${v.message}`);
        }
        return;
      }
      this.d.metrics.escalations.inc({ reason: 'interrupted' });
      this.notify(fresh, 'rollback_interrupted', 'critical', `Rollback of ${fresh.target} was interrupted: check it by hand`, [
        `the replica running it (${fresh.owner ?? '?'}) stopped before the change was confirmed applied; rollguard does not execute it a second time`,
      ]);
      await this.finish(fresh, 'interrupted', 'the replica running this rollback died before it was applied; not executed again; escalated');
    } finally {
      await this.d.store.releaseLock(lock).catch(() => false);
    }
  }

  private heartbeatTtl(): number {
    return Math.max(15_000, 3 * this.d.config.SCHEDULER_INTERVAL);
  }

  /** Says this replica is alive (every tick); a replica whose heartbeat expired is gone. */
  async heartbeat(): Promise<void> {
    await this.d.store.setValue(`replica:${this.d.owner}`, String(this.now()), { ttlMs: this.heartbeatTtl() });
  }

  private async alive(owner: string | undefined): Promise<boolean> {
    return owner !== undefined && (await this.d.store.getValue(`replica:${owner}`)) !== null;
  }

  private notify(rec: RollbackRecord, kind: Notification['kind'], severity: Notification['severity'], title: string, lines: string[]): void {
    const n: Notification = { kind, severity, title, lines: lines.filter((l) => l !== ''), recordId: rec.id, target: rec.target, at: this.now() };
    if (rec.rule) n.rule = rec.rule;
    if (this.d.config.EXTERNAL_URL) n.link = `${this.d.config.EXTERNAL_URL.replace(/\/$/, '')}/v1/rollbacks/${rec.id}/report`;
    this.records.step(rec, 'notified', `${kind}: ${title}`);
    this.d.notifications.emit(n);
  }

  private background(p: Promise<unknown>): void {
    const tracked = p.catch((err) => this.log.error({ err }, 'background rollback failed')).finally(() => this.running.delete(tracked));
    this.running.add(tracked);
  }

  /** Waits for background rollbacks (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
  }
}

/**
 * A rule's resolved target as the action takes it. Rule files name the object acted on (the
 * Service of a blue-green pair, the canary Deployment); the actions' options say the same with
 * their own words.
 */
export function toRef(t: ResolvedTarget): TargetRef {
  const ref: TargetRef = { kind: t.kind, namespace: t.namespace, name: t.name };
  const { toRevision, ...params } = t.params;
  if (toRevision !== undefined) {
    if (!/^[1-9]\d{0,8}$/.test(toRevision)) throw new TargetResolutionError(`target.params.toRevision: expected a revision number, got ${JSON.stringify(toRevision)}`);
    ref.toRevision = Number(toRevision);
  }
  const options: Record<string, unknown> = {};
  if (t.kind === 'BlueGreen') {
    options.service = t.name;
    if (params.selectorLabel !== undefined) options.selectorKey = params.selectorLabel;
    if (params.previous !== undefined) options.to = params.previous;
  } else if (t.kind === 'Canary') {
    options.canary = t.name;
    if (params.stable !== undefined) options.stable = params.stable;
  } else {
    Object.assign(options, params);
  }
  if (Object.keys(options).length > 0) ref.options = options;
  return ref;
}

function summarisePlan(p: RollbackPlan): NonNullable<RollbackRecord['plan']> {
  const s: NonNullable<RollbackRecord['plan']> = { summary: p.summary };
  if (p.fromRevision !== undefined) s.fromRevision = p.fromRevision;
  if (p.toRevision !== undefined) s.toRevision = p.toRevision;
  if (p.writes) s.writes = p.writes;
  if (p.command) s.command = p.command;
  return s;
}

function changeCause(rec: RollbackRecord): string {
  if (rec.source === 'manual') return `rollguard: manual rollback ${rec.id} by ${rec.requestedBy ?? '?'}: ${rec.reason ?? ''}`.slice(0, 250);
  const a = rec.alert;
  return `rollguard: rule ${rec.rule}, alert ${a?.labels.alertname ?? '?'} (fingerprint ${a?.fingerprint ?? '?'}), rollback ${rec.id}`;
}

function startedLines(rec: RollbackRecord, plan: RollbackPlan, kind: string | undefined, config: Config): string[] {
  const lines = [`Service: ${rec.target}`];
  const c = rec.confirmation;
  const measured = c?.value !== undefined && kind ? ` (${measureName(kind).toLowerCase()} ${fmtValue(kind, c.value)}${c.limit !== undefined ? `, limit ${fmtValue(kind, c.limit)}` : ''})` : '';
  if (rec.alert) lines.push(`Reason: ${rec.alert.labels.alertname ?? 'alert'}${measured}`);
  if (rec.reason) lines.push(`Reason: ${rec.reason}`);
  if (rec.alert?.annotations.summary) lines.push(`Impact: ${rec.alert.annotations.summary}`);
  lines.push(`Action: ${plan.summary}`);
  lines.push(`ETA: rollout within ${fmtDuration(config.VERIFY_TIMEOUT)}, recovery confirmed within ${fmtDuration(config.RECOVERY_TIMEOUT)} after`);
  lines.push(`Status: follow rollback ${rec.id} (GET /v1/rollbacks/${rec.id}); completion or failure is announced here`);
  return lines;
}

const RATIO_KINDS = new Set(['error_rate', 'health_check', 'memory']);

/** A trigger value as people read it: ratios as percentages, latencies in seconds. */
export function fmtValue(kind: string, v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (RATIO_KINDS.has(kind)) return `${(v * 100).toFixed(v < 0.001 ? 3 : 2)}%`;
  if (kind === 'latency') return `${v.toFixed(3)} s`;
  return String(Number(v.toPrecision(4)));
}

function measureName(kind: string): string {
  return ({ error_rate: 'Error rate', latency: 'Latency', health_check: 'Failing health checks', memory: 'Memory use', crash_loop: 'Restarts', deployment_failed: 'Failed rollouts' } as Record<string, string>)[kind] ?? 'Value';
}

/** "Health: rollout complete, 3/3 replicas available" from the rollout status verify read. */
function healthLine(details: Record<string, unknown> | undefined): string {
  const st = (details?.status ?? {}) as { replicas?: number; availableReplicas?: number; numberAvailable?: number; desiredNumberScheduled?: number };
  const total = st.replicas ?? st.desiredNumberScheduled;
  const avail = st.availableReplicas ?? st.numberAvailable;
  return total !== undefined ? `Health: rollout complete, ${avail ?? 0}/${total} replicas available` : 'Health: rollout complete';
}

function isKubeError(err: unknown): err is { status: number | string } {
  return typeof err === 'object' && err !== null && (err as { name?: string }).name === 'KubeApiError';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

