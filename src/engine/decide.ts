import type { Alert } from '../alertmanager/alert.js';
import type { Metrics } from '../metrics.js';
import { inMaintenanceWindow, nextMaintenanceWindow } from '../rules/maintenance.js';
import type { Rule } from '../rules/schema.js';
import type { Confirmation } from './confirm.js';

/**
 * The runbooks' rollback decision tree (priorities P0/P1/P2), as a pure function of the rule, the alert, the
 * confirmation and `now`:
 *
 *  1. alert resolved                                    -> no_action
 *  2. trigger not confirmed / insufficient data         -> no_action (stale or flapping alerts roll nothing back)
 *     trigger could not be evaluated (error: a 4xx from Prometheus or a proxy in front of it, a
 *     query that is bad or cannot be built)             -> hold, escalate: a human looks; never acted on unconfirmed
 *     Prometheus down (unreachable, timeout, 5xx): the rule's onPrometheusDown
 *                                                       -> act: go on | hold: hold | notify: notify_only
 *     no turn at Prometheus (PROMETHEUS_MAX_CONCURRENT queries in flight for all of PROMETHEUS_TIMEOUT:
 *     Prometheus answers, rollguard asked faster)       -> hold, whatever onPrometheusDown says;
 *                                                          a P0 rule's that rolls back also escalates (a human
 *                                                          hears of it now, and again at HOLD_MAX_AGE)
 *  3. action: notify                                    -> notify_only
 *  4. sloAtRisk (P1), first look                        -> recheck_later at now + recheckAfter (default 10m)
 *     (the re-check confirms again and calls decide with recheck: true)
 *  5. maintenanceWindow (P1, P2): inside the window     -> rollback_now; else scheduled at the next window start
 *  6. P2                                                -> notify_only ("hotfix forward")
 *  7. P1                                                -> rollback_now, requiresApproval = guards.approval.required
 *  8. P0                                                -> rollback_now (never waits for approval)
 */

export type Decision = 'rollback_now' | 'recheck_later' | 'scheduled' | 'notify_only' | 'hold' | 'no_action';

export interface DecisionResult {
  decision: Decision;
  /** ms: when to re-check (recheck_later), when the window opens (scheduled), when to retry (hold) */
  at?: number;
  reason: string;
  /** rollback_now / scheduled on a P1 rule whose guards ask for approval */
  requiresApproval?: boolean;
  /** hold on an error, or a P0 rule's hold for want of a turn at Prometheus: tell a human (a log line, rollguard_escalations_total, a notification) */
  escalate?: boolean;
  /** scheduled: the window occurrence */
  window?: { startMs: number; endMs: number };
}

export interface DecideInput {
  rule: Pick<Rule, 'name' | 'priority' | 'action' | 'sloAtRisk' | 'recheckAfterMs' | 'maintenanceWindow' | 'guards'>;
  alert: Pick<Alert, 'status'>;
  confirmation: Pick<Confirmation, 'outcome' | 'reason' | 'onPrometheusDown' | 'busy'>;
  now: number;
  /** true on the delayed re-check of an sloAtRisk rule */
  recheck?: boolean;
  /** ms to wait before retrying when holding (Prometheus down or answering an error; default 60s) */
  holdRetryMs?: number;
}

export function decide(input: DecideInput): DecisionResult {
  const { rule, alert, confirmation: c, now } = input;
  if (alert.status === 'resolved') return { decision: 'no_action', reason: 'the alert is resolved' };

  let why: string;
  switch (c.outcome) {
    case 'confirmed':
      why = `trigger confirmed: ${c.reason}`;
      break;
    case 'not_confirmed':
      return { decision: 'no_action', reason: `trigger not confirmed by Prometheus: ${c.reason}` };
    case 'insufficient_data':
      return { decision: 'no_action', reason: `not enough data to confirm the trigger: ${c.reason}` };
    case 'error':
      return {
        decision: 'hold',
        at: now + (input.holdRetryMs ?? 60_000),
        escalate: true,
        reason: `trigger could not be evaluated, holding (never acting unconfirmed): ${c.reason}`,
      };
    case 'prometheus_down': {
      if (c.busy) {
        return {
          decision: 'hold',
          at: now + (input.holdRetryMs ?? 60_000),
          // a P0 rollback is "automatic and immediate": a human hears of it now (a notify-only rule rolls nothing back)
          ...(rule.priority === 'P0' && rule.action !== 'notify' ? { escalate: true } : {}),
          reason: `no turn at Prometheus (PROMETHEUS_MAX_CONCURRENT), holding whatever onPrometheusDown says (never acting unconfirmed): ${c.reason}`,
        };
      }
      const policy = c.onPrometheusDown ?? (rule.priority === 'P0' ? 'act' : 'hold');
      if (policy === 'hold') {
        return { decision: 'hold', at: now + (input.holdRetryMs ?? 60_000), reason: `Prometheus unreachable, holding (onPrometheusDown: hold): ${c.reason}` };
      }
      if (policy === 'notify') return { decision: 'notify_only', reason: `Prometheus unreachable, notifying only (onPrometheusDown: notify): ${c.reason}` };
      why = `Prometheus unreachable, trusting the alert (onPrometheusDown: act)`;
      break;
    }
  }

  if (rule.action === 'notify') return { decision: 'notify_only', reason: `${why}; the rule's action is notify` };

  if (rule.sloAtRisk && !input.recheck) {
    return {
      decision: 'recheck_later',
      at: now + rule.recheckAfterMs,
      reason: `${why}; SLO at risk: re-check in ${Math.round(rule.recheckAfterMs / 60_000)}m and roll back if still true`,
    };
  }
  const recheckNote = input.recheck ? ' (still true on re-check)' : '';
  const approval = rule.priority === 'P1' && rule.guards.approval.required;

  if (rule.maintenanceWindow && rule.priority !== 'P0') {
    const w = rule.maintenanceWindow;
    if (inMaintenanceWindow(w, now)) {
      return withApproval({ decision: 'rollback_now', reason: `${why}${recheckNote}; inside maintenance window "${w.source}"` }, approval);
    }
    const o = nextMaintenanceWindow(w, now);
    return withApproval(
      {
        decision: 'scheduled',
        at: o.startMs,
        window: o,
        reason: `${why}${recheckNote}; ${rule.priority} rollback scheduled into maintenance window "${w.source}" at ${new Date(o.startMs).toISOString()}`,
      },
      approval,
    );
  }

  switch (rule.priority) {
    case 'P2':
      return { decision: 'notify_only', reason: `${why}; P2: notify and hotfix forward, no rollback` };
    case 'P1':
      return withApproval({ decision: 'rollback_now', reason: `${why}${recheckNote}; P1: roll back now${approval ? ' once approved' : ''}` }, approval);
    case 'P0':
      return { decision: 'rollback_now', reason: `${why}${recheckNote}; P0: roll back now` };
  }
}

function withApproval(r: DecisionResult, approval: boolean): DecisionResult {
  return approval ? { ...r, requiresApproval: true } : r;
}

/** Counts a decision in rollguard_decisions_total. */
export function recordDecision(metrics: Pick<Metrics, 'decisions'>, rule: { name: string }, d: DecisionResult): void {
  metrics.decisions.inc({ rule: rule.name, decision: d.decision });
}
