// The drill job: the safety checks, the fault, the watch of every link until the drill passes, a
// link breaks for good or the deadline passes, then the result, the restore of a drill that did not
// pass, the metrics and the record. One drill per target at a time, across replicas (a store lock,
// renewed while the drill runs); a drill whose replica stopped is ended, and its workload restored,
// by whichever replica finds its lock free (recoverOrphans, every SCHEDULER_INTERVAL).
import type { Logger } from 'pino';
import type { Action, TargetKind } from '../actions/action.js';
import { NO_CLUSTER, notFoundMessage, refusedByServer } from '../actions/common.js';
import { AlertmanagerApi } from '../alertmanager/api.js';
import type { Config } from '../config.js';
import { targetKey, type RecordBook } from '../engine/record.js';
import { readCooldown } from '../guards/cooldown.js';
import { readPause } from '../guards/pause.js';
import { globMatches } from '../guards/scope.js';
import type { Kube, KubeObject } from '../kube/kube.js';
import { sleep } from '../kube/rollout-status.js';
import type { Metrics } from '../metrics.js';
import { PrometheusBusyError, type PrometheusApi } from '../prometheus/client.js';
import type { RuleSet } from '../rules/ruleset.js';
import type { Lock, Store } from '../store/store.js';
import { describeFault, FaultError, prepareFault, type Fault } from './fault.js';
import { alertsAbout, diagnose, observe, recordGaveUp, requiredLinks, stamp, type LinkName, type WatchDeps } from './links.js';
import { restorePreDrill } from './restore.js';
import { DrillStore, newDrillId, type DrillRecord } from './store.js';
import { RESOURCE, readWorkload, templateHash, type WorkloadRef } from './workload.js';

/** The rollback runbook's drill target for the time to recover: under 5 minutes. */
export const DEFAULT_DEADLINE_MS = 5 * 60_000;

export interface DrillRequest {
  ref: WorkloadRef;
  fault: Fault;
  /** from the fault to back on the pre-drill revision, healthy and the trigger cleared; default DEFAULT_DEADLINE_MS */
  deadlineMs?: number;
  requestedBy: string;
}

