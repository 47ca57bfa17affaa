import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { Folder } from './fold.js';
import { DEFAULT_BACKOFF, NotifyError, retryAfterMs, retryDelay, type RetryPolicy } from './retry.js';

export type NotificationKind =
  | 'rollback_started'
  | 'rollback_succeeded'
  | 'rollback_failed'
  | 'rollback_unverified'
  | 'rollback_interrupted'
  | 'rollback_refused'
  | 'rollback_blocked'
  | 'trigger_error'
  | 'held_too_long'
  | 'approval_requested'
  | 'dry_run'
  | 'notify_only'
  | 'event_dead'
  | 'notifications_folded';

/** What every notifier receives; the text follows the runbook's communication steps (in progress, completed, failed: escalate). */
export interface Notification {
  kind: NotificationKind;
  severity: 'info' | 'warning' | 'critical';
  title: string;
  /** lines of the message body */
  lines: string[];
  recordId?: string;
  target?: string;
  rule?: string;
  link?: string;
  at: number;
}

/** One destination. Adding a kind: one file (its Notifier and NotifierKind) and one line in src/notify/index.ts. */
export interface Notifier {
  readonly name: string;
  send(n: Notification, signal: AbortSignal): Promise<void>;
}

/** A kind of notifier: its name and, from the config, its notifier (null when the config does not enable it). */
export interface NotifierKind {
  readonly name: string;
  create(config: Config): Notifier | null;
}

/**
 * Fans a notification out to every notifier, in the background: a slow or failing notifier never
 * blocks or delays a rollback. Each attempt has a timeout; a failure the receiver may get over is
 * tried again for up to NOTIFY_RETRY_FOR (retry.ts), so a receiver's blip does not lose a page.
 * Each failed attempt is counted (notification_attempts_failed); the final outcome of each
 * notification is counted once (notifications{outcome}) and a failure logged once. At most
 * `maxRetrying` notifications wait for a retry at once: past that (a long receiver outage in a
 * storm), a failure is final at once, so waiting sends never grow without bound.
 */
