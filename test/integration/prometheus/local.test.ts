import t from 'tap';
import { PrometheusClient } from '../../../src/prometheus/client.js';
import { LocalPrometheus, PrometheusBinaryMissingError } from '../../../src/prometheus/local.js';
import { startPrometheus } from '../../support/prometheus.js';

t.test('backfilled series are queryable at their own (past) times', async (t) => {
  const T = Date.UTC(2025, 0, 6, 9, 0);
  const prom = await startPrometheus(t, [{ metric: 'demo_value', labels: { who: 'a "quoted" \\ value' }, samples: [[T, 1], [T + 60_000, 2], [T + 120_000, 3]] }]);
  const c = new PrometheusClient({ url: prom.url });
  const r = await c.query('demo_value', T + 90_000);
  t.same(r, [{ labels: { __name__: 'demo_value', who: 'a "quoted" \\ value' }, t: T + 90_000, v: 2 }]);
  t.same(await c.query('demo_value', T + 3_600_000), [], 'nothing an hour later (5m lookback)');
});

t.test('an empty Prometheus starts too', async (t) => {
  const prom = await startPrometheus(t);
  t.same(await new PrometheusClient({ url: prom.url }).query('vector(1)', Date.UTC(2025, 0, 1)), [{ labels: {}, t: Date.UTC(2025, 0, 1), v: 1 }]);
});

t.test('bad OpenMetrics fails with promtool\'s reason; a missing binary is an error, not a skip', async (t) => {
  await t.rejects(LocalPrometheus.start({ openMetrics: 'not openmetrics at all\n' }), /promtool could not backfill the series/);
  await t.rejects(LocalPrometheus.start({ prometheusBin: '/nonexistent/prometheus' }), PrometheusBinaryMissingError);
});
