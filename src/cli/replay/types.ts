/**
 * What `rollguard replay` works on and produces: alerts rebuilt from Prometheus' ALERTS history,
 * and, per alert, what rollguard would have done with it (one row per matched rule and target).
 */

/** One firing interval of one alert, as Alertmanager would have sent it. */
export interface ReplayAlert {
  /** Alertmanager's fingerprint of the labels (FNV-1a 64, as model.LabelSet.Fingerprint) */
  fingerprint: string;
  /** the alert's labels: ALERTS' labels without alertstate, plus any --label */
  labels: Record<string, string>;
  /** the first firing sample (Alertmanager's startsAt), ms */
  startsAt: number;
  /** when it stopped firing (last sample + one evaluation interval), ms; undefined: still firing at --to */
  endsAt?: number;
  /** it was already firing at --from: its start is not in the range, and it is not replayed */
  startedBeforeRange: boolean;
}

/**
 * What rollguard would have done for one (alert, rule, target):
 * - rolled_back: every guard allowed it
 * - blocked: a guard blocked it (`guard`)
 * - approval: it would have waited for a human's approval (nothing is assumed about the answer)
 * - dry_run: the rule is dry-run: recorded, nothing changed
 * - not_confirmed: Prometheus did not confirm the trigger (or it had too little data)
 * - resolved: the alert resolved before its re-check or its maintenance window
 * - notified: notify only (P2 "hotfix forward", or action: notify)
 * - held: the trigger could not be evaluated (an error answer): held and escalated
 * - not_judged: something the decision needs is not in Prometheus (the rollout start)
 * - error: the rule's targets do not resolve from the alert's labels
 */
export type ReplayOutcome = 'rolled_back' | 'blocked' | 'approval' | 'dry_run' | 'not_confirmed' | 'resolved' | 'notified' | 'held' | 'not_judged' | 'error';

export const OUTCOMES: readonly ReplayOutcome[] = ['rolled_back', 'blocked', 'approval', 'dry_run', 'not_confirmed', 'resolved', 'notified', 'held', 'not_judged', 'error'];

export interface GuardStep {
  guard: string;
  /** allow, block, wait, or not_judged (the rollout start is unknown) */
  result: 'allow' | 'block' | 'wait' | 'not_judged';
  reason: string;
}

export interface ReplayRow {
  rule: string;
  priority: string;
  /** Kind/namespace/name, or unresolved/RULE */
  target: string;
  outcome: ReplayOutcome;
  /** when it was decided (the rollback's time for rolled_back), ms */
  at: number;
  /** the guard that blocked (blocked), waited (approval) or dry-run */
  guard?: string;
  /** why, in words (the engine's own reasons) */
  reason: string;
  /** the confirmation that decided, with the measured value as people read it */
  confirmation?: { outcome: string; reason: string; query?: string; value?: number; limit?: number; measured?: string };
  /** re-checks and maintenance windows on the way: "recheck_later at T", "scheduled at T" */
  decisions: Array<{ at: number; decision: string; reason: string }>;
  guards: GuardStep[];
  /** what could not be judged from history, and was assumed (recent-deploy without a rollout start) */
  notJudged: string[];
  /** approval: when the request would have expired, ms */
  until?: number;
}

export interface ReplayAlertResult {
  alert: ReplayAlert;
  /** one per matched rule and target, in the order rollguard handles them; [] = no rule matches */
  rows: ReplayRow[];
}
