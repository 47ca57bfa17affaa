import { z } from 'zod';
import type { Metrics } from '../metrics.js';
import { redactUrl } from '../redact.js';
import { BodyTooLarge, readAtMost } from '../read-body.js';
import { P0_EXTRA_CALLS, Turns, TurnTimeoutError, type Precedence } from '../turns.js';

/**
 * A small client for Prometheus' HTTP API (/api/v1/query and /api/v1/query_range), with `fetch`.
 * Times are milliseconds since the epoch in and out (the API itself speaks seconds).
 *
 * Credentials in the URL (http://user:password@prometheus:9090, as an auth proxy in front of
 * Prometheus wants them) are sent as a basic-auth header: fetch refuses URLs carrying them. The
 * URL is printed (errors, hence records, logs and notifications) without them and without its
 * query string: `redactUrl` (src/redact.ts) as a base URL.
 *
 * Two error types, because the engine treats them differently:
 * - PrometheusUnavailableError: Prometheus is down: the connection failed or timed out
 *   (PROMETHEUS_TIMEOUT without an answer), it (or a proxy in front of it) answered 5xx without
 *   the API's JSON error (a proxy's 502/504, the "Service Unavailable" page Prometheus serves
 *   while starting up), or the API's error `unavailable` (its TSDB not open yet). The rule's
 *   onPrometheusDown policy applies.
 * - PrometheusQueryError: an answer came, and it is an error: Prometheus' own JSON error of any
 *   other errorType, whatever its HTTP status (the list below), a refused request
 *   (an auth proxy's 401/403, 413, any other 4xx), a redirect (a login page), a body that is not
 *   the API's JSON, or an answer over PROMETHEUS_MAX_RESPONSE_BYTES (`too_large`). Prometheus is
 *   up and the request cannot succeed as it is: the engine holds and escalates, never acts
 *   unconfirmed. Until 2026-12-07 a 5xx was "down" whatever its body, so a query running past
 *   Prometheus' --query.timeout (HTTP 503, `timeout`) made a P0 rule (onPrometheusDown: act) roll
 *   back on the alert alone.
 */

/*
 * Prometheus' API (web/api/v1/api.go, respondError) answers each errorType with an HTTP status:
 * bad_data 400, execution 422, canceled 499, timeout 503, internal 500 (a storage error), not_found
 * 404, not_acceptable 406, and unavailable 500 (tsdb.ErrNotReady: its TSDB not open yet). Only
 * `unavailable` says Prometheus is down; the others are answers about the query.
 */

/** What to do about Prometheus' error answer of this errorType, for the record and the page. */
function errorHint(errorType: string): string {
  switch (errorType) {
    case 'timeout':
      return ": the query runs longer than Prometheus allows (its --query.timeout, or the timeout rollguard sends: PROMETHEUS_TIMEOUT less a margin): make it cheaper (aggregate it, e.g. sum by (namespace, deployment) (...), select fewer series, a shorter range or a longer step) or raise the smaller of the two";
    case 'internal':
      return ": Prometheus failed evaluating it (a storage error, or a remote store behind it): see Prometheus' log";
    default:
      return '';
  }
}

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

/**
 * A query waited PROMETHEUS_TIMEOUT for its turn (PROMETHEUS_MAX_CONCURRENT queries in flight all
 * that time) and was never sent. Prometheus is answering, only slower than rollguard asks: not
 * "Prometheus down" for the decision (src/engine/confirm.ts holds, whatever onPrometheusDown says),
 * though callers that only need "no answer" may treat it as unavailable.
 */
export class PrometheusBusyError extends PrometheusUnavailableError {
  constructor(message: string, cause?: unknown) {
    super(message, cause);
    this.name = 'PrometheusBusyError';
  }
}

/**
 * The answers read: float samples, a value a string (`"NaN"`, `"+Inf"` included). A series of
 * native-histogram samples (`histogram`/`histograms` instead of `value`/`values`), or any other
 * shape, fails the parse and is the query's error (`bad_result`), which the trigger's outcome
 * `error` holds and escalates; before 2026-12-07 it threw a TypeError that left the record deciding.
 */