/** A drill that is not started: nothing was changed. `status` is the HTTP answer. */
export class DrillRefusal extends Error {
  override readonly name = 'DrillRefusal';
  constructor(
    readonly status: 404 | 409 | 422 | 503,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface DrillDeps {
  config: Config;
  store: Store;
  metrics: Metrics;
  logger: Logger;
  kube: Kube | null;
  prometheus: PrometheusApi | null;
  /** default: from ALERTMANAGER_URL (unset: the Alertmanager link is not watched) */
  alertmanager?: AlertmanagerApi | null;
  /** rollguard's rollback records (the engine's RecordBook) */
  records: RecordBook;
  rules: { readonly rules: RuleSet };
  actions: Partial<Record<TargetKind, Action>>;
  /** this replica's name */
  owner: string;
  now?: () => number;
  /** how often a drill looks at its links (default 1 s) */
  pollMs?: number;
}

type Outcome = { passed: boolean; link?: LinkName; message: string };

export class Drills {
  readonly store: DrillStore;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly alertmanager: AlertmanagerApi | null;
  /** drills this process runs, by id */
  private readonly running = new Map<string, { abort: AbortController; done: Promise<void> }>();
  private recovery: NodeJS.Timeout | undefined;

  constructor(private readonly d: DrillDeps) {
    this.store = new DrillStore(d.store, d.config.RECORD_RETENTION);
    this.log = d.logger.child({ component: 'drills' });
    this.now = d.now ?? Date.now;
    this.alertmanager = d.alertmanager !== undefined ? d.alertmanager : d.config.ALERTMANAGER_URL ? new AlertmanagerApi({ url: d.config.ALERTMANAGER_URL }) : null;
  }

  /** Checks, applies the fault and starts watching; refuses (DrillRefusal, nothing changed) when a drill may not run. */
  async start(req: DrillRequest): Promise<DrillRecord> {
    const { config } = this.d;
    const { ref } = req;
    const target = targetKey(ref);
    if (config.DRILL_NAMESPACES.length === 0) throw new DrillRefusal(422, 'drills_off', 'drills are off: DRILL_NAMESPACES lists no namespace; set it to the namespaces where drills may break a workload on purpose (staging)');
    if (!config.DRILL_NAMESPACES.includes(ref.namespace)) {
      throw new DrillRefusal(422, 'outside_drill_namespaces', `namespace ${ref.namespace} is not in DRILL_NAMESPACES (${config.DRILL_NAMESPACES.join(', ')}): drills run only there`);
    }
    const denied = config.SCOPE_DENY_TARGETS.find((g) => globMatches(g, target));
    if (denied) throw new DrillRefusal(422, 'target_denied', `${target} is denied by ${denied} (SCOPE_DENY_TARGETS): rollguard could not roll it back`);
    const kube = this.d.kube;
    if (!kube) throw new DrillRefusal(422, 'no_cluster', NO_CLUSTER);
    if (config.DRY_RUN) throw new DrillRefusal(422, 'dry_run', 'DRY_RUN is on: rollguard would not roll the fault back; drills need DRY_RUN=false');
    const prometheus = this.d.prometheus;
    if (!prometheus) throw new DrillRefusal(422, 'no_prometheus', 'PROMETHEUS_URL is not set: a drill watches its alert fire in Prometheus, and rollguard confirms triggers there');
    const pause = await readPause(this.d.store);
    if (pause) throw new DrillRefusal(409, 'paused', `rollguard is paused (by ${pause.by}${pause.reason ? `: ${pause.reason}` : ''}): no drill while paused; POST /v1/resume first`);

    const lock = await this.store.lock(target, this.d.owner, config.LOCK_TTL);
    if (!lock) {
      const other = (await this.store.list({ target, state: 'running', limit: 1 }))[0];
      throw new DrillRefusal(409, 'drill_running', `drill ${other?.id ?? '(starting)'} is running on ${target}: one drill per target at a time`);
    }
    try {
      return await this.begin(req, kube, prometheus, lock);
    } catch (err) {
      await this.store.unlock(lock);
      throw err;
    }
  }

  private async begin(req: DrillRequest, kube: Kube, prometheus: PrometheusApi, lock: Lock): Promise<DrillRecord> {
    const { ref } = req;
    const target = targetKey(ref);
    const w = await readWorkload(kube, ref);
    if (!w) throw new DrillRefusal(404, 'not_found', notFoundMessage(RESOURCE[ref.kind], ref.name));
    if (w.obj.spec?.paused === true) throw new DrillRefusal(409, 'rollout_paused', `${target} is paused (kubectl rollout resume it first): rollguard cannot roll back a paused deployment`);
    if (!w.rollout.done) throw new DrillRefusal(409, 'not_healthy', `${target} is not healthy before the drill (${w.rollout.message}): a drill starts from a complete rollout`);
    if (w.obj.spec?.revisionHistoryLimit === 0) throw new DrillRefusal(422, 'no_history', `${target} keeps no revision history (revisionHistoryLimit: 0): neither rollguard nor the drill could roll it back`);
    const now = this.now();
    const cooldown = await readCooldown(this.d.store, target);
    if (cooldown && cooldown.until > now) {
      throw new DrillRefusal(409, 'cooldown', `${target} was rolled back by ${cooldown.id} and is in its cooldown until ${new Date(cooldown.until).toISOString()}: the cooldown guard would block the drill's rollback; start the drill after that`);
    }
    const [open] = await this.d.records.openOf(target, 1);
    if (open) throw new DrillRefusal(409, 'rollback_open', `rollback ${open.id} of ${target} is ${open.state}: no drill while a rollback of the target is open`);
    let firing: Array<Record<string, string>>;
    try {
      firing = (await alertsAbout(prometheus, this.d.rules.rules, ref, now)).filter((l) => l.alertstate === 'firing');
    } catch (err) {
      if (err instanceof PrometheusBusyError) {
        throw new DrillRefusal(503, 'prometheus_busy', `rollguard got no turn to ask Prometheus (PROMETHEUS_MAX_CONCURRENT queries in flight for all of PROMETHEUS_TIMEOUT): ${err.message}; try the drill again when the alerts in hand are decided`);
      }
      throw new DrillRefusal(503, 'prometheus_unavailable', `Prometheus (PROMETHEUS_URL) did not answer: ${err instanceof Error ? err.message : String(err)}; a drill watches its alert there`);
    }
    if (firing.length > 0) throw new DrillRefusal(409, 'alert_firing', `${firing.map((l) => l.alertname).join(', ')} already fires about ${target}: the drill could not tell its own alert from it`);

    const id = newDrillId();
    const deadlineMs = req.deadlineMs ?? DEFAULT_DEADLINE_MS;
    const summary = describeFault(req.fault, w.obj.spec?.template);
    const d: DrillRecord = {
      id,
      source: 'drill',
      target,
      ref: { kind: ref.kind, namespace: ref.namespace, name: ref.name },
      state: 'running',
      fault: { kind: req.fault.kind, summary },
      requestedBy: req.requestedBy,
      owner: this.d.owner,
      createdAt: now,
      updatedAt: now,
      deadlineMs,
      watchesAlertmanager: this.alertmanager !== null,
      before: { revision: w.revision, templateHash: w.templateHash, images: w.images },
      links: {},
      seen: {},
      timeline: [{ at: now, step: 'requested', message: `drill requested by ${req.requestedBy}: ${summary}; deadline ${deadlineMs / 1000}s; pre-drill revision ${w.revision}` }],
    };
    // Written ahead (a replica stopping from here on leaves a drill to end and restore), and marked
    // active before the fault, so that every alert the fault raises is recorded as the drill's.
    const changeCause = `rollguard drill ${id}: ${summary} (a rollback drill, not a release; if rollguard does not roll it back, the drill restores revision ${w.revision})`.slice(0, 500);
    let write: () => Promise<KubeObject>;
    try {
      await this.store.put(d, now);
      await this.store.index(id);
      await this.store.setActive(target, id, deadlineMs + 10 * 60_000);
      const prepared = await prepareFault(kube, ref, w.obj, req.fault, changeCause);
      // The restore undoes this template only, never a release that replaced it; known before the
      // write, so that a write whose answer is lost (or a replica stopping) leaves it recorded.
      d.fault.templateHash = prepared.templateHash;
      await this.store.put(d, this.now());
      write = prepared.write;
    } catch (err) {
      await this.forget(d);
      if (err instanceof FaultError) throw new DrillRefusal(422, 'bad_fault', err.message);
      throw err;
    }
    try {
      const faulted = await write();
      d.fault.templateHash = templateHash(ref.kind, faulted.spec?.template);
    } catch (err) {
      // FaultError: refused (a 4xx other than 408), said in the fault's words; 401/403 as they came
      if (err instanceof FaultError || refusedByServer(err)) {
        await this.forget(d);
        if (err instanceof FaultError) throw new DrillRefusal(422, 'bad_fault', err.message);
        throw err;
      }
      // No answer, 408 or 5xx: the fault may be on the workload. The drill ends failed, and its
      // restore puts the pre-drill template back if the fault's is live.
      const message = `the fault's write failed without saying whether it landed (${err instanceof Error ? err.message : String(err)}); the drill ends here, and its restore puts the pre-drill template back if the fault is live`;
      d.timeline.push({ at: this.now(), step: 'fault_uncertain', message });
      await this.store.put(d, this.now()).catch(() => undefined);
      this.log.error({ err, drill: id, target }, "drill's fault write failed without saying whether it landed: the drill ends failed and restores its workload if the fault is live");
      this.launch(d, lock, async () => ({ passed: false, message }));
      return d;
    }
    d.faultAt = this.now();
    stamp(d, 'fault_applied', d.faultAt, `${summary} (pre-drill revision ${w.revision})`);
    await this.store.put(d, this.now());
    this.log.warn({ drill: id, target, fault: summary, deadlineMs, requestedBy: req.requestedBy }, 'drill started: the fault is applied');
    this.launch(d, lock, async (signal) => this.watch(d, lock, signal));
    return d;
  }

  /** Forgets a drill whose fault was never written (refused, or the dry run failed): nothing of it stays. */
  private async forget(d: DrillRecord): Promise<void> {
    await this.store.clearActive(d.target, d.id).catch(() => undefined);
    await this.store.forget(d.id).catch(() => undefined);
  }

  private launch(d: DrillRecord, lock: Lock, body: (signal: AbortSignal) => Promise<Outcome | null>): void {
    const abort = new AbortController();
    const done = body(abort.signal)
      .then((outcome) => (outcome ? this.finish(d, lock, outcome) : undefined))
      .catch((err) => this.log.error({ err, drill: d.id }, 'drill stopped by an error'))
      .finally(() => this.running.delete(d.id));
    this.running.set(d.id, { abort, done });
  }

  /** Watches until the drill passes, its rollback gives up, the deadline passes or rollguard stops. null: the lock was lost (another replica ends it). */
  private async watch(d: DrillRecord, lock: Lock, signal: AbortSignal): Promise<Outcome | null> {
    const deps: WatchDeps = { prometheus: this.d.prometheus!, alertmanager: this.alertmanager, records: this.d.records, rules: this.d.rules, kube: this.d.kube!, signal };
    const required = requiredLinks(d);
    const deadlineAt = (d.faultAt ?? d.createdAt) + d.deadlineMs;
    for (;;) {
      if (signal.aborted) {
        const why = diagnose(d);
        return { passed: false, link: why.link, message: `rollguard stopped while the drill ran (replica ${this.d.owner} shutting down); it was waiting for: ${why.message}` };
      }
      try {
        if (!(await this.store.renew(lock, this.d.config.LOCK_TTL))) {
          this.log.error({ drill: d.id, target: d.target }, 'drill lock lost: the drill is left to the replica that takes it over');
          return null;
        }
        const rec = await observe(deps, d, this.now());
        await this.store.put(d, this.now());
        const recovered = d.links.trigger_cleared?.at;
        if (required.every((l) => d.links[l]) && recovered !== undefined) {
          if (recovered <= deadlineAt) return { passed: true, message: `every link held: ${d.target} back on its pre-drill template and healthy, the trigger cleared, ${((recovered - d.faultAt!) / 1000).toFixed(1)}s after the fault (deadline ${d.deadlineMs / 1000}s)` };
          return { passed: false, link: 'trigger_cleared', message: `every link held, but ${((recovered - d.faultAt!) / 1000).toFixed(1)}s after the fault: past the deadline of ${d.deadlineMs / 1000}s` };
        }
        if (recordGaveUp(rec)) return { passed: false, ...diagnose(d) };
      } catch (err) {
        this.log.warn({ err, drill: d.id }, 'drill could not look at its links this time');
      }
      if (this.now() >= deadlineAt) {
        const why = diagnose(d);
        return { passed: false, link: why.link, message: `deadline of ${d.deadlineMs / 1000}s passed: ${why.message}` };
      }
      await sleep(this.d.pollMs ?? 1000, signal);
    }
  }

  /** Ends a drill: the result, the restore of one that did not pass, the record, the metrics; releases the target. */
  private async finish(d: DrillRecord, lock: Lock, outcome: Outcome): Promise<void> {
    const now = this.now();
    d.result = { passed: outcome.passed, message: outcome.message, at: now, ...(outcome.link ? { link: outcome.link } : {}) };
    d.timeline.push({ at: now, step: outcome.passed ? 'passed' : 'failed', message: outcome.message });
    if (!outcome.passed) {
      // The result is written at once; the drill stays running until the workload is restored.
      await this.store.put(d, now).catch(() => undefined);
      const restore = await restorePreDrill(
        { kube: this.d.kube!, actions: this.d.actions, store: this.d.store, config: this.d.config, logger: this.log, owner: this.d.owner, verifyTimeoutMs: Math.min(this.d.config.VERIFY_TIMEOUT, 120_000) },
        d,
        `the drill failed at "${outcome.link ?? 'the end'}"`,
        this.now,
      );
      d.restore = restore;
      d.timeline.push({ at: restore.at, step: `restore_${restore.outcome}`, message: restore.message });
      if (restore.outcome === 'failed') {
        this.d.metrics.escalations.inc({ reason: 'drill_restore_failed' });
        this.log.error({ drill: d.id, target: d.target, restore: restore.message }, 'drill failed and its workload could NOT be restored: restore it by hand');
      } else if (restore.outcome === 'moved_on') {
        this.log.warn({ drill: d.id, target: d.target, restore: restore.message }, "drill failed and its workload moved on from the fault (a release during the drill?): not restored; check it does not carry the fault");
      }
    }
    d.state = outcome.passed ? 'passed' : 'failed';
    await this.store.put(d, this.now());
    await this.store.clearActive(d.target, d.id).catch(() => undefined);
    await this.store.unlock(lock);
    this.d.metrics.drills.inc({ result: d.state });
    if (outcome.passed) this.d.metrics.drillTimeToRecover.observe((d.links.trigger_cleared!.at - d.faultAt!) / 1000);
    for (const result of ['passed', 'failed']) this.d.metrics.drillLastEnd.remove({ target: d.target, result });
    this.d.metrics.drillLastEnd.set({ target: d.target, result: d.state }, this.now() / 1000);
    this.log.info({ drill: d.id, target: d.target, result: d.state, link: outcome.link, restore: d.restore?.outcome, message: outcome.message }, 'drill ended');
  }

  async get(id: string): Promise<DrillRecord | null> {
    return this.store.get(id);
  }

  list(filter: { target?: string; limit?: number } = {}): Promise<DrillRecord[]> {
    return this.store.list(filter);
  }

  /** Ends, and restores, the running drills whose replica stopped (their lock is free). */
  async recoverOrphans(): Promise<void> {
    for (const d of await this.store.list({ state: 'running' })) {
      if (this.running.has(d.id)) continue;
      const lock = await this.store.lock(d.target, this.d.owner, this.d.config.LOCK_TTL);
      if (!lock) continue;
      const fresh = await this.store.get(d.id);
      if (!fresh || fresh.state !== 'running' || !this.d.kube) {
        await this.store.unlock(lock);
        continue;
      }
      fresh.timeline.push({ at: this.now(), step: 'taken_over', message: `replica ${fresh.owner} stopped running the drill; ${this.d.owner} ends it` });
      const why = diagnose(fresh);
      this.launch(fresh, lock, async () => ({ passed: false, link: why.link, message: `rollguard stopped while the drill ran (replica ${fresh.owner}); it was waiting for: ${why.message}` }));
    }
  }

  /** Looks for orphaned drills every `everyMs` (the route module starts it once the app is ready). */
  startRecovery(everyMs: number): void {
    if (this.recovery) return;
    let busy = false;
    this.recovery = setInterval(() => {
      if (busy) return;
      busy = true;
      this.recoverOrphans()
        .catch((err) => this.log.warn({ err }, 'could not look for drills left by a stopped replica'))
        .finally(() => (busy = false));
    }, everyMs);
    this.recovery.unref();
  }

  /** Stops every drill of this process: each ends failed and restores its workload, within `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<void> {
    clearInterval(this.recovery);
    this.recovery = undefined;
    for (const r of this.running.values()) r.abort.abort();
    await Promise.race([this.idle(), sleep(timeoutMs)]);
  }

  /** Waits for the drills of this process to end (tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()].map((r) => r.done));
  }
}


