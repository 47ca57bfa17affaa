import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { readAtMost } from '../read-body.js';
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
  | 'trigger_busy'
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
 * notification is counted once (notifications{outcome}) and a failure logged once.
 *
 * Bounded: per notifier, at most `maxRetrying` sends wait at once (for a retry, or for their turn
 * at a rate-limiting receiver's gate, a first attempt included), and as many more critical ones
 * (escalations), so a long outage of one receiver in a storm never grows memory without bound, nor
 * takes another receiver's places, nor a page's; past that, a failure is final at once, and a send
 * not yet tried is not sent. A receiver's Retry-After holds back every send to it until then (not
 * only the one refused), and from then on, while it is rate-limiting, its sends go out one at a
 * time (a Gate): critical ones first, then in the order they were emitted; the first after a hold
 * waits a jittered extra moment, so that replicas do not all land together. A hold's end is then
 * one attempt, not every send waiting on it; the gate opens again once a send is accepted and none
 * waits. A send already tried and still waiting its turn NOTIFY_RETRY_FOR after it was emitted is
 * given up (one not yet tried waits for its one try, within the places): a receiver that keeps
 * rate-limiting gets no backlog hours late. Other waits (5xx, no
 * answer) are jittered too.
 */
export class Notifications {
  private readonly inflight = new Set<Promise<void>>();
  private readonly wakers = new Set<() => void>();
  /** sends waiting for a retry or for their turn at a gate, by notifier and whether critical */
  private readonly retrying = new Map<string, number>();
  /** a receiver's Retry-After: no send to it before then (monotonic ms), jitter included */
  private readonly notBefore = new Map<string, number>();
  /** by notifier: its sends one at a time while it is rate-limiting (a Retry-After seen, no send accepted since with none waiting) */
  private readonly gates = new Map<string, Gate>();
  /** the order notifications were emitted in: a gate's order within a severity */
  private seq = 0;
  /** the deadlines of the flush() calls running, one entry per call (two may share one): no more waits, each waiting send tries once more now */
  private readonly flushing: number[] = [];
  /** aborted at a flush's deadline: the attempts then running end too */
  private cut = new AbortController();
  private readonly retry: RetryPolicy;
  private readonly maxRetrying: number;
  private readonly random: () => number;
  /** folds a storm's notifications of rollbacks not done into one summary a window (fold.ts); none: every one is sent */
  private readonly folder: Folder | null;
  private summaryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly notifiers: readonly Notifier[],
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly timeoutMs = 5000,
    opts: {
      retryForMs?: number;
      backoff?: { firstMs: number; maxMs: number };
      maxRetrying?: number;
      /** the jitter's source, in [0, 1) (tests: a constant) */
      random?: () => number;
      foldAfter?: number;
      foldWindowMs?: number;
      externalUrl?: string;
    } = {},
  ) {
    this.retry = { windowMs: opts.retryForMs ?? 0, ...(opts.backoff ?? DEFAULT_BACKOFF) };
    this.maxRetrying = opts.maxRetrying ?? 1000;
    this.random = opts.random ?? Math.random;
    this.folder = opts.foldAfter !== undefined ? new Folder(opts.foldAfter, opts.foldWindowMs ?? 60_000, opts.externalUrl) : null;
  }

  emit(n: Notification): void {
    const admitted = this.folder?.admit(n, performance.now()) ?? { send: true };
    if (!admitted.send) {
      this.metrics.notificationsFolded.inc({ kind: n.kind });
      this.logger.debug({ notification: n.kind, target: n.target, record: n.recordId }, 'notification folded into the next summary (NOTIFY_FOLD_AFTER)');
      // after a flush has begun (a handler still running at shutdown), the summary goes at once
      if (this.flushing.length > 0) this.sendSummary();
      else if (admitted.summaryAt !== undefined) {
        this.summaryTimer = setTimeout(() => this.sendSummary(), Math.max(0, admitted.summaryAt - performance.now()));
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
    const summary = this.folder?.summary(performance.now(), Date.now());
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
    const started = performance.now();
    const critical = n.severity === 'critical';
    const place = `${notifier.name}\u0000${critical ? 'critical' : 'other'}`;
    const order = this.seq++;
    // a place among those waiting (for a retry, or for a turn at a gate), taken once and held until
    // the send ends; full: none left for this notifier and severity
    let waiting = false;
    const full = () => (this.retrying.get(place) ?? 0) >= this.maxRetrying;
    const takePlace = () => {
      if (waiting) return;
      waiting = true;
      this.retrying.set(place, (this.retrying.get(place) ?? 0) + 1);
    };
    const final = (attempt: number, err: unknown, why: string) => {
      this.metrics.notifications.inc({ notifier: notifier.name, outcome: 'failed' });
      this.logger.warn({ err, notifier: notifier.name, notification: n.kind, record: n.recordId, attempts: attempt, why }, 'notification failed (the rollback is not affected)');
    };
    try {
      for (let attempt = 1; ; attempt++) {
        // the receiver asked to be left alone until then (its Retry-After): so is every send to it,
        // and while it rate-limits they go one at a time, critical first (the gate)
        const gate = this.gates.get(notifier.name);
        let turn: Turn | undefined;
        if (gate) {
          // waiting for its turn takes a place, as waiting for a retry does: a first attempt too
          if (!waiting && full()) {
            return final(attempt - 1, undefined, `not sent: ${this.maxRetrying} ${critical ? 'critical ' : ''}notifications to ${notifier.name} already wait (for a retry, or for their turn while it rate-limits)`);
          }
          takePlace();
          // a send already tried gives up once NOTIFY_RETRY_FOR has passed since it was emitted; one
          // not tried yet waits for its one try (NOTIFY_RETRY_FOR=0 "tries once"), bounded by the places
          turn = await this.turn(notifier.name, gate, { critical, order, giveUpAt: attempt === 1 ? Infinity : started + this.retry.windowMs });
          if (!turn) return final(attempt - 1, undefined, `given up after ${attempt - 1} attempts: NOTIFY_RETRY_FOR passed waiting for its turn while ${notifier.name} rate-limits`);
        }
        const timeout = this.attemptTimeout();
        if (timeout <= 0) {
          turn?.done(false);
          return final(attempt - 1, undefined, `not sent: the shutdown's deadline passed (${attempt - 1} attempts)`);
        }
        try {
          await notifier.send(n, AbortSignal.any([AbortSignal.timeout(timeout), this.cut.signal]));
          turn?.done(true);
          this.metrics.notifications.inc({ notifier: notifier.name, outcome: 'sent' });
          if (attempt > 1) this.logger.info({ notifier: notifier.name, notification: n.kind, record: n.recordId, attempts: attempt }, 'notification sent after a retry');
          return;
        } catch (err) {
          this.metrics.notificationAttemptsFailed.inc({ notifier: notifier.name });
          const limiting = err instanceof NotifyError && err.retryAfterMs !== undefined;
          if (limiting) {
            const hold = Math.min(err.retryAfterMs!, this.retry.maxMs);
            // jittered up to a quarter of the hold (at most 1 s): replicas sending to it do not all come back together
            const until = performance.now() + hold + Math.round(Math.min(1000, hold / 4) * Math.min(1, Math.max(0, this.random())));
            this.notBefore.set(notifier.name, Math.max(this.notBefore.get(notifier.name) ?? 0, until));
            if (!this.gates.has(notifier.name)) this.gates.set(notifier.name, { queue: [], busy: false });
          }
          turn?.done(false);
          let next = retryDelay(err, attempt, performance.now() - started, this.retry, this.random);
          if ('waitMs' in next && this.flushing.length > 0) next = { final: `given up after ${attempt} attempts: shutting down` };
          if ('waitMs' in next && !waiting && full()) {
            next = { final: `not retried: ${this.maxRetrying} ${critical ? 'critical ' : ''}notifications to ${notifier.name} already wait for a retry` };
          }
          if ('final' in next) return final(attempt, err, next.final);
          takePlace();
          this.logger.debug({ err, notifier: notifier.name, notification: n.kind, attempt, waitMs: next.waitMs }, 'notification attempt failed; trying again');
          // rate-limited: the gate paces it (its turn comes after the hold, in its order); else its own wait
          if (!limiting || !this.gates.has(notifier.name)) await this.sleep(next.waitMs);
        }
      }
    } finally {
      if (waiting) {
        const left = (this.retrying.get(place) ?? 1) - 1;
        if (left > 0) this.retrying.set(place, left);
        else this.retrying.delete(place);
      }
    }
  }

  /**
   * Waits for a send's turn at a rate-limiting receiver's gate: once no other send to it is being
   * tried and its hold (notBefore) is over, the first waiting (critical first, then the earliest
   * emitted) goes. Undefined: `giveUpAt` passed first. A flush ends the hold, not the order: the
   * waiting sends still go one at a time, critical first, each within the flush's deadline.
   */
  private turn(name: string, gate: Gate, w: { critical: boolean; order: number; giveUpAt: number }): Promise<Turn | undefined> {
    return new Promise((resolve) => {
      const waiter: Waiter = { ...w, go: resolve };
      const at = gate.queue.findIndex((o) => (o.critical === waiter.critical ? o.order > waiter.order : waiter.critical));
      gate.queue.splice(at < 0 ? gate.queue.length : at, 0, waiter);
      this.pump(name, gate);
    });
  }

  /** Lets the gate's next send go, if it may now; or sets a timer for when it may. */
  private pump(name: string, gate: Gate): void {
    if (gate.busy || gate.timer !== undefined) return;
    const now = performance.now();
    const held = this.flushing.length > 0 ? 0 : (this.notBefore.get(name) ?? 0) - now;
    // those whose retry window passed while waiting give up (the first, when it may go now, goes)
    for (let i = gate.queue.length - 1; i >= (held > 0 ? 0 : 1); i--) {
      if (gate.queue[i]!.giveUpAt <= now) gate.queue.splice(i, 1)[0]!.go(undefined);
    }
    const next = gate.queue[0];
    if (!next) return;
    if (held > 0) {
      const giveUp = Math.min(...gate.queue.map((w) => w.giveUpAt)) - now;
      const wake = () => {
        clearTimeout(gate.timer);
        gate.timer = undefined;
        gate.wake = undefined;
        this.pump(name, gate);
      };
      // not unref'd: a process with a page still to send stays up for it (serve flushes at shutdown)
      gate.timer = setTimeout(wake, Math.min(held, giveUp));
      gate.wake = wake;
      return;
    }
    gate.queue.shift();
    gate.busy = true;
    next.go({
      done: (accepted) => {
        gate.busy = false;
        // accepted with none waiting: the receiver takes sends again, the gate opens
        if (accepted && gate.queue.length === 0 && gate.timer === undefined) this.gates.delete(name);
        else this.pump(name, gate);
      },
    });
  }

  /** NOTIFY_TIMEOUT, or what is left before the earliest running flush's deadline. */
  private attemptTimeout(): number {
    if (this.flushing.length === 0) return this.timeoutMs;
    return Math.min(this.timeoutMs, Math.floor(Math.min(...this.flushing) - Date.now()));
  }

  /** Waits `ms`, or less when flush() cuts the waits short. */
  private sleep(ms: number): Promise<void> {
    if (this.flushing.length > 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve();
      };
      // not unref'd: a process with a page still to send stays up for it (serve flushes at shutdown)
      const timer = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }

  /**
   * Waits for notifications already emitted, retries cut short (shutdown, tests): the summary of
   * what was folded goes out now, a send waiting for its retry is tried once more at once, one
   * waiting at a rate-limiting receiver's gate once more in its turn (one at a time, critical
   * first, the hold over), and a failure is then final. `deadline` (epoch ms, shutdown): no
   * attempt runs past it (each attempt's timeout is cut to what is left); a send whose turn comes
   * after it is not sent (logged, counted failed).
   */
  async flush(deadline = Infinity): Promise<void> {
    this.flushing.push(deadline);
    const cut = this.cut;
    const timer = Number.isFinite(deadline) ? setTimeout(() => cut.abort(new DOMException('the shutdown deadline passed', 'TimeoutError')), Math.max(0, deadline - Date.now())) : undefined;
    try {
      this.sendSummary();
      for (const wake of [...this.wakers]) wake();
      // a gate's hold ends now; its sends still go one at a time, critical first (turn)
      for (const gate of this.gates.values()) gate.wake?.();
      while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    } finally {
      clearTimeout(timer);
      this.flushing.splice(this.flushing.indexOf(deadline), 1);
      if (cut.signal.aborted && this.cut === cut) this.cut = new AbortController();
    }
  }

  /** Waits for notifications already emitted, retries included (tests). */
  async settled(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }
}

/** A send waiting for its turn at a gate. */
interface Waiter {
  critical: boolean;
  /** when it was emitted (Notifications.seq) */
  order: number;
  /** monotonic ms: it gives up waiting then (NOTIFY_RETRY_FOR after it was emitted; never for a send not yet tried) */
  giveUpAt: number;
  go: (turn: Turn | undefined) => void;
}

/** A send's turn: `done` says whether the receiver accepted it, and lets the next go. */
interface Turn {
  done(accepted: boolean): void;
}

/** A rate-limiting receiver's sends, one at a time. */
interface Gate {
  /** critical first, then in the order emitted */
  queue: Waiter[];
  /** a send is being tried */
  busy: boolean;
  /** the next goes when the hold ends */
  timer?: NodeJS.Timeout;
  wake?: () => void;
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
    // a redirect is not followed: a 302 would turn the POST into a GET that loses the message, a
    // 307 would send it to wherever the receiver points; it is an answer to fix (final)
    res = await fetch(u, { method: 'POST', headers, body: JSON.stringify(body), signal, redirect: 'manual' });
  } catch (err) {
    const why = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw new NotifyError(`POST ${safe} failed: ${why.replaceAll(url, safe)}`, noAnswer(err));
  }
  const retryable = res.status >= 500 || res.status === 429;
  // a refusal's reason, when its body starts with one (read: its first bytes only); the rest of
  // the body is not read (a receiver's answer could be any size): cancelled, which frees the connection
  const code = !res.ok && !retryable && res.status >= 400 ? await refusalCode(res) : undefined;
  await res.body?.cancel().catch(() => undefined);
  if (!res.ok) {
    const what = res.status >= 400 && !retryable ? `: the receiver refused the message${code ? ` (${code})` : ''}` : '';
    throw new NotifyError(`POST ${safe} answered ${res.status}${what}`, retryable, retryable ? retryAfterMs(res.headers.get('retry-after')) : undefined, res.status);
  }
}