const sample = z.tuple([z.number(), z.string()]);
const vectorResult = z.array(z.object({ metric: z.record(z.string(), z.string()), value: sample }));
const matrixResult = z.array(z.object({ metric: z.record(z.string(), z.string()), values: z.array(sample) }));
const scalarResult = sample;

/** The result as `schema` reads it, else the query's error naming what was not float samples. */
function resultOf<T>(schema: z.ZodType<T>, result: unknown, resultType: string, expr: string): T {
  const r = schema.safeParse(result);
  if (r.success) return r.data;
  const histograms = Array.isArray(result) && result.some((x) => typeof x === 'object' && x !== null && ('histogram' in x || 'histograms' in x));
  throw new PrometheusQueryError(
    histograms
      ? `the ${resultType} answer holds native-histogram samples, not float samples: query a float of them (histogram_quantile(), histogram_count(), histogram_sum(), histogram_fraction())`
      : `the ${resultType} answer is not float samples as the HTTP API gives them (${r.error.issues[0]?.path.join('.') ?? ''}: ${r.error.issues[0]?.message ?? ''})`,
    'bad_result',
    expr,
  );
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
  metrics?: Pick<Metrics, 'prometheusQueries'> & Partial<Pick<Metrics, 'dependencyCallsWaiting'>>;
  fetch?: typeof fetch;
  /**
   * The most bytes of one answer read (PROMETHEUS_MAX_RESPONSE_BYTES): past it the request is cut
   * and the query's error is `too_large`. An answer read in full is parsed in one go, blocking the
   * event loop, at about 20 times its size in heap. Unset: no bound (the CLI's one-off commands).
   */
  maxResponseBytes?: number;
  /**
   * Queries sent at once (PROMETHEUS_MAX_CONCURRENT); more wait their turn, P0 alerts' first
   * (src/turns.ts), at most timeoutMs (then PrometheusBusyError, never sent); one sent has all of
   * timeoutMs to be answered. Unset: no bound (the CLI's one-off commands, which send one query
   * at a time or bound their own).
   */
  maxConcurrent?: number;
}

export interface QueryOptions {
  /** whose query waits first when PROMETHEUS_MAX_CONCURRENT are in flight (src/turns.ts); unset: first */
  precedence?: Precedence;
}

export interface PrometheusApi {
  query(expr: string, timeMs: number, opts?: QueryOptions): Promise<InstantSample[]>;
  queryRange(expr: string, startMs: number, endMs: number, stepMs: number, opts?: QueryOptions): Promise<RangeSeries[]>;
}

export function parseValue(s: string): number {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  return Number(s);
}

export class PrometheusClient implements PrometheusApi {
  private readonly base: string;
  /** the base URL as printed (redactUrl, as a base URL) */
  readonly displayUrl: string;
  private readonly authorization: string | undefined;
  private readonly timeoutMs: number;
  private readonly doFetch: typeof fetch;
  private readonly turns: Turns | undefined;

  constructor(private readonly opts: PrometheusClientOptions) {
    const u = new URL(opts.url);
    if (u.username !== '' || u.password !== '') {
      this.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
      u.username = '';
      u.password = '';
    }
    this.base = u.toString().replace(/\/+$/, '');
    this.displayUrl = redactUrl(opts.url, { base: true });
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.doFetch = opts.fetch ?? fetch;
    if (opts.maxConcurrent !== undefined) {
      const waiting = opts.metrics?.dependencyCallsWaiting?.labels({ dependency: 'prometheus' });
      this.turns = new Turns(opts.maxConcurrent, waiting ? (n) => waiting.set(n) : undefined, P0_EXTRA_CALLS);
    }
  }

  async query(expr: string, timeMs: number, opts?: QueryOptions): Promise<InstantSample[]> {
    const data = await this.call('/api/v1/query', expr, { time: secs(timeMs) }, opts);
    if (data.resultType === 'scalar') {
      const [t, v] = resultOf(scalarResult, data.result, 'scalar', expr);
      return [{ labels: {}, t: t * 1000, v: parseValue(v) }];
    }
    if (data.resultType !== 'vector') throw new PrometheusQueryError(`expected a vector result, got ${data.resultType}`, 'bad_result', expr);
    return resultOf(vectorResult, data.result, 'vector', expr).map((r) => ({
      labels: r.metric,
      t: r.value[0] * 1000,
      v: parseValue(r.value[1]),
    }));
  }

