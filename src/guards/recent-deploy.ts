import { allow, block, fmtDuration, type Guard } from './guard.js';

/**
 * Only roll back a revision created within `onlyIfDeployedWithin` before the alert started: a
 * week-old revision is not the cause of a new alert, and rolling it back would be the wrong thing.
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
    if (age > within) {
      return block(
        `${what} was deployed ${fmtDuration(Math.floor(age / 60_000) * 60_000)} before the alert started, more than onlyIfDeployedWithin ${fmtDuration(within)}: it is not a recent deploy`,
      );
    }
    return allow(`${what} was deployed ${Math.round(Math.max(0, age) / 1000)}s before the alert started`);
  },
};
