import type { InstantSample, PrometheusApi, QueryOptions, RangeSeries } from '../../prometheus/client.js';

/**
 * The replay's bounds: at most --max-queries queries, all within --timeout. Every query the replay
 * sends (ALERTS, the triggers, the rollout starts) goes through here, so both hold whatever the
 * range and the number of alerts. Only /api/v1/query and /api/v1/query_range are ever called:
 * read-only.
 */

/** The replay stopped: a bound was reached or Prometheus failed. `flag` is the flag to change. */
export class ReplayAbort extends Error {
  override name = 'ReplayAbort';
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(message);
  }
}

export interface LimitOptions {
  maxQueries: number;
  /** the whole replay's time limit, ms */
  timeoutMs: number;
  now?: () => number;
}

export class LimitedPrometheus implements PrometheusApi {
  private readonly spent: { queries: number; deadline: number };
  private readonly now: () => number;

  constructor(
    private readonly inner: PrometheusApi,
    private readonly o: LimitOptions,
    shared?: { queries: number; deadline: number },
  ) {
    this.now = o.now ?? Date.now;
    this.spent = shared ?? { queries: 0, deadline: this.now() + o.timeoutMs };
  }

  /** The queries sent so far, through this and every `over` of it. */
  get queries(): number {
    return this.spent.queries;
  }

  /** Another client's queries within the same bounds (one count, one deadline). */
  over(inner: PrometheusApi): LimitedPrometheus {
    return new LimitedPrometheus(inner, this.o, this.spent);
  }

  query(expr: string, timeMs: number, opts?: QueryOptions): Promise<InstantSample[]> {
    return this.bounded(() => this.inner.query(expr, timeMs, opts));
  }

  queryRange(expr: string, startMs: number, endMs: number, stepMs: number, opts?: QueryOptions): Promise<RangeSeries[]> {
    return this.bounded(() => this.inner.queryRange(expr, startMs, endMs, stepMs, opts));
  }

  private async bounded<T>(q: () => Promise<T>): Promise<T> {
    if (this.queries >= this.o.maxQueries) {
      throw new ReplayAbort('--max-queries', `the query budget is spent: ${this.o.maxQueries} queries (--max-queries); replay a shorter range or raise it`);
    }
    const left = this.spent.deadline - this.now();
    if (left <= 0) throw this.timedOut();
    this.spent.queries++;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.timedOut()), left);
    });
    try {
      return await Promise.race([q(), expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  private timedOut(): ReplayAbort {
    return new ReplayAbort('--timeout', `the replay did not finish within ${Math.round(this.o.timeoutMs / 1000)}s (--timeout) after ${this.queries} queries; replay a shorter range or raise it`);
  }
}
