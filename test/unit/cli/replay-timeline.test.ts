import { readFileSync } from 'node:fs';
import t from 'tap';
import { chunks, MAX_POINTS_PER_SERIES } from '../../../src/cli/replay/history.js';
import { alertFingerprint, AlertSamples } from '../../../src/cli/replay/timeline.js';
import type { RangeSeries } from '../../../src/prometheus/client.js';

const MIN = 60_000;
const T0 = Date.UTC(2024, 2, 1, 12);

/**
 * What `timestamp(ALERTS{alertstate="firing"})` returns over [start, end] at `step` for ALERTS
 * samples at `evals`: at each step the newest sample at or before it, within the 5-minute lookback;
 * `stale`: a live Prometheus, whose staleness marker ends the series at the first evaluation without it.
 */
function rangeOf(labels: Record<string, string>, evals: number[], start: number, end: number, step: number, interval: number, stale: boolean): RangeSeries {
  const samples: RangeSeries['samples'] = [];
  for (let s = start; s <= end; s += step) {
    const picked = evals.filter((e) => e <= s && s - e <= 5 * MIN).pop();
    if (picked === undefined) continue;
    if (stale && !evals.includes(picked + interval) && s >= picked + interval) continue;
    samples.push({ t: s, v: picked / 1000 });
  }
  return { labels: { alertstate: 'firing', ...labels }, samples };
}

const every = (from: number, to: number, step: number) => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);

t.test('fingerprints are the ones Alertmanager gives the same labels', async (t) => {
  // captured from a real Alertmanager 0.25 (test/fixtures/alertmanager/README.md)
  const payload = JSON.parse(readFileSync('test/fixtures/alertmanager/firing-two-alerts.json', 'utf8'));
  t.ok(payload.alerts.length >= 2);
  for (const a of payload.alerts) t.equal(alertFingerprint(a.labels), a.fingerprint);
});

for (const stale of [false, true]) {
  t.test(`firing intervals split at gaps (${stale ? 'live TSDB, staleness markers' : 'backfilled TSDB, no staleness markers'})`, async (t) => {
    const evals = [...every(T0, T0 + 4 * MIN, MIN), ...every(T0 + 10 * MIN, T0 + 12 * MIN, MIN), T0 + 20 * MIN];
    const s = new AlertSamples();
    s.add([rangeOf({ alertname: 'HighErrorRate', namespace: 'prod', deployment: 'web' }, evals, T0 - 60 * MIN, T0 + 60 * MIN, MIN, MIN, stale)]);
    const out = s.intervals({ fromMs: T0 - 60 * MIN, toMs: T0 + 60 * MIN, stepMs: MIN });
    t.same(
      out.map((a) => [a.startsAt - T0, (a.endsAt ?? NaN) - T0]),
      [
        [0, 5 * MIN],
        [10 * MIN, 13 * MIN],
        // a single evaluation (a flap) is an interval of its own: the rule's interval is known from its other evaluations
        [20 * MIN, 21 * MIN],
      ],
    );
    t.same(out[0]!.labels, { alertname: 'HighErrorRate', namespace: 'prod', deployment: 'web' }, 'alertstate dropped');
    t.ok(out.every((a) => !a.startedBeforeRange));
  });
}

t.test('the evaluation interval is per alerting rule, and the query step may be finer or coarser', async (t) => {
  const s = new AlertSamples();
  // rule A evaluated every 2m, read at a 1m step: consecutive evaluations 2m apart are one interval
  const a = [...every(T0, T0 + 20 * MIN, 2 * MIN), ...every(T0 + 40 * MIN, T0 + 44 * MIN, 2 * MIN)];
  // rule B evaluated every 15s, read at a 1m step: a 3-minute gap splits it
  const b = [...every(T0, T0 + 10 * MIN, 15_000), ...every(T0 + 13 * MIN, T0 + 15 * MIN, 15_000)];
  s.add([
    rangeOf({ alertname: 'A' }, a, T0 - 10 * MIN, T0 + 60 * MIN, MIN, 2 * MIN, false),
    rangeOf({ alertname: 'B' }, b, T0 - 10 * MIN, T0 + 60 * MIN, MIN, 15_000, false),
  ]);
  const out = s.intervals({ fromMs: T0 - 10 * MIN, toMs: T0 + 60 * MIN, stepMs: MIN });
  t.same(
    out.filter((x) => x.labels.alertname === 'A').map((x) => [x.startsAt - T0, x.endsAt! - T0]),
    [
      [0, 22 * MIN],
      [40 * MIN, 46 * MIN],
    ],
  );
  const bs = out.filter((x) => x.labels.alertname === 'B');
  t.equal(bs.length, 2);
  t.equal(bs[1]!.startsAt, T0 + 13 * MIN);
  // --eval-interval overrides what is seen: with 30m, A's gap is no gap
  t.equal(s.intervals({ fromMs: T0 - 10 * MIN, toMs: T0 + 60 * MIN, stepMs: MIN, evalIntervalMs: 30 * MIN }).filter((x) => x.labels.alertname === 'A').length, 1);
});

