import type { PrometheusApi } from '../../prometheus/client.js';
import { AlertSamples } from './timeline.js';

/**
 * Reads the firing alerts of a range from Prometheus' own record of them, the ALERTS series every
 * alerting rule writes (`ALERTS{alertname, alertstate="firing", <alert labels>} 1` at each
 * evaluation while the alert fires). One query_range per chunk: Prometheus refuses a range of more
 * than 11,000 points per series, so a chunk spans at most 10,999 steps, and the next starts one
 * step after it.
 */

export const ALERTS_QUERY = 'timestamp(ALERTS{alertstate="firing"})';

/** Prometheus' limit on (end - start) / step for query_range. */
export const MAX_POINTS_PER_SERIES = 11_000;

export interface HistoryOptions {
  fromMs: number;
  toMs: number;
  stepMs: number;
  /** called after each chunk: chunks read, chunks in all */
  onChunk?: (done: number, total: number) => void;
}

/** The chunks [start, end] covering [from, to], each at most MAX_POINTS_PER_SERIES - 1 steps long. */
export function chunks(fromMs: number, toMs: number, stepMs: number): Array<{ startMs: number; endMs: number }> {
  const span = (MAX_POINTS_PER_SERIES - 1) * stepMs;
  const out: Array<{ startMs: number; endMs: number }> = [];
  for (let s = fromMs; s <= toMs; s += span + stepMs) out.push({ startMs: s, endMs: Math.min(toMs, s + span) });
  return out;
}

export async function readAlerts(prometheus: PrometheusApi, o: HistoryOptions): Promise<AlertSamples> {
  const samples = new AlertSamples();
  const list = chunks(o.fromMs, o.toMs, o.stepMs);
  for (const [i, c] of list.entries()) {
    samples.add(await prometheus.queryRange(ALERTS_QUERY, c.startMs, c.endMs, o.stepMs));
    o.onChunk?.(i + 1, list.length);
  }
  return samples;
}
