import { allow, block, fmtDuration, type Guard } from './guard.js';

/**
 * Slack for the two clocks compared below: the alert's start is Prometheus', the revision's
 * creation the API server's (whole seconds). A revision created later than this after the alert
 * started was deployed while it fired.
 */
export const AFTER_ALERT_SLACK_MS = 60_000;

/**
 * Only roll back a revision created within `onlyIfDeployedWithin` before the alert started: a
 * week-old revision is not the cause of a new alert, and rolling it back would be the wrong thing.
 * Nor one created after the alert started (past AFTER_ALERT_SLACK_MS): the alert fired before it
 * existed, so it is not the cause either. That revision is what someone (or something) did about
 * the alert meanwhile, a rollback by hand or a fix forward, which a held, re-checked or scheduled
 * rollback would otherwise undo, bringing the bad revision back.
 */
export const recentDeployGuard: Guard = {
  name: 'recent-deploy',
  needsPlan: true,
  async check({ plan, settings, record, now }) {
    const created = plan?.current?.createdAt;
    if (created === undefined) return allow('the target has no revision time to check (not a revisioned kind)');
    const ref = record.alert?.startsAt ?? now;
    const within = settings.onlyIfDeployedWithin;
    const age = ref - created;
    // undefined when only the creation time is known (a replay reads it from kube-state-metrics, which has no revision numbers)
    const revision = plan?.current?.revision;
    const what = plan?.current?.what ?? `the current revision${revision === undefined ? '' : ` ${revision}`}`;
    if (age < -AFTER_ALERT_SLACK_MS) {
      return block(
        `${what} was deployed ${fmtDuration(Math.floor(-age / 60_000) * 60_000)} after the alert started (${new Date(ref).toISOString()}): it is not the alert's cause but what was done about it meanwhile (a rollback by hand, a fix forward); rollguard does not undo it. Roll back by hand if it must go`,
        'after_start',
      );
    }
    if (age > within) {
      return block(
        `${what} was deployed ${fmtDuration(Math.floor(age / 60_000) * 60_000)} before the alert started, more than onlyIfDeployedWithin ${fmtDuration(within)}: it is not a recent deploy`,
        'too_old',
      );
    }
    return allow(`${what} was deployed ${Math.round(Math.max(0, age) / 1000)}s before the alert started`);
  },
};