t.test('alerts firing at --from are marked, alerts firing at --to have no end; --label adds what is absent', async (t) => {
  const s = new AlertSamples();
  const from = T0;
  const to = T0 + 60 * MIN;
  s.add([
    rangeOf({ alertname: 'Early', cluster: 'own' }, every(T0 - 30 * MIN, T0 + 5 * MIN, MIN), from, to, MIN, MIN, true),
    rangeOf({ alertname: 'Late' }, every(T0 + 50 * MIN, to, MIN), from, to, MIN, MIN, true),
  ]);
  const out = s.intervals({ fromMs: from, toMs: to, stepMs: MIN, extraLabels: { cluster: 'eu-1' } });
  const early = out.find((a) => a.labels.alertname === 'Early')!;
  const late = out.find((a) => a.labels.alertname === 'Late')!;
  t.ok(early.startedBeforeRange);
  t.equal(early.endsAt, T0 + 6 * MIN);
  t.equal(early.labels.cluster, 'own', "an alert's own label wins, as over Prometheus' external_labels");
  t.notOk(late.startedBeforeRange);
  t.equal(late.endsAt, undefined);
  t.equal(late.labels.cluster, 'eu-1');
  t.equal(late.fingerprint, alertFingerprint({ alertname: 'Late', cluster: 'eu-1' }));
});

t.test("ALERTS is read in chunks within Prometheus' 11,000 points per series, covering the range once", async (t) => {
  for (const [from, to, step] of [
    [T0, T0 + 30 * 86_400_000, 15_000],
    [T0, T0 + 30 * 86_400_000, 60_000],
    [T0, T0 + 10 * MIN, 60_000],
    [T0, T0 + 10_999 * 60_000, 60_000],
  ] as const) {
    const cs = chunks(from, to, step);
    t.equal(cs[0]!.startMs, from);
    t.equal(cs[cs.length - 1]!.endMs, to);
    for (const [i, c] of cs.entries()) {
      t.ok((c.endMs - c.startMs) / step <= MAX_POINTS_PER_SERIES, `chunk ${i} of ${cs.length} (step ${step / 1000}s) within the limit`);
      if (i > 0) t.equal(c.startMs, cs[i - 1]!.endMs + step, 'the next chunk starts one step after the last');
    }
  }
  t.equal(chunks(T0, T0 + 30 * 86_400_000, 15_000).length, 16);
});

t.test('a chunk of ALERTS over the answer bound is read again in halves, on the same steps; one step over it stops the replay', async (t) => {
  const { readAlerts } = await import('../../../src/cli/replay/history.js');
  const { PrometheusQueryError } = await import('../../../src/prometheus/client.js');
  const { ReplayAbort } = await import('../../../src/cli/replay/limits.js');
  const evals = every(T0, T0 + 600 * MIN, MIN);
  const asked: Array<[number, number]> = [];
  const prom = (maxSteps: number) => ({
    query: async () => [],
    queryRange: async (_q: string, start: number, end: number, step: number) => {
      asked.push([start, end]);
      if ((end - start) / step > maxSteps) throw new PrometheusQueryError('answered more than PROMETHEUS_MAX_RESPONSE_BYTES', 'too_large', 'ALERTS');
      return [rangeOf({ alertname: 'Big' }, evals, start, end, step, MIN, true)];
    },
  });
  const samples = await readAlerts(prom(100), { fromMs: T0, toMs: T0 + 600 * MIN, stepMs: MIN });
  const alerts = samples.intervals({ fromMs: T0 - MIN, toMs: T0 + 700 * MIN, stepMs: MIN });
  t.equal(alerts.length, 1, 'one interval, no gap where the halves meet');
  t.equal(alerts[0]!.startsAt, T0);
  t.equal(alerts[0]!.endsAt, T0 + 601 * MIN);
  t.ok(asked.every(([s]) => (s - T0) % MIN === 0), 'every half on the step grid');
  const err = await readAlerts(prom(-1), { fromMs: T0, toMs: T0 + 10 * MIN, stepMs: MIN }).catch((e: unknown) => e);
  t.ok(err instanceof ReplayAbort);
  t.match((err as Error).message, /alone are more than one answer may hold/);
});