/** The bytes of an answer's body read for its reason, at most. */
const REFUSAL_READ = 512;
/**
 * An error code: lower-case words joined by `_` or `.` (Slack's `invalid_blocks`, `no_text`,
 * Mattermost's `web.incoming_webhook.invalid.app_error`); never free text, which might quote the
 * request or a secret.
 */
const ERROR_CODE = /^[a-z][a-z0-9]*(?:[_.][a-z0-9]+)+$/;

/**
 * The receiver's reason for refusing a message, when its body gives one as an error code: the body
 * itself (Slack answers `invalid_blocks`), or its JSON's `error` or `id` (Mattermost); undefined
 * otherwise, and for a body longer than REFUSAL_READ bytes (read no further).
 */
async function refusalCode(res: Response): Promise<string | undefined> {
  let text: string;
  try {
    // a longer body is no error code
    text = (await readAtMost(res, REFUSAL_READ)).trim();
  } catch {
    return undefined;
  }
  if (ERROR_CODE.test(text) && text.length <= 80) return text;
  try {
    const j = JSON.parse(text) as { error?: unknown; id?: unknown };
    const c = typeof j.error === 'string' ? j.error : j.id;
    return typeof c === 'string' && c.length <= 80 && ERROR_CODE.test(c) ? c : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a fetch failure is the receiver not answering (refused, reset, DNS, the timeout: it may
 * answer later), not a request that can never be sent (an unsupported scheme, a bad URL).
 */
function noAnswer(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return true;
  const cause = err.cause as { code?: unknown; name?: unknown } | undefined;
  return typeof cause?.code === 'string' || cause?.name === 'ConnectTimeoutError' || cause?.name === 'SocketError';
}
