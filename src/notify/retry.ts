/**
 * When a failed notification is sent again, as Alertmanager's notify pipeline retries a receiver:
 * a failure the receiver may get over is retried with a growing wait until the retry window
 * (NOTIFY_RETRY_FOR) is spent; one it will not get over is final at once.
 *
 *   the attempt failed with                                    retried?
 *   no answer (refused, reset, DNS, the NOTIFY_TIMEOUT)        yes
 *   HTTP 5xx, or 429                                           yes
 *   HTTP 400, 413, 422 (and any other 4xx not named here)     no: the receiver refused the message itself
 *   HTTP 401, 403                                              no: its credentials need fixing
 *   HTTP 404, 410, a redirect (3xx)                            no: the URL needs fixing
 *   a request that cannot be sent (a bad URL or scheme)        no
 *   anything else thrown by a notifier                         no
 *
 * The wait after attempt n is `firstMs × 2^(n-1)`, at most `maxMs`, jittered down to half of it
 * (`random`), or the receiver's Retry-After (5xx or 429) when longer, itself at most `maxMs`;
 * none is started that would end past the window.
 */
export class NotifyError extends Error {
  constructor(
    message: string,
    /** whether the receiver may accept the same notification later */
    readonly retryable: boolean,
    /** the receiver's Retry-After, in ms */
    readonly retryAfterMs?: number,
    /** the HTTP status the receiver answered, if it answered */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'NotifyError';
  }
}

export interface RetryPolicy {
  /** how long after the first attempt a failed notification may still be tried (0: one attempt) */
  windowMs: number;
  /** the wait after the first failed attempt */
  firstMs: number;
  /** the longest wait */
  maxMs: number;
}

export const DEFAULT_BACKOFF = { firstMs: 1_000, maxMs: 30_000 } as const;

/** The wait before the next attempt, or why there is none (for the log line). */
export function retryDelay(err: unknown, attempt: number, elapsedMs: number, p: RetryPolicy, random: () => number = Math.random): { waitMs: number } | { final: string } {
  if (!(err instanceof NotifyError) || !err.retryable) return { final: `not retried: ${whyFinal(err)}` };
  const backoff = Math.min(p.maxMs, p.firstMs * 2 ** Math.min(30, attempt - 1));
  const jittered = Math.round(backoff * (0.5 + 0.5 * Math.min(1, Math.max(0, random()))));
  const waitMs = Math.min(p.maxMs, Math.max(jittered, err.retryAfterMs ?? 0));
  if (elapsedMs + waitMs > p.windowMs) return { final: p.windowMs === 0 ? 'not retried (NOTIFY_RETRY_FOR is 0)' : `given up after ${attempt} attempts (NOTIFY_RETRY_FOR)` };
  return { waitMs };
}

/** Why a failure is final, for the log line: what to fix, as far as the answer tells. */
function whyFinal(err: unknown): string {
  const status = err instanceof NotifyError ? err.status : undefined;
  if (status === undefined) return 'it cannot be sent (a bad URL or scheme, or the notifier failed: see the error)';
  if (status === 401 || status === 403) return `the receiver refused the credentials (${status}): fix them`;
  if (status === 404 || status === 410) return `the receiver has no such endpoint (${status}): fix the URL`;
  if (status >= 300 && status < 400) return `the receiver redirects (${status}): set the URL it points to`;
  return `the receiver refused the message (${status}), and would refuse it again: see the error for its reason`;
}

/** A Retry-After header (seconds, or an HTTP date) in ms from `now`; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const s = header.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  // an HTTP date names its day and month (Date.parse alone would read "-5" as a year)
  if (!/^[A-Za-z]{3}, /.test(s)) return undefined;
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
