// The incident clock an on-call reads (the record's times, the report's table, the MTTR panels'
// histograms) stays within what rollguard saw: a resolved alert's endsAt is the sender's word, and
// an alert's startsAt is Prometheus' clock. Neither may put a resolution before the alert began or
// in the future, nor make a histogram's _sum go down (increase() reads that as a counter reset).
import t from 'tap';
import { endedAt } from '../../../src/alertmanager/alert.js';
import { elapsedSeconds } from '../../../src/metrics.js';
import { firing, recoversOnWrite, testEngine } from '../../support/engine.js';

async function sumOf(h: { get(): Promise<{ values: { metricName?: string; value: number }[] }> }): Promise<{ sum: number; count: number }> {
  const v = (await h.get()).values;
  return { sum: v.find((x) => x.metricName?.endsWith('_sum'))?.value ?? 0, count: v.find((x) => x.metricName?.endsWith('_count'))?.value ?? 0 };
}

t.test("a resolved alert's endsAt before it started, or far ahead, is not the record's resolution time", async (t) => {
  for (const [what, endsAt] of [
    ['an hour before the alert started', -60 * 60_000],
    ['years ahead', 5 * 365 * 24 * 3600_000],
  ] as const) {
    const e = testEngine();
    recoversOnWrite(e);
    e.prometheus!.value = 0.2;
    const alert = firing('HighErrorRate', 'checkout');
    await e.deliver(alert);
    const receivedAt = Date.now();
    await e.deliver({ ...alert, status: 'resolved', endsAt: endsAt < 0 ? alert.startsAt + endsAt : receivedAt + endsAt, receivedAt });
    const [rec] = await e.engine.records.list({ limit: 1 });
    t.equal(rec?.state, 'succeeded', what);
    const resolvedAt = rec?.times.resolvedAt;
    t.ok(resolvedAt !== undefined && resolvedAt >= alert.startsAt && resolvedAt <= receivedAt, `${what}: resolved between the alert's start and the resolution's receipt`);
  }
});

t.test('an endsAt between the start and the receipt is kept; one a little ahead is the receipt', async (t) => {
  const a = { startsAt: 1_000_000, receivedAt: 2_000_000 };
  t.equal(endedAt({ ...a, endsAt: 1_500_000 }), 1_500_000);
  t.equal(endedAt({ ...a, endsAt: 2_000_500 }), 2_000_000);
  t.equal(endedAt({ ...a, endsAt: 999_999 }), 2_000_000);
  t.equal(endedAt(a), 2_000_000, 'no endsAt: the receipt');
  t.equal(elapsedSeconds(2_000, 1_000), 0, 'never below 0');
  t.equal(elapsedSeconds(1_000, 2_500), 1.5);
});

t.test("an alert starting a little ahead of rollguard's clock (within ALERT_MAX_CLOCK_SKEW) recovered at once: no negative time to recover", async (t) => {
  const e = testEngine();
  recoversOnWrite(e);
  e.prometheus!.value = 0.2;
  await e.deliver(firing('HighErrorRate', 'checkout', { startsAt: Date.now() + 4 * 60_000 }));
  const [rec] = await e.engine.records.list({ limit: 1 });
  t.equal(rec?.state, 'succeeded');
  const mttr = await sumOf(e.metrics.timeToRecover);
  t.equal(mttr.count, 1, 'observed once');
  t.ok(mttr.sum >= 0, 'the time to recover is not negative: its _sum never goes down');
  t.ok((await sumOf(e.metrics.timeToDetect)).sum >= 0);
});
