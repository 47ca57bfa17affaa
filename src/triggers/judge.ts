import type { RangeSeries } from '../prometheus/client.js';
import type { CompareOp } from './types.js';

/**
 * Judging a range-query result over a trigger's window. The condition must have held at every
 * sample Prometheus returned in the window, and enough samples must be there:
 *
 * - confirmed: some series has at least ceil(expected × minCoverage) finite samples in the
 *   window and every one of them satisfies `value OP threshold` (or `value OP threshold × baseline`);
 * - not_confirmed: a series has enough samples but dipped below the threshold at least once
 *   (a flapping or recovered condition), and no series is confirmed;
 * - insufficient_data: no series has enough samples (no data, NaN from 0/0, a stale alert whose
 *   series stopped), so nothing is rolled back on a guess.
 *
 * A sample that is not finite (NaN, +Inf, -Inf) counts as missing, and so does a baseline that is
 * not: x/0 is +Inf (a container without a memory limit divides by a limit of 0), and +Inf would
 * meet every `>` threshold, a baseline of +Inf every `<` one. Until 2026-12-07 only NaN did.
 *
 * expected = floor((end - start) / step) + 1, the number of steps query_range evaluates.
 */

export type JudgeOutcome = 'confirmed' | 'not_confirmed' | 'insufficient_data';

export interface JudgeWindow {
  startMs: number;
  endMs: number;
  stepMs: number;
  op: CompareOp;
  threshold: number;
  minCoverage: number;
  /** baseline value for a series' labels, when the trigger is baseline-relative */
  baseline?: (labels: Record<string, string>) => number | undefined;
  /** with a baseline: the value must also exceed this floor (for > and >=) */
  minValue?: number;
}

export interface SeriesJudgement {
  labels: Record<string, string>;
  outcome: JudgeOutcome;
  samples: number;
  /** samples satisfying the condition */
  held: number;
  /** the limit compared against (threshold, or threshold × baseline) */
  limit?: number;
  baseline?: number;
  lastValue?: number;
  /** the sample furthest on the "healthy" side of the limit */
  worstValue?: number;
  /** first sample (ms) that did not satisfy the condition */
  firstDipAt?: number;
}

export interface Judgement {
  outcome: JudgeOutcome;
  reason: string;
  expectedSamples: number;
  requiredSamples: number;
  /** the series that decided the outcome (the confirmed one, else the closest) */
  series?: SeriesJudgement;
  all: SeriesJudgement[];
}

export function compare(v: number, op: CompareOp, limit: number): boolean {
  switch (op) {
    case '>':
      return v > limit;
    case '>=':
      return v >= limit;
    case '<':
      return v < limit;
    case '<=':
      return v <= limit;
  }
}

export function expectedSamples(startMs: number, endMs: number, stepMs: number): number {
  return Math.floor((endMs - startMs) / stepMs) + 1;
}

export function judgeSeries(s: RangeSeries, w: JudgeWindow, required: number): SeriesJudgement {
  const points = s.samples.filter((p) => p.t >= w.startMs && p.t <= w.endMs && Number.isFinite(p.v));
  const baseline = w.baseline?.(s.labels);
  const out: SeriesJudgement = { labels: s.labels, outcome: 'insufficient_data', samples: points.length, held: 0 };
  if (w.baseline) {
    if (baseline === undefined || !Number.isFinite(baseline)) return out; // no baseline (or ±Inf): cannot judge relative to it
    out.baseline = baseline;
  }
  const limit = baseline === undefined ? w.threshold : w.threshold * baseline;
  out.limit = limit;
  const upward = w.op === '>' || w.op === '>=';
  for (const p of points) {
    let ok = compare(p.v, w.op, limit);
    if (ok && baseline !== undefined && w.minValue !== undefined && upward) ok = p.v > w.minValue;
    if (ok) out.held++;
    else if (out.firstDipAt === undefined) out.firstDipAt = p.t;
    if (out.worstValue === undefined || (upward ? p.v < out.worstValue : p.v > out.worstValue)) out.worstValue = p.v;
  }
  if (points.length > 0) out.lastValue = points[points.length - 1]!.v;
  if (points.length < required) out.outcome = 'insufficient_data';
  else out.outcome = out.held === points.length ? 'confirmed' : 'not_confirmed';
  return out;
}

export function judge(result: RangeSeries[], w: JudgeWindow): Judgement {
  const expected = expectedSamples(w.startMs, w.endMs, w.stepMs);
  const required = Math.max(1, Math.ceil(expected * w.minCoverage));
  const all = result.map((s) => judgeSeries(s, w, required));
  const base = { expectedSamples: expected, requiredSamples: required, all };
  const confirmed = all.find((j) => j.outcome === 'confirmed');
  if (confirmed) {
    return {
      ...base,
      outcome: 'confirmed',
      series: confirmed,
      reason: `held at all ${confirmed.samples} of ${expected} samples (value ${fmt(confirmed.lastValue)} ${w.op} ${fmt(confirmed.limit)}${confirmed.baseline !== undefined ? `, ${w.threshold}× baseline ${fmt(confirmed.baseline)}` : ''})`,
    };
  }
  const dipped = all.filter((j) => j.outcome === 'not_confirmed').sort((a, b) => b.held / b.samples - a.held / a.samples)[0];
  if (dipped) {
    return {
      ...base,
      outcome: 'not_confirmed',
      series: dipped,
      reason: `did not hold through the window: ${dipped.samples - dipped.held} of ${dipped.samples} samples not ${w.op} ${fmt(dipped.limit)} (worst ${fmt(dipped.worstValue)}, first at ${new Date(dipped.firstDipAt ?? 0).toISOString()})`,
    };
  }
  if (all.length === 0) return { ...base, outcome: 'insufficient_data', reason: 'the query returned no series in the window' };
  const most = [...all].sort((a, b) => b.samples - a.samples)[0]!;
  if (w.baseline && most.baseline === undefined && all.every((j) => j.baseline === undefined)) {
    return { ...base, outcome: 'insufficient_data', series: most, reason: 'no baseline value for the series' };
  }
  return {
    ...base,
    outcome: 'insufficient_data',
    series: most,
    reason: `only ${most.samples} of ${expected} samples in the window (need ${required})`,
  };
}

function fmt(v: number | undefined): string {
  if (v === undefined) return '?';
  if (!Number.isFinite(v)) return String(v);
  return String(Number(v.toPrecision(4)));
}
