import { PrometheusQueryError, type PrometheusApi } from '../../prometheus/client.js';
import { ReplayAbort } from './limits.js';
import { AlertSamples } from './timeline.js';

/**
 * Reads the firing alerts of a range from Prometheus' own record of them, the ALERTS series every
 * alerting rule writes (`ALERTS{alertname, alertstate="firing", <alert labels>} 1` at each
 * evaluation while the alert fires). One query_range per chunk: Prometheus refuses a range of more
 * than 11,000 points per series, so a chunk spans at most 10,999 steps, and the next starts one
 * step after it.
 *
 * The answers are bounded (HISTORY_MAX_RESPONSE_BYTES, the replay's client): thousands of ALERTS
 * series, or huge label sets, over 10,999 steps would be gigabytes read and parsed in one go. A
 * chunk whose answer is over the bound is read again as two halves, each query counted against
 * --max-queries; a single step still over it stops the replay, saying so.
 */

/** The most bytes of one answer the replay reads about history (ALERTS, kube-state-metrics). */
export const HISTORY_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

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
    await readChunk(prometheus, samples, c.startMs, c.endMs, o.stepMs);
    o.onChunk?.(i + 1, list.length);
  }
  return samples;
}

/** One chunk; over the answer's bound, its two halves (steps on the same grid). */
async function readChunk(prometheus: PrometheusApi, samples: AlertSamples, startMs: number, endMs: number, stepMs: number): Promise<void> {
  let result;
  try {
    result = await prometheus.queryRange(ALERTS_QUERY, startMs, endMs, stepMs);
  } catch (e) {
    if (!(e instanceof PrometheusQueryError) || e.errorType !== 'too_large') throw e;
    const steps = Math.floor((endMs - startMs) / stepMs);
    if (steps < 1) {
      throw new ReplayAbort('--from', `the firing ALERTS series at ${new Date(startMs).toISOString()} alone are more than one answer may hold (${HISTORY_MAX_RESPONSE_BYTES} bytes): too many alerts firing at once, or labels too large, to replay; replay a range without that time`);
    }
    const mid = startMs + Math.floor(steps / 2) * stepMs;
    await readChunk(prometheus, samples, startMs, mid, stepMs);
    await readChunk(prometheus, samples, mid + stepMs, endMs, stepMs);
    return;
  }
  samples.add(result);
}
