import type { Metrics } from '../metrics.js';

/**
 * A small client for Prometheus' HTTP API (/api/v1/query and /api/v1/query_range), with `fetch`.
 * Times are milliseconds since the epoch in and out (the API itself speaks seconds).
 *
 * Two error types, because the engine treats them differently:
 * - PrometheusUnavailableError: Prometheus could not answer (connection refused, timeout, 5xx,
 *   a body that is not the API's JSON). The rule's onPrometheusDown policy applies.
 * - PrometheusQueryError: Prometheus answered that the query is bad (HTTP 400/422, errorType
 *   bad_data / execution). That is a rule bug, never a reason to act.
 */

export interface Sample {
  /** ms since epoch */
  t: number;
  v: number;
}

export interface RangeSeries {
  labels: Record<string, string>;
  samples: Sample[];
}

export interface InstantSample {
  labels: Record<string, string>;
  t: number;
  v: number;
}

export class PrometheusUnavailableError extends Error {
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
    this.name = 'PrometheusUnavailableError';
  }
}

export class PrometheusQueryError extends Error {
  constructor(
    message: string,
    readonly errorType: string,
    readonly query: string,
  ) {
    super(message);
    this.name = 'PrometheusQueryError';
  }
}

export interface PrometheusClientOptions {
  /** base URL, e.g. http://prometheus:9090 (a path prefix like /prometheus is kept) */
  url: string;
  /** per-request timeout, default 5000 ms */
  timeoutMs?: number;
  headers?: Record<string, string>;
  metrics?: Pick<Metrics, 'prometheusQueries'>;
  fetch?: typeof fetch;
}

export interface PrometheusApi {
  query(expr: string, timeMs: number): Promise<InstantSample[]>;
  queryRange(expr: string, startMs: number, endMs: number, stepMs: number): Promise<RangeSeries[]>;
}

export function parseValue(s: string): number {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  return Number(s);
}

export class PrometheusClient implements PrometheusApi {
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly doFetch: typeof fetch;

  constructor(private readonly opts: PrometheusClientOptions) {
    this.base = opts.url.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.doFetch = opts.fetch ?? fetch;
  }

  async query(expr: string, timeMs: number): Promise<InstantSample[]> {
    const data = await this.call('/api/v1/query', expr, { time: secs(timeMs) });
    if (data.resultType === 'scalar') {
      const [t, v] = data.result as [number, string];
      return [{ labels: {}, t: t * 1000, v: parseValue(v) }];
    }
    if (data.resultType !== 'vector') throw new PrometheusQueryError(`expected a vector result, got ${data.resultType}`, 'bad_result', expr);
    return (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((r) => ({
      labels: r.metric,
      t: r.value[0] * 1000,
      v: parseValue(r.value[1]),
    }));
  }

  async queryRange(expr: string, startMs: number, endMs: number, stepMs: number): Promise<RangeSeries[]> {
    const data = await this.call('/api/v1/query_range', expr, {
      start: secs(startMs),
      end: secs(endMs),
      step: String(stepMs / 1000),
    });
    if (data.resultType !== 'matrix') throw new PrometheusQueryError(`expected a matrix result, got ${data.resultType}`, 'bad_result', expr);
    return (data.result as Array<{ metric: Record<string, string>; values: Array<[number, string]> }>).map((r) => ({
      labels: r.metric,
      samples: r.values.map(([t, v]) => ({ t: Math.round(t * 1000), v: parseValue(v) })),
    }));
  }

  private async call(path: string, expr: string, params: Record<string, string>): Promise<{ resultType: string; result: unknown }> {
    const body = new URLSearchParams({ query: expr, ...params });
    let res: Response;
    let text: string;
    try {
      res = await this.doFetch(this.base + path, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(this.opts.headers ?? {}) },
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await res.text();
    } catch (e) {
      this.count('unreachable');
      const err = e as Error;
      const why = err.name === 'TimeoutError' ? `timed out after ${this.timeoutMs}ms` : describeFetchError(err);
      throw new PrometheusUnavailableError(`Prometheus at ${this.base} unreachable: ${why}`, e);
    }
    let json: { status?: string; data?: { resultType: string; result: unknown }; errorType?: string; error?: string } | undefined;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.status >= 500 || res.status === 429 || json === undefined || typeof json !== 'object' || json === null) {
      // 503 while starting up or shutting down, proxies' 502/504, HTML error pages: Prometheus did not answer
      this.count('unreachable');
      const detail = json?.error ?? text.slice(0, 200);
      throw new PrometheusUnavailableError(`Prometheus at ${this.base} answered HTTP ${res.status}: ${detail}`);
    }
    if (json.status !== 'success' || !json.data) {
      this.count('error');
      throw new PrometheusQueryError(
        `Prometheus refused the query (${json.errorType ?? `HTTP ${res.status}`}): ${json.error ?? 'no error message'}`,
        json.errorType ?? 'unknown',
        expr,
      );
    }
    this.count('ok');
    return json.data;
  }

  private count(outcome: 'ok' | 'error' | 'unreachable'): void {
    this.opts.metrics?.prometheusQueries.inc({ outcome });
  }
}

function secs(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function describeFetchError(e: Error): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  return e.message;
}
