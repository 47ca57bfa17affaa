// Turns at a dependency: at most `max` calls to it at once (PROMETHEUS_MAX_CONCURRENT queries,
// KUBE_MAX_CONCURRENT_READS reads), the others waiting their turn. The line is served by the
// queue's lanes: a P0 alert's call goes before every waiting P1 and P2 call, whenever it came,
// and calls of one lane go first come first served. With p0Extra, P0 alerts' calls also have that
// many places of their own beyond the bound (P0_EXTRA_CALLS for Prometheus and the API server), so
// they do not wait for one of a storm's calls to end. So the events a replica has in hand
// (QUEUE_CONCURRENCY) do not set the load on Prometheus or the API server, and a storm's calls do
// not hold back the one alert that matters.
//
// A call that stops waiting (its wait ran out, or its caller gave up: a cancelled rollback)
// leaves the line at once, is never made, and its place is not taken from anyone. A call that
// gets its turn is made with its whole time limit: the wait is bounded apart, never taken from
// the time the dependency has to answer. A health check never waits: it measures the dependency,
// not this line.
import type { Lane } from './store/store.js';

/**
 * Who goes first at a bounded dependency: the lane of the alert the call is for (0: a P0 rule's,
 * src/store/store.ts laneOf), or 'check' for a health check, which does not wait its turn. Unset:
 * 0, first: work that is not a queued alert's (a human's request, a drill, a watcher's list, a
 * rollback's verification) is little, and someone is waiting on it.
 */
export type Precedence = Lane | 'check';

/** A call waited its whole `waitMs` for a turn: it was never made. */
export class TurnTimeoutError extends Error {
  override name = 'TurnTimeoutError';
  constructor(
    readonly waitedMs: number,
    readonly max: number,
  ) {
    super(`no turn within ${waitedMs} ms: ${max} calls were in flight all that time; never sent`);
  }
}

interface Waiter {
  /** called when a place passes to it (`extra`: one of the places kept for P0 alerts' calls) */
  start(extra: boolean): void;
  /** a P0 alert's call (precedence 0 given): it may take a place kept for them */
  p0: boolean;
}

/** Places beyond PROMETHEUS_MAX_CONCURRENT and KUBE_MAX_CONCURRENT_READS kept for P0 alerts' calls. */
export const P0_EXTRA_CALLS = 4;

export class Turns {
  /** calls running now (a place passes from one that ends straight to the next in line) */
  private running = 0;
  /** P0 alerts' calls running in the places kept for them beyond max (p0Extra) */
  private extraRunning = 0;
  /** one line per lane, served lane 0 first */
  private readonly lines: Waiter[][] = [[], [], []];
  private waitingNow = 0;

  /**
   * @param max calls at once
   * @param onWaiting told the number of calls waiting each time it changes (a gauge)
   * @param p0Extra places beyond max kept for the calls of P0 alerts (precedence 0 given, not
   *   unset): with every place taken by a storm's calls, such a call starts at once instead of
   *   waiting for one of them to end; at most max + p0Extra calls at once. Unset precedence waits
   *   first in line (lane 0) but takes no extra place.
   */
  constructor(
    readonly max: number,
    private readonly onWaiting?: (waiting: number) => void,
    readonly p0Extra = 0,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`calls at once must be a whole number of at least 1, got ${max}`);
    if (!Number.isInteger(p0Extra) || p0Extra < 0) throw new RangeError(`places kept for P0 calls must be a whole number of at least 0, got ${p0Extra}`);
    onWaiting?.(0); // the gauge's series is there from the start, at 0
  }

  /** Calls waiting for their turn now. */
  get waiting(): number {
    return this.waitingNow;
  }

  /** Calls running now. */
  get inFlight(): number {
    return this.running + this.extraRunning;
  }

  /**
   * Runs `call` in its turn. It leaves the line at once, `call` never run, when `signal` aborts
   * while it waits (rejecting with the signal's reason) or when it has waited `waitMs` (rejecting
   * with TurnTimeoutError). Neither is looked at once the call has its place: the call is handed
   * its own signal and time limit. Timers and listeners exist only while a call waits.
   */
  async run<T>(call: () => Promise<T>, opts: { precedence?: Precedence | undefined; signal?: AbortSignal | undefined; waitMs?: number | undefined } = {}): Promise<T> {
    const precedence = opts.precedence ?? 0;
    if (precedence === 'check') return call();
    let extra = false;
    if (this.running < this.max) this.running++;
    else if (opts.precedence === 0 && this.extraRunning < this.p0Extra) {
      this.extraRunning++;
      extra = true;
    } else extra = await this.wait(precedence, opts.precedence === 0, opts.signal, opts.waitMs);
    try {
      return await call();
    } finally {
      if (extra) this.releaseExtra();
      else this.release();
    }
  }

  private wait(lane: Lane, p0: boolean, signal: AbortSignal | undefined, waitMs: number | undefined): Promise<boolean> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<boolean>((resolve, reject) => {
      const line = this.lines[lane] ?? this.lines[this.lines.length - 1]!;
      let timer: NodeJS.Timeout | undefined;
      const leave = (why: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const at = line.indexOf(waiter);
        if (at >= 0) {
          line.splice(at, 1);
          this.changed(-1);
        }
        reject(why);
      };
      const onAbort = () => leave(signal!.reason);
      const waiter: Waiter = {
        p0,
        start: (extra) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(extra);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (waitMs !== undefined) timer = setTimeout(() => leave(new TurnTimeoutError(waitMs, this.max)), waitMs);
      line.push(waiter);
      this.changed(1);
    });
  }

  /** A call ended: its place passes to the first in line, lane 0 first, or is freed. */
  private release(): void {
    for (const line of this.lines) {
      const next = line.shift();
      if (next) {
        this.changed(-1);
        next.start(false);
        return;
      }
    }
    this.running--;
  }

  /**
   * A call in a place kept for P0 alerts ended: the place passes to the first P0 alert's call in
   * line (lane 0 holds unset ones too: the first explicit P0 one), or is freed.
   */
  private releaseExtra(): void {
    const line = this.lines[0]!;
    const at = line.findIndex((w) => w.p0);
    const next = at < 0 ? undefined : line.splice(at, 1)[0];
    if (next) {
      this.changed(-1);
      next.start(true);
      return;
    }
    this.extraRunning--;
  }

  private changed(by: number): void {
    this.waitingNow += by;
    this.onWaiting?.(this.waitingNow);
  }
}