export class Notifications {
  private readonly inflight = new Set<Promise<void>>();
  private readonly wakers = new Set<() => void>();
  private retrying = 0;
  /** set while flush() runs: no more waits, each waiting send tries once more now */
  private cutting = false;
  private readonly retry: RetryPolicy;
  private readonly maxRetrying: number;
  /** folds a storm's notifications of rollbacks not done into one summary a window (fold.ts); none: every one is sent */
  private readonly folder: Folder | null;
  private summaryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly notifiers: readonly Notifier[],
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly timeoutMs = 5000,
    opts: { retryForMs?: number; backoff?: { firstMs: number; maxMs: number }; maxRetrying?: number; foldAfter?: number; foldWindowMs?: number; externalUrl?: string } = {},
  ) {
    this.retry = { windowMs: opts.retryForMs ?? 0, ...(opts.backoff ?? DEFAULT_BACKOFF) };
    this.maxRetrying = opts.maxRetrying ?? 1000;
    this.folder = opts.foldAfter !== undefined ? new Folder(opts.foldAfter, opts.foldWindowMs ?? 60_000, opts.externalUrl) : null;
  }

  emit(n: Notification): void {
    const admitted = this.folder?.admit(n, Date.now()) ?? { send: true };
    if (!admitted.send) {
      this.metrics.notificationsFolded.inc({ kind: n.kind });
      this.logger.debug({ notification: n.kind, target: n.target, record: n.recordId, title: n.title }, 'notification folded into the next summary (NOTIFY_FOLD_AFTER)');
      if (admitted.summaryAt !== undefined) {
        this.summaryTimer = setTimeout(() => this.sendSummary(), Math.max(0, admitted.summaryAt - Date.now()));
        this.summaryTimer.unref();
      }
      return;
    }
    this.send(n);
  }

  /** The summary of the notifications folded since the last one, if any (fold.ts). */
  private sendSummary(): void {
    clearTimeout(this.summaryTimer);
    this.summaryTimer = undefined;
    const summary = this.folder?.summary(Date.now());
    if (summary) this.send(summary);
  }

  private send(n: Notification): void {
    this.logger.info({ notification: n.kind, target: n.target, record: n.recordId, title: n.title }, 'notification');
    for (const notifier of this.notifiers) {
      const p: Promise<void> = this.deliver(notifier, n).finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }
  }

  private async deliver(notifier: Notifier, n: Notification): Promise<void> {
    const started = Date.now();
    let waiting = false;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await notifier.send(n, AbortSignal.timeout(this.timeoutMs));
          this.metrics.notifications.inc({ notifier: notifier.name, outcome: 'sent' });
          if (attempt > 1) this.logger.info({ notifier: notifier.name, notification: n.kind, record: n.recordId, attempts: attempt }, 'notification sent after a retry');
          return;
        } catch (err) {
          this.metrics.notificationAttemptsFailed.inc({ notifier: notifier.name });
          let next = retryDelay(err, attempt, Date.now() - started, this.retry);
          if ('waitMs' in next && this.cutting) next = { final: `given up after ${attempt} attempts: shutting down` };
          if ('waitMs' in next && !waiting && this.retrying >= this.maxRetrying) next = { final: `not retried: ${this.maxRetrying} notifications already wait for a retry` };
          if ('final' in next) {
            this.metrics.notifications.inc({ notifier: notifier.name, outcome: 'failed' });
            this.logger.warn({ err, notifier: notifier.name, notification: n.kind, record: n.recordId, attempts: attempt, why: next.final }, 'notification failed (the rollback is not affected)');
            return;
          }
          if (!waiting) {
            waiting = true;
            this.retrying++;
          }
          this.logger.debug({ err, notifier: notifier.name, notification: n.kind, attempt, waitMs: next.waitMs }, 'notification attempt failed; trying again');
          await this.sleep(next.waitMs);
        }
      }
    } finally {
      if (waiting) this.retrying--;
    }
  }

  /** Waits `ms`, or less when flush() cuts the waits short. */
  private sleep(ms: number): Promise<void> {
    if (this.cutting) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }

  /**
   * Waits for notifications already emitted, retries cut short (shutdown, tests): the summary of
   * what was folded goes out now, a send waiting for its retry is tried once more at once, and a
   * failure is then final.
   */
  async flush(): Promise<void> {
    this.sendSummary();
    this.cutting = true;
    try {
      for (const wake of [...this.wakers]) wake();
      while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    } finally {
      this.cutting = false;
    }
  }

  /** Waits for notifications already emitted, retries included (tests). */
  async settled(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }
}

/**
 * POSTs JSON. Credentials in the URL (https://user:pass@host/…) are sent as basic auth (fetch
 * refuses URLs carrying them). An error message (and so a log line) names the URL by its origin
 * alone: neither the credentials nor the path, which is the secret of a Slack incoming webhook
 * (/services/T…/B…/secret) and of many other webhook URLs.
 */
export async function postJson(url: string, body: unknown, signal: AbortSignal): Promise<void> {
  const u = new URL(url);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (u.username || u.password) {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
    u.username = '';
    u.password = '';
  }
  const safe = `${u.origin}${u.pathname === '/' ? '' : '/…'}`;
  let res: Response;
  try {
    res = await fetch(u, { method: 'POST', headers, body: JSON.stringify(body), signal });
  } catch (err) {
    const why = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    // no answer (refused, reset, the timeout): the receiver may be back later
    throw new NotifyError(`POST ${safe} failed: ${why.replaceAll(url, safe)}`, true);
  }
  await res.arrayBuffer().catch(() => undefined);
  if (!res.ok) {
    const retryable = res.status >= 500 || res.status === 429;
    throw new NotifyError(`POST ${safe} answered ${res.status}`, retryable, retryable ? retryAfterMs(res.headers.get('retry-after')) : undefined);
  }
}
