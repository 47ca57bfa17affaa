import type { Notification, NotificationKind } from './notifier.js';

/**
 * An alert storm's flood of notifications that report nothing done, folded into one summary, as
 * Alertmanager groups alerts: past NOTIFY_FOLD_AFTER of them in a minute, the rest of that minute's
 * are counted, not sent, and one summary says how many of each, for which targets, and where their
 * records are. A storm over 1,000 workloads with the budget spent is then a handful of messages in
 * the on-call channel, not a thousand "blocked" lines burying the one that needs a human (and a
 * Slack incoming webhook, limited to about one message a second, refusing the rest).
 *
 *   kind                                                      folded past the limit?
 *   rollback_blocked, dry_run, notify_only                    yes: nothing was done, the record says why
 *   every other (in progress, completed, failed, refused,
 *   approval requested, interrupted, held too long, dead)     never: each is an action or asks for one
 *
 * The limit counts foldable notifications only, per replica, in fixed windows that start with the
 * first one after the last window ended.
 */
export const FOLDABLE: ReadonlySet<NotificationKind> = new Set<NotificationKind>(['rollback_blocked', 'dry_run', 'notify_only']);

/** The record state each foldable kind closes in (its list: GET /v1/rollbacks?state=…). */
const STATE_OF: Partial<Record<NotificationKind, string>> = { rollback_blocked: 'blocked', dry_run: 'dry_run', notify_only: 'notified' };

/** Targets named per kind in a summary; the rest are counted. */
const TARGETS_NAMED = 5;

interface Folded {
  count: number;
  targets: Set<string>;
  /** folded notifications of targets past the first TARGETS_NAMED (not distinct: that would need them all kept) */
  more: number;
}

export class Folder {
  private windowEnd = 0;
  private admitted = 0;
  private folded = new Map<NotificationKind, Folded>();

  constructor(
    /** foldable notifications sent per window; the rest are folded */
    readonly limit: number,
    readonly windowMs: number,
    private readonly externalUrl = '',
  ) {}

  /**
   * Whether `n` goes out now (true), or is folded into the window's summary (false). `at`: now.
   * A first fold in a window returns the time its summary is due in `summaryAt`.
   */
  admit(n: Notification, at: number): { send: true } | { send: false; summaryAt?: number } {
    if (!FOLDABLE.has(n.kind)) return { send: true };
    if (at >= this.windowEnd && this.folded.size === 0) {
      this.windowEnd = at + this.windowMs;
      this.admitted = 0;
    }
    if (this.admitted < this.limit) {
      this.admitted++;
      return { send: true };
    }
    const first = this.folded.size === 0;
    const f = this.folded.get(n.kind) ?? { count: 0, targets: new Set<string>(), more: 0 };
    f.count++;
    if (n.target !== undefined && !f.targets.has(n.target)) {
      if (f.targets.size < TARGETS_NAMED) f.targets.add(n.target);
      else f.more++;
    }
    this.folded.set(n.kind, f);
    return first ? { send: false, summaryAt: this.windowEnd } : { send: false };
  }

  /** The summary of what was folded so far (null when nothing was); a new window starts. `at`: now (monotonic, as admit's); `wallAt`: now, the notification's time. */
  summary(at: number, wallAt = at): Notification | null {
    if (this.folded.size === 0) return null;
    const total = [...this.folded.values()].reduce((a, f) => a + f.count, 0);
    const base = this.externalUrl.replace(/\/$/, '');
    const lines = [...this.folded].map(([kind, f]) => {
      const named = [...f.targets].join(', ');
      const more = f.more > 0 ? `; ${f.more} more for other targets` : '';
      return `${kind}: ${f.count}${named ? ` (${named}${more})` : ''}`;
    });
    const states = [...this.folded.keys()].map((k) => STATE_OF[k]).filter((s): s is string => s !== undefined);
    lines.push(`Their records: ${states.map((s) => `${base}/v1/rollbacks?state=${s}`).join(' ')}`);
    lines.push(`Over ${this.limit} of these in ${Math.round(this.windowMs / 1000)} s: the rest are summed up here (NOTIFY_FOLD_AFTER)`);
    this.folded = new Map();
    this.windowEnd = at;
    return {
      kind: 'notifications_folded',
      severity: 'warning',
      title: `${total} more notification${total === 1 ? '' : 's'} of rollbacks not done (blocked, dry run, notify only), summed up`,
      lines,
      at: wallAt,
    };
  }

  /** Notifications folded so far in this window. */
  get pending(): number {
    return [...this.folded.values()].reduce((a, f) => a + f.count, 0);
  }
}