  async queryRange(expr: string, startMs: number, endMs: number, stepMs: number, opts?: QueryOptions): Promise<RangeSeries[]> {
    const data = await this.call(
      '/api/v1/query_range',
      expr,
      {
        start: secs(startMs),
        end: secs(endMs),
        step: String(stepMs / 1000),
      },
      opts,
    );
    if (data.resultType !== 'matrix') throw new PrometheusQueryError(`expected a matrix result, got ${data.resultType}`, 'bad_result', expr);
    return resultOf(matrixResult, data.result, 'matrix', expr).map((r) => ({
      labels: r.metric,
      samples: r.values.map(([t, v]) => ({ t: Math.round(t * 1000), v: parseValue(v) })),
    }));
  }

  /**
   * One query in its turn (maxConcurrent). The wait is bounded apart, by PROMETHEUS_TIMEOUT too: a
   * query that waited all of it is never sent (PrometheusBusyError); one that got its turn has all
   * of PROMETHEUS_TIMEOUT to be answered, so a slow line never cuts Prometheus' answer short.
   */
  private async call(path: string, expr: string, params: Record<string, string>, opts?: QueryOptions): Promise<{ resultType: string; result: unknown }> {
    const turns = this.turns;
    if (!turns) return this.send(path, expr, params);
    try {
      return await turns.run(() => this.send(path, expr, params), { precedence: opts?.precedence, waitMs: this.timeoutMs });
    } catch (err) {
      if (!(err instanceof TurnTimeoutError)) throw err;
      this.count('not_sent');
      throw new PrometheusBusyError(
        `Prometheus at ${this.displayUrl}: no turn to query it within PROMETHEUS_TIMEOUT (${this.timeoutMs}ms): PROMETHEUS_MAX_CONCURRENT=${turns.max} queries${opts?.precedence === 0 ? `, and the ${turns.p0Extra} more kept for P0 alerts' queries,` : ''} were in flight all that time; never sent`,
        err,
      );
    }
  }

