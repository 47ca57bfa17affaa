import type { TargetRef } from '../../actions/action.js';
import type { Config } from '../../config.js';
import type { Chain } from '../../engine/chain.js';
import { confirmTrigger, type Confirmation } from '../../engine/confirm.js';
import { decide } from '../../engine/decide.js';
import { measuredLine } from '../../engine/messages.js';
import { alertRecordId, targetKey, type RollbackRecord } from '../../engine/record.js';
import { pastFirstLook } from '../../engine/scheduler.js';
import type { PrometheusApi } from '../../prometheus/client.js';
import { outOfScope } from '../../guards/scope.js';
import { formatDuration } from '../../rules/duration.js';
import type { RuleSet } from '../../rules/ruleset.js';
import type { Rule } from '../../rules/schema.js';
import { resolveTargets, TargetResolutionError } from '../../rules/targets.js';
import { MemoryStore } from '../../store/memory.js';
import { laneOf } from '../../store/store.js';
import { describeRollout, runGuards } from './guarded.js';
import { ReplayAbort } from './limits.js';
import type { RolloutHistory } from './rollouts.js';
import type { ReplayAlert, ReplayAlertResult, ReplayOutcome, ReplayRow } from './types.js';

/**
 * Feeds the replayed alerts through what the engine does with them, in time order, on a
 * simulated clock: a discrete-event loop whose events are each alert's first notification (its
 * start + Alertmanager's group_wait), the re-checks and maintenance windows the decision tree
 * schedules, and the end of each would-be rollback's flight.
 *
 * At each look: the rules in force match the alert (RuleSet.match), the targets resolve from its
 * labels (resolveTargets), the trigger is confirmed against Prometheus at that past time
 * (confirmTrigger, read-only; a baseline relative to the rollout start reads it from
 * kube-state-metrics), the decision tree decides (decide), and a rollback runs the guards
 * (guarded.ts). One look per alert start, as the engine's records are keyed by (fingerprint,
 * startsAt): Alertmanager's resends change nothing. A rule's ordered list of targets goes on with
 * the next target once the previous one's flight ends, on the first target's decision (its guards
 * only, as the engine's chain.ts), and stops at one that does not roll back. Alerts sent at one
 * time are decided P0 first, as the engine's queue serves its lanes.
 */

export interface SimulateOptions {
  rules: RuleSet;
  prometheus: PrometheusApi;
  rollouts: RolloutHistory;
  /** the configured settings (scope, budget, concurrency, lock TTL); DRY_RUN is ignored */
  config: Config;
  /** the end of the replayed range, ms: a look due after it is not replayed */
  toMs: number;
  /** Alertmanager's group_wait: the first notification comes this long after the alert starts */
  groupWaitMs: number;
  /** how long a would-be rollback holds its lock and counts as in flight */
  inFlightMs: number;
  /** after each alert's first look: looked at, in all, the replayed time */
  onProgress?: (done: number, total: number, at: number) => void;
}

const OWNER = 'replay';

