import { globMatches } from '../../guards/scope.js';
import type { ReplaySummary } from './summary.js';
import type { ReplayAlertResult } from './types.js';

/**
 * `--fail-on COND` (repeatable): the replay exits 1 when any condition holds, so that a CI job on
 * a pull request that changes rule files fails when the rules would have done too much to last
 * month's alerts.
 *
 *   rollbacks>N, rollbacks>=N     more than N (at least N) rollbacks in the range
 *   blocked>N, approvals>N, not-confirmed>N, not-judged>N, unmatched>N   likewise, for the other counts
 *   target:GLOB                   any rollback of a target matching Kind/namespace/name (`*` within a segment)
 *   rule:NAME                     any rollback by that rule
 */

export type FailOn =
  | { kind: 'count'; source: string; counter: Counter; op: '>' | '>='; n: number }
  | { kind: 'target'; source: string; glob: string }
  | { kind: 'rule'; source: string; rule: string };

const COUNTERS = {
  rollbacks: (s: ReplaySummary) => s.rollbacks,
  blocked: (s: ReplaySummary) => s.outcomes.blocked,
  approvals: (s: ReplaySummary) => s.outcomes.approval,
  'not-confirmed': (s: ReplaySummary) => s.outcomes.not_confirmed,
  'not-judged': (s: ReplaySummary) => s.notJudged,
  unmatched: (s: ReplaySummary) => Object.values(s.unmatched).reduce((a, b) => a + b, 0),
} as const;
type Counter = keyof typeof COUNTERS;

export class FailOnError extends Error {
  override name = 'FailOnError';
}

export function parseFailOn(text: string): FailOn {
  const s = text.trim();
  const count = /^([a-z-]+)\s*(>=|>)\s*(\d+)$/.exec(s);
  if (count) {
    const counter = count[1]!;
    if (!(counter in COUNTERS)) throw new FailOnError(`--fail-on "${text}": unknown count "${counter}" (expected one of ${Object.keys(COUNTERS).join(', ')})`);
    return { kind: 'count', source: s, counter: counter as Counter, op: count[2] as '>' | '>=', n: Number(count[3]) };
  }
  const target = /^target:(.+)$/.exec(s);
  if (target) {
    const glob = target[1]!.trim();
    if (glob.split('/').length !== 3) throw new FailOnError(`--fail-on "${text}": expected target:Kind/namespace/name (globs with *), e.g. target:Deployment/prod/*`);
    return { kind: 'target', source: s, glob };
  }
  const rule = /^rule:(.+)$/.exec(s);
  if (rule) return { kind: 'rule', source: s, rule: rule[1]!.trim() };
  throw new FailOnError(`--fail-on "${text}": expected rollbacks>N, rollbacks>=N (or blocked, approvals, not-confirmed, not-judged, unmatched), target:Kind/namespace/name or rule:NAME`);
}

/** The conditions that hold, each with why ("rollbacks>3: 4 rollbacks"). */
export function failing(conds: readonly FailOn[], summary: ReplaySummary, results: readonly ReplayAlertResult[]): string[] {
  const rollbacks = results.flatMap(({ rows }) => rows.filter((r) => r.outcome === 'rolled_back'));
  const out: string[] = [];
  for (const c of conds) {
    if (c.kind === 'count') {
      const v = COUNTERS[c.counter](summary);
      if (c.op === '>' ? v > c.n : v >= c.n) out.push(`${c.source}: ${v} ${c.counter}`);
      continue;
    }
    const hits = rollbacks.filter((r) => (c.kind === 'target' ? globMatches(c.glob, r.target) : r.rule === c.rule));
    if (hits.length > 0) {
      out.push(`${c.source}: ${hits.map((r) => `${r.target} rolled back at ${new Date(r.at).toISOString()} by rule ${r.rule}`).join('; ')}`);
    }
  }
  return out;
}
