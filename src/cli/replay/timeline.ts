import type { RangeSeries } from '../../prometheus/client.js';
import type { ReplayAlert } from './types.js';

/**
 * Rebuilds each alert's firing intervals from `timestamp(ALERTS{alertstate="firing"})` range
 * results (history.ts reads them in chunks). At every step the value is the timestamp of the
 * ALERTS sample Prometheus picked, so the distinct values are the rule evaluations at which the
 * alert was firing, whether the TSDB ended each interval with a staleness marker (a live
 * Prometheus) or not (blocks backfilled with promtool, where the last sample lingers for the
 * 5-minute lookback).
 *
 * An interval ends where two successive evaluations are more than 1.5 evaluation intervals apart.
 * The evaluation interval of an alerting rule is the smallest gap between two of its evaluations
 * seen anywhere in the range (per alertname, as a rule group evaluates all its rules at one
 * interval), unless --eval-interval gives it. An interval's end is its last evaluation plus one
 * evaluation interval (when Prometheus found it no longer firing).
 */

export interface TimelineOptions {
  fromMs: number;
  toMs: number;
  /** the query step, ms: the fallback evaluation interval */
  stepMs: number;
  /** the alerting rules' evaluation interval, when known (--eval-interval) */
  evalIntervalMs?: number;
  /** labels added to every alert when absent, as Prometheus adds its external_labels (--label) */
  extraLabels?: Record<string, string>;
}

/** Collects range results (any number of chunks) into each alert's evaluation times. */
export class AlertSamples {
  private readonly byKey = new Map<string, { labels: Record<string, string>; times: Set<number> }>();

  add(result: RangeSeries[]): void {
    for (const s of result) {
      const labels: Record<string, string> = {};
      for (const [k, v] of Object.entries(s.labels)) if (k !== '__name__' && k !== 'alertstate') labels[k] = v;
      const key = labelKey(labels);
      let e = this.byKey.get(key);
      if (!e) this.byKey.set(key, (e = { labels, times: new Set() }));
      for (const p of s.samples) if (Number.isFinite(p.v)) e.times.add(Math.round(p.v * 1000));
    }
  }

  get series(): number {
    return this.byKey.size;
  }

  /** The firing intervals, ordered by start (then fingerprint). */
  intervals(o: TimelineOptions): ReplayAlert[] {
    const sorted = [...this.byKey.values()].map((e) => ({ labels: e.labels, times: [...e.times].sort((a, b) => a - b) }));
    const interval = new Map<string, number>();
    for (const s of sorted) {
      const name = s.labels.alertname ?? '';
      for (let i = 1; i < s.times.length; i++) {
        const d = s.times[i]! - s.times[i - 1]!;
        if (d >= 1000 && d < (interval.get(name) ?? Infinity)) interval.set(name, d);
      }
    }
    const out: ReplayAlert[] = [];
    for (const s of sorted) {
      const every = o.evalIntervalMs ?? interval.get(s.labels.alertname ?? '') ?? o.stepMs;
      const labels = { ...(o.extraLabels ?? {}), ...s.labels };
      const fingerprint = alertFingerprint(labels);
      let first = s.times[0];
      for (let i = 0; i < s.times.length; i++) {
        const t = s.times[i]!;
        const next = s.times[i + 1];
        if (next !== undefined && next - t <= 1.5 * every) continue;
        const a: ReplayAlert = { fingerprint, labels, startsAt: first!, startedBeforeRange: first! <= o.fromMs };
        // evaluations up to the end of the range: still firing there, no end
        if (next !== undefined || t + 1.5 * every < o.toMs) a.endsAt = t + every;
        out.push(a);
        first = next;
      }
    }
    return out.sort((a, b) => a.startsAt - b.startsAt || (a.fingerprint < b.fingerprint ? -1 : a.fingerprint > b.fingerprint ? 1 : 0));
  }
}

function labelKey(labels: Record<string, string>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const FNV_OFFSET = 14695981039346656037n;
const FNV_PRIME = 1099511628211n;
const MASK = (1n << 64n) - 1n;

/** Alertmanager's fingerprint of a label set (Prometheus model.LabelSet.Fingerprint: FNV-1a 64 over sorted names and values, 0xff between). */
export function alertFingerprint(labels: Record<string, string>): string {
  let h = FNV_OFFSET;
  const add = (bytes: Uint8Array) => {
    for (const b of bytes) h = ((h ^ BigInt(b)) * FNV_PRIME) & MASK;
  };
  const sep = Uint8Array.of(0xff);
  const enc = new TextEncoder();
  for (const name of Object.keys(labels).sort()) {
    add(enc.encode(name));
    add(sep);
    add(enc.encode(labels[name]!));
    add(sep);
  }
  return h.toString(16).padStart(16, '0');
}
