import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';

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
  | 'event_dead';

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
 * blocks or delays a rollback. Each send has a timeout; failures are logged and counted.
 */
export class Notifications {
  private readonly inflight = new Set<Promise<void>>();

  constructor(
    private readonly notifiers: readonly Notifier[],
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly timeoutMs = 5000,
  ) {}

  emit(n: Notification): void {
    this.logger.info({ notification: n.kind, target: n.target, record: n.recordId, title: n.title }, 'notification');
    for (const notifier of this.notifiers) {
      const p = notifier
        .send(n, AbortSignal.timeout(this.timeoutMs))
        .then(() => this.metrics.notifications.inc({ notifier: notifier.name, outcome: 'sent' }))
        .catch((err: unknown) => {
          this.metrics.notifications.inc({ notifier: notifier.name, outcome: 'failed' });
          this.logger.warn({ err, notifier: notifier.name, notification: n.kind }, 'notification failed (the rollback is not affected)');
        })
        .finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }
  }

  /** Waits for notifications already emitted (shutdown, tests). */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
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
    throw new Error(`POST ${safe} failed: ${why.replaceAll(url, safe)}`);
  }
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`POST ${safe} answered ${res.status}`);
}