  private async send(path: string, expr: string, params: Record<string, string>): Promise<{ resultType: string; result: unknown }> {
    // Prometheus's own evaluation timeout, below PROMETHEUS_TIMEOUT: a query too heavy for it is
    // answered 503 `timeout` (an error answer: held and escalated) before rollguard stops waiting,
    // which would read as "Prometheus down" (onPrometheusDown: act rolls a P0 rule back unconfirmed).
    // Until 2026-12-07 none was sent, and Prometheus's default --query.timeout (2m) outlasted ours.
    const body = new URLSearchParams({ query: expr, ...params, timeout: evaluationTimeout(this.timeoutMs) });
    let res: Response;
    let text: string;
    const max = this.opts.maxResponseBytes;
    try {
      res = await this.doFetch(this.base + path, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...(this.authorization ? { authorization: this.authorization } : {}),
          ...(this.opts.headers ?? {}),
        },
        body,
        // a redirect is an answer (an auth proxy's login page), not something to follow
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = max === undefined ? await res.text() : await readAtMost(res, max);
    } catch (e) {
      if (e instanceof BodyTooLarge) {
        this.count('error');
        throw new PrometheusQueryError(
          `Prometheus at ${this.displayUrl} answered more than PROMETHEUS_MAX_RESPONSE_BYTES (${max} bytes) to this query; not read further: aggregate the query to the few series the trigger needs (e.g. sum by (namespace, deployment) (...)) or narrow its selector, or raise PROMETHEUS_MAX_RESPONSE_BYTES`,
          'too_large',
          expr,
        );
      }
      this.count('unreachable');
      const err = e as Error;
      const why = err.name === 'TimeoutError' ? `timed out after ${this.timeoutMs}ms` : describeFetchError(err);
      throw new PrometheusUnavailableError(`Prometheus at ${this.displayUrl} unreachable: ${why}`, e);
    }
    let json: { status?: string; data?: { resultType: string; result: unknown }; errorType?: string; error?: string } | undefined;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const isJson = json !== undefined && typeof json === 'object' && json !== null;
    // Prometheus' own error answer: {"status":"error","errorType":...}, at 4xx or 5xx
    const apiError = isJson && json!.status === 'error' && typeof json!.errorType === 'string' && json!.errorType !== '' ? json!.errorType : undefined;
    if (apiError === 'unavailable' || (res.status >= 500 && apiError === undefined)) {
      // the "Service Unavailable" page while starting up or shutting down, the TSDB not open yet,
      // proxies' 502/504: Prometheus is down
      this.count('unreachable');
      throw new PrometheusUnavailableError(`Prometheus at ${this.displayUrl} answered HTTP ${res.status}: ${isJson ? (json!.error ?? '') : snippet(text)}`);
    }
    if (apiError !== undefined && res.status >= 500) {
      // an answer about this query (timeout at 503, internal at 500): Prometheus is up
      this.count('error');
      throw new PrometheusQueryError(
        `Prometheus at ${this.displayUrl} could not answer the query (${apiError}, HTTP ${res.status}): ${json!.error ?? 'no error message'}${errorHint(apiError)}`,
        apiError,
        expr,
      );
    }
    if (!isJson || json!.status !== 'success' || !json!.data) {
      // Prometheus' own refusal of a query (400 bad_data, 422 execution) carries its JSON error;
      // anything else came from something in front of it (401/403 of an auth proxy, 413, a
      // redirect to a login page, an HTML page with 200)
      this.count('error');
      const j = isJson ? json! : undefined;
      const errorType = j?.errorType ?? `http_${res.status}`;
      const why = j?.errorType !== undefined ? `Prometheus refused the query (${j.errorType}): ${j.error ?? 'no error message'}${errorHint(j.errorType)}` : this.refusal(res, path, j?.error ?? snippet(text));
      throw new PrometheusQueryError(why, errorType, expr);
    }
    const ok = json!;
    this.count('ok');
    return ok.data!;
  }

  /** What an answer that is not Prometheus' API JSON says, for the record and the log. */
  private refusal(res: Response, path: string, detail: string): string {
    const at = `Prometheus at ${this.displayUrl} answered HTTP ${res.status}`;
    if (res.status === 401 || res.status === 403) return `${at}: not authorized; check the credentials in PROMETHEUS_URL (http://user:password@host/)`;
    if (res.status >= 300 && res.status < 400) {
      const location = res.headers.get('location');
      let to = '';
      try {
        if (location) to = ` to ${redactUrl(new URL(location, this.base + path).toString(), { base: true })}`;
      } catch {
        // an unparsable Location: not named
      }
      return `${at}, a redirect${to} (an auth proxy's login page?); PROMETHEUS_URL must reach the API without one`;
    }
    return `${at}, not the API's JSON: ${detail}`;
  }

  private count(outcome: 'ok' | 'error' | 'unreachable' | 'not_sent'): void {
    this.opts.metrics?.prometheusQueries.inc({ outcome });
  }
}

/** An answer's body went past maxResponseBytes (PROMETHEUS_MAX_RESPONSE_BYTES). */
/** The start of a body, on one line, for an error message. */
function snippet(text: string): string {
  const s = text.replace(/\s+/g, ' ').trim();
  return s.length > 200 ? `${s.slice(0, 200)}...` : s || '(empty body)';
}

function secs(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function describeFetchError(e: Error): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  return e.message;
}

/**
 * The `timeout` sent with each query (seconds): PROMETHEUS_TIMEOUT less a margin for the answer to
 * travel and be read (a fifth of it, at most 1 s), so that Prometheus gives up first. Prometheus
 * takes the smaller of it and its --query.timeout.
 */
export function evaluationTimeout(timeoutMs: number): string {
  return secs(Math.max(timeoutMs - Math.min(1000, timeoutMs / 5), 1));
}
