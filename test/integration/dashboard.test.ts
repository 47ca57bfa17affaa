// The Grafana dashboard (helm/rollguard/dashboards/rollguard.json): the shape Grafana imports, and
// every panel's PromQL accepted by the real Prometheus (Debian's 2.42), evaluated over backfilled
// rollguard series so that the target panels are shown to compute the right numbers.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startPrometheus, samples, type TestSeries } from '../support/prometheus.js';
import { ROOT } from '../support/serve.js';

interface Target {
  refId?: unknown;
  expr?: unknown;
  datasource?: { type?: unknown; uid?: unknown };
}
interface Panel {
  id?: unknown;
  type?: unknown;
  title?: unknown;
  gridPos?: { x?: unknown; y?: unknown; w?: unknown; h?: unknown };
  datasource?: { type?: unknown; uid?: unknown };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  title?: unknown;
  uid?: unknown;
  schemaVersion?: unknown;
  panels?: Panel[];
  templating?: { list?: Array<{ name?: unknown; type?: unknown; query?: unknown }> };
  time?: { from?: unknown; to?: unknown };
}

const FILE = join(ROOT, 'helm/rollguard/dashboards/rollguard.json');
const dash = JSON.parse(readFileSync(FILE, 'utf8')) as Dashboard;
const all: Panel[] = (dash.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
const dataPanels = all.filter((p) => p.type !== 'row');
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

t.test('top level: what Grafana needs to import the dashboard', async (t) => {
  t.type(dash.title, 'string');
  t.ok((dash.title as string).length > 0, 'title');
  t.match(dash.uid, /^[A-Za-z0-9_-]{1,40}$/, 'uid: at most 40 characters of [A-Za-z0-9_-]');
  t.ok(isInt(dash.schemaVersion) && (dash.schemaVersion as number) >= 36, 'schemaVersion: an integer, a current schema');
  t.ok(Array.isArray(dash.panels) && dash.panels.length > 0, 'panels[]');
  t.ok(Array.isArray(dash.templating?.list), 'templating.list[]');
  t.type(dash.time?.from, 'string');
  t.notOk('id' in dash && (dash as { id?: unknown }).id !== null, 'no instance id (Grafana assigns one on import)');
});

t.test('templating: a Prometheus datasource variable every panel uses', async (t) => {
  const vars = dash.templating!.list!;
  const ds = vars.find((v) => v.type === 'datasource');
  t.ok(ds, 'a datasource variable');
  t.equal(ds?.name, 'datasource');
  t.equal(ds?.query, 'prometheus');
  const names = new Set(vars.map((v) => v.name));
  t.equal(names.size, vars.length, 'variable names are unique');
  const builtins = new Set(['__range', '__rate_interval', '__interval', '__range_s']);
  for (const p of dataPanels) {
    for (const tg of p.targets ?? []) {
      for (const m of String(tg.expr).matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
        t.ok(builtins.has(m[1]!) || names.has(m[1]!), `${p.title}: $${m[1]} is a Grafana built-in or a dashboard variable`);
      }
    }
  }
});

t.test('panels: id, type, title, gridPos, datasource, targets[].expr', async (t) => {
  const ids = new Set<unknown>();
  const types = new Set(['row', 'timeseries', 'stat', 'bargauge', 'gauge', 'table', 'text', 'barchart', 'piechart', 'heatmap']);
  for (const p of all) {
    const name = String(p.title);
    t.ok(isInt(p.id) && (p.id as number) > 0, `${name}: integer id`);
    t.notOk(ids.has(p.id), `${name}: id ${String(p.id)} unique`);
    ids.add(p.id);
    t.ok(types.has(String(p.type)), `${name}: a built-in panel type (${String(p.type)})`);
    t.ok(typeof p.title === 'string' && p.title.length > 0, 'title');
    const g = p.gridPos ?? {};
    t.ok(isInt(g.x) && isInt(g.y) && isInt(g.w) && isInt(g.h), `${name}: gridPos x/y/w/h integers`);
    t.ok((g.w as number) > 0 && (g.h as number) > 0 && (g.x as number) >= 0 && (g.x as number) + (g.w as number) <= 24, `${name}: inside the 24-column grid`);
    if (p.type === 'row') continue;
    t.same(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `${name}: the datasource variable`);
    t.ok(Array.isArray(p.targets) && p.targets.length > 0, `${name}: targets[]`);
    const refIds = new Set<unknown>();
    for (const tg of p.targets ?? []) {
      t.ok(typeof tg.expr === 'string' && tg.expr.trim().length > 0, `${name}: expr`);
      t.ok(typeof tg.refId === 'string' && !refIds.has(tg.refId), `${name}: unique refId`);
      refIds.add(tg.refId);
      t.same(tg.datasource, { type: 'prometheus', uid: '${datasource}' }, `${name}: target datasource`);
    }
  }
  // no two panels cover the same cell
  const cells = new Map<string, string>();
  for (const p of all) {
    const g = p.gridPos as { x: number; y: number; w: number; h: number };
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        const k = `${x},${y}`;
        if (cells.has(k)) t.fail(`${String(p.title)} overlaps ${cells.get(k)} at ${k}`);
        cells.set(k, String(p.title));
      }
    }
  }
});