export async function simulate(alerts: readonly ReplayAlert[], o: SimulateOptions): Promise<ReplayAlertResult[]> {
  let clock = 0;
  const store = new MemoryStore(() => clock);
  const queue = new EventQueue();
  const deps = { store, config: { ...o.config, DRY_RUN: false }, rollouts: o.rollouts, inFlightMs: o.inFlightMs, owner: OWNER };
  const results: ReplayAlertResult[] = alerts.map((alert) => ({ alert, rows: [] }));
  const replayed = results.filter((r) => !r.alert.startedBeforeRange);
  let done = 0;

  const finish = (row: ReplayRow, outcome: ReplayOutcome, at: number, reason: string, extra: Partial<ReplayRow> = {}) => {
    Object.assign(row, { outcome, at, reason }, extra);
  };

  /** One target of one rule for one alert: from its first look to its outcome; `then` gets the outcome. */
  const look = async (alert: ReplayAlert, rule: Rule, ref: TargetRef, row: ReplayRow, at: number, recheck: boolean, then: (row: ReplayRow) => void, chain?: Chain): Promise<void> => {
    clock = at;
    if (at > o.toMs) {
      finish(row, 'not_judged', at, `due at ${iso(at)}, after the end of the replayed range (--to ${iso(o.toMs)})`);
      return then(row);
    }
    let rolloutStartedAt: number | undefined;
    // as the engine (evaluate.ts): nothing is read of a target outside the scope, and its record is
    // closed blocked by the scope guard, before its trigger is confirmed
    const outside = rule.trigger.baseline?.relativeTo === 'rollout_start' && rule.action !== 'notify' ? outOfScope(o.config, targetKey(ref), ref.namespace) : undefined;
    if (outside !== undefined) {
      finish(row, 'blocked', at, `blocked by scope: ${outside}`, { guard: 'scope' });
      return then(row);
    }
    if (rule.trigger.baseline?.relativeTo === 'rollout_start') {
      const r = await o.rollouts.startOf(ref, at);
      if (r.at === undefined || r.atLeast) {
        finish(row, 'not_judged', at, `the baseline is relative to the rollout start, which could not be read: ${r.unknown ?? `${r.source}, an exact start is needed`}`);
        return then(row);
      }
      rolloutStartedAt = r.at;
    }
    const c = await confirmTrigger({ rule, alert: { labels: alert.labels }, now: at, ...(rolloutStartedAt !== undefined ? { rolloutStartedAt } : {}) }, { prometheus: o.prometheus });
    if (c.outcome === 'prometheus_down') throw new ReplayAbort('--prometheus', `Prometheus stopped answering during the replay: ${c.reason}`);
    row.confirmation = confirmationOf(rule, c);
    const d = decide({ rule, alert: { status: 'firing' }, confirmation: c, now: at, recheck });
    row.decisions.push({ at, decision: d.decision, reason: d.reason });
    switch (d.decision) {
      case 'no_action':
        finish(row, 'not_confirmed', at, d.reason);
        return then(row);
      case 'notify_only':
        finish(row, 'notified', at, d.reason);
        return then(row);
      case 'hold':
        finish(row, 'held', at, d.reason);
        return then(row);
      case 'recheck_later':
      case 'scheduled': {
        const due = d.at ?? at;
        queue.push(due, 1, async () => {
          if (alert.endsAt !== undefined && alert.endsAt <= due) {
            const what = d.decision === 'scheduled' ? 'its maintenance window opened' : 'the scheduled re-check';
            finish(row, 'resolved', due, `the alert resolved at ${iso(alert.endsAt)}, before ${what} at ${iso(due)}: nothing done`);
            return then(row);
          }
          // as the scheduler decides a record again (pastFirstLook): past its first look, whether it
          // was an SLO re-check or a maintenance window's opening (an SLO-at-risk rule's window then
          // rolls back, not re-checked once more)
          await look(alert, rule, ref, row, due, pastFirstLook({ decision: { decision: d.decision, reason: d.reason } }), then, chain);
        });
        return;
      }
      case 'rollback_now':
        return guarded(newRecord(alert, rule, ref, at, d, chain), rule, row, at, d.reason, then);
    }
  };

  /** The guards of a rollback decided (rollback_now), at `at`: its outcome on `row`, then `then`. */
  const guarded = async (record: RollbackRecord, rule: Rule, row: ReplayRow, at: number, why: string, then: (row: ReplayRow) => void): Promise<void> => {
    const g = await runGuards(deps, record, rule, at);
    row.guards = g.steps;
    row.notJudged = g.notJudged;
    const rollout = describeRollout(g.rollout);
    const out = g.outcome;
    if (out.kind === 'rolled_back') {
      finish(row, 'rolled_back', at, `${why}${rollout ? `; current revision: ${rollout}` : ''}`);
      queue.push(at + o.inFlightMs, 0, async () => {
        clock = at + o.inFlightMs;
        await out.release();
      });
    } else if (out.kind === 'approval') {
      finish(row, 'approval', at, out.reason, { guard: out.guard, until: out.until });
    } else finish(row, out.kind, at, `${out.reason}${rollout && out.guard === 'recent-deploy' ? ` (current revision: ${rollout})` : ''}`, { guard: out.guard });
    return then(row);
  };

  /**
   * A later target of a rule's ordered list, as the engine starts it (chain.ts): on the first
   * target's decision, its guards only. The trigger is not confirmed again, nor decided again
   * (an SLO re-check, a maintenance window): the service may be recovering from the first
   * target's rollback, and the engine rolls the next one back all the same.
   */
  const chained = async (alert: ReplayAlert, rule: Rule, ref: TargetRef, row: ReplayRow, at: number, first: ReplayRow, chain: Chain, previous: ReplayOutcome, then: (row: ReplayRow) => void): Promise<void> => {
    clock = at;
    if (at > o.toMs) {
      finish(row, 'not_judged', at, `due at ${iso(at)}, after the end of the replayed range (--to ${iso(o.toMs)})`);
      return then(row);
    }
    const decided = first.decisions[first.decisions.length - 1]!;
    const d = { decision: 'rollback_now', reason: `the ordered chain goes on (${first.target} ended ${previous}): ${decided.reason}` };
    if (first.confirmation) row.confirmation = first.confirmation;
    row.decisions.push({ at, decision: d.decision, reason: d.reason });
    const record = newRecord(alert, rule, ref, at, d, chain);
    // a chain that went on from a dry run stays one (chain.ts goesOnAsDryRun)
    if (previous === 'dry_run') record.dryRun = true;
    return guarded(record, rule, row, at, d.reason, then);
  };

  for (const result of replayed) {
    const alert = result.alert;
    const first = alert.startsAt + o.groupWaitMs;
    // alerts sent at one time are taken as the engine's queue serves them, lane by lane: P0 rules'
    // alerts first (store.ts laneOf), so the budget and the concurrency limit go to them first
    queue.push(first, 1 + laneOf(o.rules.priorityOf(alert)), async () => {
      clock = first;
      const rules = o.rules.match(alert);
      for (const rule of rules) {
        let refs: TargetRef[];
        try {
          refs = resolveTargets(rule.targets, alert.labels);
        } catch (e) {
          if (!(e instanceof TargetResolutionError)) throw e;
          result.rows.push(row(rule, `unresolved/${rule.name}`, first, 'error', `target could not be resolved from the alert's labels: ${e.message}`));
          continue;
        }
        const rows = refs.map((ref) => row(rule, targetKey(ref), first, 'resolved', ''));
        result.rows.push(...rows);
        if (alert.endsAt !== undefined && alert.endsAt <= first) {
          for (const r of rows) finish(r, 'resolved', first, `the alert resolved at ${iso(alert.endsAt)}, before Alertmanager's first notification (group_wait ${formatDuration(o.groupWaitMs)})`);
          continue;
        }
        // An ordered list: each target once the one before it rolled back and its flight ended,
        // on the first target's decision (chained).
        const chain: Chain | undefined = refs.length > 1 ? { index: 0, targets: refs.map((ref) => ({ ref, id: alertRecordId(rule.name, targetKey(ref), alert.fingerprint, alert.startsAt) })) } : undefined;
        const step = async (i: number, at: number, previous?: ReplayOutcome): Promise<void> => {
          const then = (r: ReplayRow) => {
            if (i + 1 >= refs.length) return;
            if (r.outcome === 'rolled_back') queue.push(r.at + o.inFlightMs, 1, () => step(i + 1, r.at + o.inFlightMs, r.outcome));
            else if (r.outcome === 'dry_run') queue.push(r.at, 1, () => step(i + 1, r.at, r.outcome));
            else {
              for (const later of rows.slice(i + 1)) {
                finish(later, 'blocked', r.at, `an earlier target of rule ${rule.name} did not roll back (${r.target}: ${r.outcome}); the ordered chain stops there`, { guard: 'ordered-targets' });
              }
            }
          };
          if (i === 0) return look(alert, rule, refs[0]!, rows[0]!, at, false, then, chain);
          return chained(alert, rule, refs[i]!, rows[i]!, at, rows[0]!, { ...chain!, index: i }, previous!, then);
        };
        await step(0, first);
      }
      o.onProgress?.(++done, replayed.length, first);
    });
  }
  await queue.run();
  return results;
}

