import type { RuleSet } from '../../rules/ruleset.js';
import { OUTCOMES, type ReplayAlertResult, type ReplayOutcome } from './types.js';

/** The totals of a replay: what the report's summary shows and what --fail-on tests. */
export interface ReplaySummary {
  /** alerts whose start is in the range, each looked at */
  alerts: number;
  /** alerts already firing at --from (not replayed) */
  alreadyFiring: number;
  /** rows per outcome (a row = one alert, rule and target) */
  outcomes: Record<ReplayOutcome, number>;
  rollbacks: number;
  rollbacksByTarget: Record<string, number>;
  rollbacksByRule: Record<string, number>;
  /** blocked rows per guard (and dry-run, approval) */
  blockedByGuard: Record<string, number>;
  /** alerts no rule matched, per alertname */
  unmatched: Record<string, number>;
  /** loaded rules that matched no alert in the range */
  rulesNeverFired: string[];
  /** rows where something was assumed or could not be judged (the rollout start) */
  notJudged: number;
  /** alert start to would-be rollback, ms */
  timeToRollback?: { min: number; median: number; max: number };
}

export function summarise(results: readonly ReplayAlertResult[], rules: RuleSet): ReplaySummary {
  const s: ReplaySummary = {
    alerts: 0,
    alreadyFiring: 0,
    outcomes: Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<ReplayOutcome, number>,
    rollbacks: 0,
    rollbacksByTarget: {},
    rollbacksByRule: {},
    blockedByGuard: {},
    unmatched: {},
    rulesNeverFired: [],
    notJudged: 0,
  };
  const fired = new Set<string>();
  const ttr: number[] = [];
  const inc = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);
  for (const { alert, rows } of results) {
    if (alert.startedBeforeRange) {
      s.alreadyFiring++;
      continue;
    }
    s.alerts++;
    if (rows.length === 0) inc(s.unmatched, alert.labels.alertname ?? '(no alertname)');
    for (const r of rows) {
      fired.add(r.rule);
      s.outcomes[r.outcome]++;
      if (r.outcome === 'not_judged' || r.notJudged.length > 0) s.notJudged++;
      if (r.outcome === 'rolled_back') {
        s.rollbacks++;
        inc(s.rollbacksByTarget, r.target);
        inc(s.rollbacksByRule, r.rule);
        ttr.push(r.at - alert.startsAt);
      }
      if (r.outcome === 'blocked' && r.guard) inc(s.blockedByGuard, r.guard);
    }
  }
  s.rulesNeverFired = rules.rules.map((r) => r.name).filter((n) => !fired.has(n));
  if (ttr.length > 0) {
    ttr.sort((a, b) => a - b);
    s.timeToRollback = { min: ttr[0]!, median: ttr[Math.floor((ttr.length - 1) / 2)]!, max: ttr[ttr.length - 1]! };
  }
  return s;
}