t.test("the issue's panels are there: MTTR, TTD, TTR against the targets, outcomes, guards, approvals, webhook", async (t) => {
  const exprs = dataPanels.flatMap((p) => (p.targets ?? []).map((tg) => String(tg.expr)));
  for (const metric of [
    'rollguard_time_to_recover_seconds',
    'rollguard_time_to_detect_seconds',
    'rollguard_time_to_decide_seconds',
    'rollguard_time_to_rollback_seconds',
    'rollguard_rollbacks_total',
    'rollguard_guard_blocked_total',
    'rollguard_pending_approvals',
    'rollguard_webhook_requests_total',
    'rollguard_webhook_request_duration_seconds',
  ]) {
    t.ok(exprs.some((e) => e.includes(metric)), `a panel queries ${metric}`);
  }
  t.ok(exprs.some((e) => /sum by \(outcome\)/.test(e)), 'rollbacks by outcome');
  t.ok(exprs.some((e) => /sum by \(code\)/.test(e)), 'webhook rate by code');
  // Each time panel carries its seed target as a threshold.
  const threshold = (title: RegExp) => {
    const p = dataPanels.find((x) => title.test(String(x.title))) as { fieldConfig?: { defaults?: { thresholds?: { steps?: Array<{ value: number | null }> } } } } | undefined;
    return p?.fieldConfig?.defaults?.thresholds?.steps?.map((s) => s.value);
  };
  t.same(threshold(/^MTTR \(mean/), [null, 1800]);
  t.same(threshold(/^Time to detect/), [null, 300]);
  t.same(threshold(/^Time to decide/), [null, 600]);
  t.same(threshold(/^Time to rollback/), [null, 900]);
  t.same(threshold(/^MTTR p90/), [null, 1800]);
  t.same(threshold(/^TTR p90/), [null, 900]);
});

// Two rollbacks inside a two-hour range: recovered in 600 s and in 2400 s (one over the 30 min target).
const T0 = Date.UTC(2026, 10, 1, 0, 0, 0);
const END = T0 + 2 * 3600_000;
const STEP = 15_000;
const N = (END - T0) / STEP + 1;
const first = T0 + 30 * 60_000;
const second = T0 + 80 * 60_000;
const obs = (t: number) => [...(t >= first ? [600] : []), ...(t >= second ? [2400] : [])];
const BUCKETS = ['30', '60', '120', '300', '600', '900', '1200', '1800', '3600', '7200', '+Inf'];
const series: TestSeries[] = [
  ...BUCKETS.map((le) => ({
    metric: 'rollguard_time_to_recover_seconds_bucket',
    labels: { job: 'rollguard', le },
    samples: samples(T0, N, STEP, (_, t) => obs(t).filter((v) => le === '+Inf' || v <= Number(le)).length),
  })),
  { metric: 'rollguard_time_to_recover_seconds_sum', labels: { job: 'rollguard' }, samples: samples(T0, N, STEP, (_, t) => obs(t).reduce((a, b) => a + b, 0)) },
  { metric: 'rollguard_time_to_recover_seconds_count', labels: { job: 'rollguard' }, samples: samples(T0, N, STEP, (_, t) => obs(t).length) },
  {
    metric: 'rollguard_rollbacks_total',
    labels: { job: 'rollguard', rule: 'error-rate-above-5pct', namespace: 'shop', kind: 'Deployment', outcome: 'succeeded' },
    samples: samples(T0, N, STEP, (_, t) => obs(t).length),
  },
  { metric: 'rollguard_pending_approvals', labels: { job: 'rollguard', instance: 'a' }, samples: samples(T0, N, STEP, () => 1) },
  { metric: 'rollguard_pending_approvals', labels: { job: 'rollguard', instance: 'b' }, samples: samples(T0, N, STEP, () => 0) },
  { metric: 'rollguard_webhook_requests_total', labels: { job: 'rollguard', code: '200' }, samples: samples(T0, N, STEP, (i) => i * 3) },
];

/** Grafana's variables as Grafana would interpolate them for a two-hour range, all namespaces. */
function interpolate(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__interval', '15s')
    .replaceAll('$__range_s', '7200')
    .replaceAll('$__range', '2h')
    .replaceAll('$namespace', '.*');
}

t.test('every panel query is accepted by the real Prometheus and the target panels compute', async (t) => {
  const prom = await startPrometheus(t, series);
  const query = async (expr: string) => {
    const res = await fetch(`${prom.url}/api/v1/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query: expr, time: String(END / 1000) }),
    });
    return { http: res.status, body: (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } } };
  };
  let n = 0;
  for (const p of dataPanels) {
    for (const tg of p.targets ?? []) {
      const expr = interpolate(String(tg.expr));
      const r = await query(expr);
      t.equal(r.body.status, 'success', `${String(p.title)} / ${String(tg.refId)}: ${expr}${r.body.error ? `\n  -> ${r.body.error}` : ''}`);
      n++;
    }
  }
  t.ok(n >= 15, `${n} queries checked`);

  // The rejected query is rejected: the check above is not vacuous.
  const bad = await query('sum by (le (rate(rollguard_time_to_recover_seconds_bucket[5m]))');
  t.equal(bad.http, 400);
  t.equal(bad.body.status, 'error');

  const value = async (title: RegExp, refId = 'A') => {
    const p = dataPanels.find((x) => title.test(String(x.title)));
    const tg = p?.targets?.find((x) => x.refId === refId);
    t.ok(tg, `panel ${title} ${refId}`);
    const r = await query(interpolate(String(tg!.expr)));
    return r.body.data!.result.map((s) => ({ labels: s.metric, v: Number(s.value[1]) }));
  };
  const mttr = await value(/^MTTR \(mean/);
  t.equal(mttr.length, 1);
  t.ok(Math.abs(mttr[0]!.v - 1500) < 1, `MTTR mean over the range is (600 + 2400) / 2 = 1500 s, got ${mttr[0]!.v}`);
  const within = await value(/^Rollbacks within target/, 'D');
  t.ok(Math.abs(within[0]!.v - 0.5) < 0.001, `one of two recovered within 30 min, got ${within[0]!.v}`);
  const outcomes = await value(/^Rollbacks by rule and outcome/);
  t.equal(outcomes.length, 1);
  t.same(outcomes[0]!.labels, { rule: 'error-rate-above-5pct', outcome: 'succeeded' });
  t.ok(outcomes[0]!.v > 1.9 && outcomes[0]!.v < 2.2, `two succeeded rollbacks over the range (extrapolated), got ${outcomes[0]!.v}`);
  const pending = await value(/^Pending approvals/);
  t.equal(pending[0]!.v, 1, 'pending approvals: the highest any replica saw');
  const webhook = await value(/^Webhook requests by code/);
  t.same(webhook.map((s) => s.labels.code), ['200']);
  t.ok(Math.abs(webhook[0]!.v - 0.2) < 0.001, `3 requests per 15 s = 0.2/s, got ${webhook[0]!.v}`);
});