function row(rule: Rule, target: string, at: number, outcome: ReplayOutcome, reason: string): ReplayRow {
  return { rule: rule.name, priority: rule.priority, target, outcome, at, reason, decisions: [], guards: [], notJudged: [] };
}

function confirmationOf(rule: Rule, c: Confirmation): NonNullable<ReplayRow['confirmation']> {
  const out: NonNullable<ReplayRow['confirmation']> = { outcome: c.outcome, reason: c.reason };
  if (c.query !== undefined) out.query = c.query;
  // not confirmed: the value that broke the condition (the sample furthest on the healthy side)
  const value = c.outcome === 'not_confirmed' ? (c.judgement?.series?.worstValue ?? c.value) : c.value;
  if (value !== undefined) out.value = value;
  if (c.limit !== undefined) out.limit = c.limit;
  const m = measuredLine(rule.trigger.kind, value, c.limit)[0];
  if (m !== undefined) out.measured = m;
  return out;
}

function newRecord(alert: ReplayAlert, rule: Rule, ref: TargetRef, at: number, d: { decision: string; reason: string; requiresApproval?: boolean }, chain?: Chain): RollbackRecord {
  const target = targetKey(ref);
  return {
    ...(chain ? { chain } : {}),
    id: alertRecordId(rule.name, target, alert.fingerprint, alert.startsAt),
    target,
    state: 'deciding',
    createdAt: at,
    updatedAt: at,
    ref,
    source: 'alert',
    rule: rule.name,
    priority: rule.priority,
    alert: { fingerprint: alert.fingerprint, status: 'firing', labels: alert.labels, annotations: {}, startsAt: alert.startsAt, receivedAt: at, generatorURL: '' },
    decision: { decision: d.decision, reason: d.reason, ...(d.requiresApproval ? { requiresApproval: true } : {}) },
    guards: [],
    dryRun: false,
    times: { alertStartedAt: alert.startsAt, receivedAt: at, decidedAt: at },
    timeline: [],
  };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Events in time order; at one time, lower `rank` first (a flight ending before a new look, a P0 alert's first look before a P1's), then in insertion order. */
class EventQueue {
  private readonly heap: Array<{ at: number; rank: number; seq: number; run: () => Promise<void> }> = [];
  private seq = 0;

  push(at: number, rank: number, run: () => Promise<void>): void {
    const h = this.heap;
    h.push({ at, rank, seq: this.seq++, run });
    for (let i = h.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  async run(): Promise<void> {
    for (let e = this.pop(); e; e = this.pop()) await e.run();
  }

  private pop() {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(l, m)) m = l;
        if (r < h.length && this.less(r, m)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    const x = this.heap[a]!;
    const y = this.heap[b]!;
    return (x.at - y.at || x.rank - y.rank || x.seq - y.seq) < 0;
  }
}
