// Alerts fetched back from Alertmanager's API after a truncated notification are held to the
// webhook's intake limits: an alert over ALERT_MAX_LABELS or ALERT_MAX_LABEL_BYTES is not queued,
// at most ALERT_MAX_PER_BATCH newly queued per fetch (each resend moves on), only the allowed annotations
// are kept, and an answer over BODY_LIMIT_BYTES is not read. Each refusal is counted by its setting and logged with the group.
// Alertmanager's API takes alerts from anyone who reaches it: what it answers is input like a webhook.
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { AlertmanagerApi } from '../../src/alertmanager/api.js';
import type { WebhookPayload } from '../../src/alertmanager/schema.js';
import { MAX_WAITING_GROUPS, TruncatedGroups } from '../../src/alertmanager/truncated.js';
import { loadConfig } from '../../src/config.js';
import { createMetrics } from '../../src/metrics.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Alert } from '../../src/alertmanager/alert.js';
import { dedupeKey } from '../../src/alertmanager/alert.js';
import type { Lane } from '../../src/store/store.js';
import { metricValue } from '../support/app.js';

const GROUP_LABELS = { alertname: 'HighErrorRate', namespace: 'shop' };

function payload(truncatedAlerts: number, group: { groupKey?: string; receiver?: string } = {}): WebhookPayload {
  return {
    version: '4',
    groupKey: group.groupKey ?? '{}:{alertname="HighErrorRate", namespace="shop"}',
    truncatedAlerts,
    status: 'firing',
    receiver: group.receiver ?? 'rollguard',
    groupLabels: GROUP_LABELS,
    commonLabels: {},
    commonAnnotations: {},
    externalURL: 'http://alertmanager:9093',
    alerts: [{ status: 'firing', labels: { ...GROUP_LABELS, deployment: 'delivered' }, annotations: {}, startsAt: '2026-12-01T10:00:00Z', generatorURL: '', fingerprint: 'delivered' }],
  };
}

function amAlert(fp: string, labels: Record<string, string>, annotations: Record<string, string> = {}, startsAt = '2026-12-01T10:00:00Z') {
  return { fingerprint: fp, labels: { ...GROUP_LABELS, ...labels }, annotations, startsAt, generatorURL: '', status: { state: 'active' }, receivers: [{ name: 'rollguard' }] };
}

/** Alertmanager's answer to GET /api/v2/alerts/groups: one group holding `alerts`. */
function answer(alerts: unknown[], opts: { chunked?: boolean } = {}): Response {
  const text = JSON.stringify([{ labels: GROUP_LABELS, receiver: { name: 'rollguard' }, alerts }]);
  if (!opts.chunked) return new Response(text, { headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) } });
  // no content-length: the limit must hold while reading
  const bytes = Buffer.from(text);
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < bytes.length; i += 512) c.enqueue(bytes.subarray(i, i + 512));
      c.close();
    },
  });
  return new Response(body, { headers: { 'content-type': 'application/json' } });
}

function rig(env: Record<string, string>, respond: () => Response | Promise<Response>, opts: { now?: () => number; laneFor?: (a: Alert) => Lane | null; maxQueue?: number; retryDelays?: number[] } = {}) {
  const config = loadConfig({ ALERTMANAGER_URL: 'http://alertmanager:9093', ...env });
  const store = new MemoryStore(Date.now, opts.maxQueue !== undefined ? { maxQueue: opts.maxQueue } : {});
  // the size of each intake call
  const intakes: number[] = [];
  const intake = store.intake.bind(store);
  store.intake = (items, ttl) => (intakes.push(items.length), intake(items, ttl));
  const metrics = createMetrics({ defaults: false });
  const api = new AlertmanagerApi({ url: config.ALERTMANAGER_URL!, fetch: async () => respond(), maxBody: { bytes: config.BODY_LIMIT_BYTES, setting: 'BODY_LIMIT_BYTES' } });
  const groups = new TruncatedGroups({ store, metrics, config, now: opts.now ?? Date.now, api, retryDelays: opts.retryDelays ?? [], ...(opts.laneFor ? { laneFor: opts.laneFor } : {}) });
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const log = {
    info: (obj: object, msg: string) => void lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
    warn: (obj: object, msg: string) => void lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
    error: (obj: object, msg: string) => void lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg }),
  };
  const queued = async () => (await store.consume('test', 1000, 0, 60_000)).map((e) => e.alert);
  return { groups, metrics, lines, log, queued, intakes, store };
}

const refusedCount = (metrics: ReturnType<typeof createMetrics>, limit: string) => metricValue(metrics, 'rollguard_alertmanager_alerts_refused_total', { limit });

t.test('an alert over ALERT_MAX_LABELS or ALERT_MAX_LABEL_BYTES is not queued; counted by setting and logged with the group', async (t) => {
  const manyLabels = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`l${i}`, 'x']));
  const r = rig({ ALERT_MAX_LABELS: '10', ALERT_MAX_LABEL_BYTES: '64' }, () =>
    answer([
      amAlert('delivered', { deployment: 'delivered' }),
      amAlert('ok', { deployment: 'ok' }),
      amAlert('many-labels', { deployment: 'many', ...manyLabels }),
      amAlert('long-value', { deployment: 'x'.repeat(65) }),
      amAlert('long-name', { deployment: 'n', ['k'.repeat(65)]: 'v' }),
      amAlert('x'.repeat(65), { deployment: 'long-fingerprint' }),
    ]),
  );
  r.groups.notice(payload(5), r.log);
  await r.groups.idle();
  const q = await r.queued();
  t.same(q.map((a) => a.fingerprint), ['ok'], 'only the alert within every limit is queued');
  t.equal(await refusedCount(r.metrics, 'ALERT_MAX_LABELS'), 1);
  t.equal(await refusedCount(r.metrics, 'ALERT_MAX_LABEL_BYTES'), 3, 'a long label value, a long label name, a long fingerprint');
  t.equal(await metricValue(r.metrics, 'rollguard_alerts_recovered_total'), 1);
  const warn = r.lines.find((l) => l.level === 'warn' && /pass an intake limit/.test(l.msg));
  t.ok(warn, 'a warning');
  t.match(warn!.msg, /4 alert\(s\) fetched from Alertmanager for group \{\}:\{alertname="HighErrorRate", namespace="shop"\} pass an intake limit and are not queued \(ALERT_MAX_LABELS, ALERT_MAX_LABEL_BYTES\)/);
  t.same(warn!.obj.limits, { ALERT_MAX_LABELS: 1, ALERT_MAX_LABEL_BYTES: 3 });
  t.match((warn!.obj.reasons as string[])[0], /alerts fetched\[\d\]\.labels: 23 labels, over the 10 an alert may have \(ALERT_MAX_LABELS\)/);
  t.notOk(JSON.stringify(r.lines).includes('x'.repeat(65)), 'the over-long value is not copied into the log');
});

// Found by review (2026-12-07): only the first ALERT_MAX_PER_BATCH of what was fetched were
// queued, before duplicates and unmatched alerts were left out. Alertmanager answers a group in a
// stable order, so every resend took the same ones and those past them were never queued.
// Found by the next review (2026-12-07): the fix queued the whole group in one fetch, so one big
// group could fill the queue (QUEUE_MAX_DEPTH) and lock P0 alerts out. A fetch now queues at most
// ALERT_MAX_PER_BATCH new alerts, and each resend moves on past those already queued.
t.test('more fetched alerts than ALERT_MAX_PER_BATCH: each fetch queues at most ALERT_MAX_PER_BATCH new ones, each resend moves on', async (t) => {
  const r = rig({ ALERT_MAX_PER_BATCH: '3' }, () => answer(Array.from({ length: 8 }, (_, i) => amAlert(`fp-${i}`, { deployment: `d${i}` }))));
  const perFetch: string[][] = [];
  for (let k = 0; k < 4; k++) {
    r.groups.notice(payload(7), r.log);
    await r.groups.idle();
    perFetch.push((await r.queued()).map((a) => a.fingerprint));
  }
  t.same(perFetch, [['fp-0', 'fp-1', 'fp-2'], ['fp-3', 'fp-4', 'fp-5'], ['fp-6', 'fp-7'], []], 'three new per fetch, in order, then none');
  t.ok(r.intakes.every((n) => n <= 3), 'no intake call over ALERT_MAX_PER_BATCH');
  t.equal(await refusedCount(r.metrics, 'ALERT_MAX_PER_BATCH'), undefined, 'none refused');
  t.equal(await metricValue(r.metrics, 'rollguard_alerts_recovered_total'), 8);
  t.equal(await metricValue(r.metrics, 'rollguard_alertmanager_fetches_total', { outcome: 'ok' }), 4);
  const first = r.lines.find((l) => /as many as one fetch queues/.test(l.msg));
  t.match(first?.msg, /queued 3 alert\(s\), as many as one fetch queues \(ALERT_MAX_PER_BATCH\); the other 5 it found are queued by Alertmanager's next resends of the group/);
});

t.test('a group of 30 with max_alerts 5 and ALERT_MAX_PER_BATCH 10: every alert left out is queued over the resends, each once', async (t) => {
  const all = Array.from({ length: 30 }, (_, i) => amAlert(`fp${String(i).padStart(4, '0')}`, { pod: `p${i}` }));
  const r = rig({ ALERT_MAX_PER_BATCH: '10' }, () => answer(all));
  const notification = (): WebhookPayload => ({
    ...payload(25),
    alerts: all.slice(0, 5).map((a) => ({ status: 'firing' as const, labels: a.labels, annotations: {}, startsAt: a.startsAt, generatorURL: '', fingerprint: a.fingerprint })),
  });
  const seen: string[] = [];
  const counts: number[] = [];
  // the same notification resent (group_interval, repeat_interval)
  for (let k = 0; k < 4; k++) {
    r.groups.notice(notification(), r.log);
    await r.groups.idle();
    const q = (await r.queued()).map((a) => a.fingerprint);
    counts.push(q.length);
    seen.push(...q);
  }
  t.same(counts, [10, 10, 5, 0], 'ten new per resend, then the last five, then none');
  t.same([...seen].sort(), all.slice(5).map((a) => a.fingerprint), 'the 25 left out, each once');
  t.ok(r.intakes.every((n) => n <= 10), 'no intake call over ALERT_MAX_PER_BATCH');
  t.equal(await metricValue(r.metrics, 'rollguard_alerts_recovered_total'), 25);
});

t.test('one big P2 group fetched does not fill the queue: a P0 alert is still queued after it', async (t) => {
  const all = Array.from({ length: 150 }, (_, i) => amAlert(`fp${i}`, { pod: `p${i}` }));
  const r = rig({ ALERT_MAX_PER_BATCH: '10', QUEUE_MAX_DEPTH: '100' }, () => answer(all), { laneFor: () => 2, maxQueue: 100 });
  r.groups.notice(payload(149), r.log);
  await r.groups.idle();
  t.ok((await r.store.queueDepth()) <= 10, 'at most ALERT_MAX_PER_BATCH queued by the fetch');
  const p0 = { fingerprint: 'p0', status: 'firing', labels: { alertname: 'CheckoutDown' }, annotations: {}, startsAt: Date.now(), generatorURL: '', receiver: 'r', groupKey: 'x', externalURL: '', receivedAt: Date.now() } as unknown as Alert;
  const res = await r.store.intake([{ key: dedupeKey(p0), alert: p0, lane: 0 }], 60_000);
  t.equal(res.queued, 1, 'the P0 alert is queued');
  t.equal(await metricValue(r.metrics, 'rollguard_alertmanager_fetches_total', { outcome: 'ok' }), 1);
  t.notOk(r.lines.some((l) => l.level === 'error'), 'no error logged');
});

t.test('a P0 alert of a mixed group is queued by the first fetch, ahead of the P2 ones before it', async (t) => {
  const all = [...Array.from({ length: 12 }, (_, i) => amAlert(`p2-${i}`, { pod: `p${i}` })), amAlert('p0', { alertname: 'CheckoutDown', pod: 'c' })];
  const r = rig({ ALERT_MAX_PER_BATCH: '5' }, () => answer(all), { laneFor: (a) => (a.labels.alertname === 'CheckoutDown' ? 0 : 2) });
  r.groups.notice(payload(12), r.log);
  await r.groups.idle();
  const q = await r.queued();
  t.equal(q.length, 5, 'ALERT_MAX_PER_BATCH queued');
  t.same(q.map((a) => a.fingerprint), ['p0', 'p2-0', 'p2-1', 'p2-2', 'p2-3'], 'the P0 alert among them');
});

t.test('the queue full partway through a fetch: what was queued is said, the rest wait for the next resend; not a failed fetch', async (t) => {
  const all = Array.from({ length: 8 }, (_, i) => amAlert(`fp-${i}`, { deployment: `d${i}` }));
  let group = all.slice(0, 2);
  const r = rig({ ALERT_MAX_PER_BATCH: '4', QUEUE_MAX_DEPTH: '6' }, () => answer(group), { maxQueue: 6 });
  r.groups.notice(payload(1), r.log);
  await r.groups.idle();
  t.equal(await r.store.queueDepth(), 2, 'a first fetch queued fp-0 and fp-1');
  group = all; // the group grew to 8
  // a webhook batch lands between this fetch's first and second intake calls
  const webhookAlert = { fingerprint: 'w', status: 'firing', labels: { alertname: 'Other' }, annotations: {}, startsAt: Date.now(), generatorURL: '', receiver: 'r', groupKey: 'x', externalURL: '', receivedAt: Date.now() } as unknown as Alert;
  const intake = r.store.intake.bind(r.store);
  let calls = 0;
  r.store.intake = async (items, ttl) => {
    if (++calls === 2) await intake([{ key: dedupeKey(webhookAlert), alert: webhookAlert, lane: 1 }], ttl);
    return intake(items, ttl);
  };
  r.groups.notice(payload(7), r.log);
  await r.groups.idle();
  t.equal(await r.store.queueDepth(), 5, 'fp-0 to fp-3 and the webhook alert stay queued');
  t.equal(await metricValue(r.metrics, 'rollguard_alertmanager_fetches_total', { outcome: 'queue_full' }), 1);
  t.equal(await metricValue(r.metrics, 'rollguard_alertmanager_fetches_total', { outcome: 'failed' }), undefined, 'not counted as a failed fetch');
  t.equal(await metricValue(r.metrics, 'rollguard_alerts_recovered_total'), 4, 'the two of each fetch counted as queued');
  t.notOk(r.lines.some((l) => l.level === 'error'), 'no "could not fetch" error');
  const warn = r.lines.find((l) => /the queue is full/.test(l.msg));
  t.match(warn?.msg, /queued 2 alert\(s\); the other 4 it found wait for Alertmanager's next resend of the group/);
  t.equal(warn?.obj.queued, 2);
});

t.test('alerts no rule matches are left out before the batches: they take no place in one', async (t) => {
  // Alertmanager's order: 20 alerts no rule matches first, then 5 that one does
  const all = [...Array.from({ length: 20 }, (_, i) => amAlert(`a${String(i).padStart(2, '0')}`, { alertname: 'NoRule', pod: `p${i}` })), ...Array.from({ length: 5 }, (_, i) => amAlert(`b${i}`, { pod: `q${i}` }))];
  const r = rig({ ALERT_MAX_PER_BATCH: '10' }, () => answer(all), { laneFor: (a) => (a.labels.alertname === 'NoRule' ? null : 1) });
  r.groups.notice(payload(25), r.log);
  await r.groups.idle();
  t.same((await r.queued()).map((a) => a.fingerprint), ['b0', 'b1', 'b2', 'b3', 'b4'], 'the five a rule matches are queued');
  t.same(r.intakes, [5], 'one intake call, of the matched alerts only');
  t.equal(await metricValue(r.metrics, 'rollguard_alerts_unmatched_total'), 20, 'the others counted, as at the webhook');
});

t.test('only the allowed annotations are kept, each cut to ALERT_MAX_ANNOTATION_BYTES', async (t) => {
  const r = rig({ ALERT_MAX_ANNOTATION_BYTES: '16' }, () => answer([amAlert('fp', { deployment: 'a' }, { summary: 'error rate above 5% for 10 minutes', secret_dsn: 'postgres://u:p@db', description: 'short' })]));
  r.groups.notice(payload(1), r.log);
  await r.groups.idle();
  const [a] = await r.queued();
  t.same(a!.annotations, { summary: 'error rate above', description: 'short' });
});

t.test('an answer over BODY_LIMIT_BYTES is not read: the fetch fails, counted and logged naming the setting; nothing queued', async (t) => {
  const big = Array.from({ length: 40 }, (_, i) => amAlert(`fp-${i}`, { deployment: `d${i}`, pad: 'p'.repeat(100) }));
  for (const chunked of [false, true]) {
    const r = rig({ BODY_LIMIT_BYTES: '2048' }, () => answer(big, { chunked }));
    r.groups.notice(payload(39), r.log);
    await r.groups.idle();
    t.equal((await r.queued()).length, 0, `${chunked ? 'streamed' : 'with content-length'}: nothing queued`);
    t.equal(await metricValue(r.metrics, 'rollguard_alertmanager_fetches_total', { outcome: 'failed' }), 1);
    const err = r.lines.find((l) => l.level === 'error');
    t.match(err?.obj.err, /answered (more than 2048|\d+) bytes, over the 2048 rollguard reads \(BODY_LIMIT_BYTES\): not read/);
  }
});

t.test('alerts fetched back take the webhook lanes: a P0 alert is queued in lane 0, one no rule matches is counted and not queued', async (t) => {
  const { createServer } = await import('node:http');
  const { testApp, postAlerts } = await import('../support/app.js');
  const { rules } = await import('../support/engine.js');
  // Alertmanager's API on loopback: the group holds the delivered alert and two left out of the notification
  const server = createServer((_req, res) => {
    const r = answer([
      amAlert('delivered', { deployment: 'delivered' }),
      amAlert('p0-left-out', { alertname: 'BadDeploy', deployment: 'checkout' }),
      amAlert('nobody', { alertname: 'NoRuleForThis', deployment: 'other' }),
    ]);
    void r.text().then((text) => res.writeHead(200, { 'content-type': 'application/json' }).end(text));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const rule = (name: string, alertname: string, priority: string) => `  - name: ${name}
    match: ['alertname="${alertname}"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}", deployment: "{{ $labels.deployment }}" }, threshold: 0.05, for: 2m }
    priority: ${priority}
`;
  const ruleText = `rules:\n${rule('p1', 'HighErrorRate', 'P1')}${rule('p0', 'BadDeploy', 'P0')}`;
  const { app, store, metrics } = testApp({ env: { ALERTMANAGER_URL: `http://127.0.0.1:${port}` }, deps: { rules: { rules: rules(ruleText) } } });
  const res = await postAlerts(app, payload(2));
  t.equal(res.statusCode, 200, res.body);
  await app.close(); // waits for the fetch (onClose: truncated.idle())
  t.equal(await metricValue(metrics, 'rollguard_alerts_recovered_total'), 1, 'the P0 alert left out is recovered');
  t.equal(await metricValue(metrics, 'rollguard_alerts_unmatched_total'), 1, 'the one no rule matches is counted, as at the webhook');
  const events = await store.consume('test', 10, 0, 60_000);
  t.same(events.map((e) => [e.alert.fingerprint, e.lane]), [['p0-left-out', 0], ['delivered', 1]], 'the P0 alert first, in lane 0; the delivered P1 alert in lane 1; the unmatched one not queued');
});

/** Fetches that answer only when released: what runs at once is then known without any timing. */
function heldFetches() {
  const waiting: Array<() => void> = [];
  let calls = 0;
  return {
    respond: async (): Promise<Response> => {
      calls++;
      await new Promise<void>((r) => waiting.push(r));
      return answer([amAlert('left-out', { deployment: 'left-out' })]);
    },
    calls: () => calls,
    releaseAll: () => {
      for (const r of waiting.splice(0)) r();
    },
  };
}

const deferred = (metrics: ReturnType<typeof createMetrics>, reason: string) => metricValue(metrics, 'rollguard_alertmanager_fetches_deferred_total', { reason });

/** Until `calls()` reaches n (fetches start as the ones before end, a few turns of the event loop on). */
async function calls(held: ReturnType<typeof heldFetches>, n: number) {
  for (let i = 0; i < 200 && held.calls() < n; i++) await new Promise((r) => setImmediate(r));
  return held.calls();
}

t.test('one fetch per receiver and group at a time: resends while it runs wait, and the group is fetched once more when it ends', async (t) => {
  const held = heldFetches();
  const r = rig({}, held.respond);
  t.equal(await deferred(r.metrics, 'in_progress'), 0, 'exported at 0 from the start');
  r.groups.notice(payload(1), r.log);
  r.groups.notice(payload(1), r.log); // Alertmanager's resend (repeat_interval, the other replica of an HA pair)
  r.groups.notice(payload(1), r.log);
  await Promise.resolve(); // let the first fetch call fetch()
  t.equal(held.calls(), 1, 'one fetch for the group');
  t.equal(await deferred(r.metrics, 'in_progress'), 2, 'the two resends counted as deferred');
  const info = r.lines.filter((l) => l.obj.deferred === 'in_progress');
  t.equal(info.length, 2, 'each logged');
  t.match(info[0]!.msg, /a fetch of this group from ALERTMANAGER_URL is running: fetched once more when it ends/);
  t.match(info[0]!.obj, { groupKey: payload(1).groupKey, receiver: 'rollguard', truncatedAlerts: 1 });

  r.groups.notice(payload(1, { groupKey: '{}:{alertname="Other"}' }), r.log);
  r.groups.notice(payload(1, { receiver: 'rollguard-p0' }), r.log);
  await Promise.resolve();
  t.equal(held.calls(), 3, 'another group, or the same groupKey of another receiver, is fetched beside it');

  held.releaseAll();
  t.equal(await calls(held, 4), 4, 'once its fetch ended, the group is fetched once more for the two resends (one wait), no more');
  held.releaseAll();
  await r.groups.idle();
  t.equal(held.calls(), 4);
  t.equal(await metricValue(r.metrics, 'rollguard_alertmanager_fetches_total', { outcome: 'ok' }), 4);
  t.same((await r.queued()).map((a) => a.fingerprint), ['left-out'], 'the alert left out is queued once');
});

t.test('at most ALERTMANAGER_MAX_FETCHES at once: the notifications beyond wait, logged naming the setting, and are fetched oldest first as places free', async (t) => {
  const held = heldFetches();
  const r = rig({ ALERTMANAGER_MAX_FETCHES: '2' }, held.respond);
  t.equal(await deferred(r.metrics, 'busy'), 0, 'exported at 0 from the start');
  for (let i = 0; i < 5; i++) r.groups.notice(payload(1, { groupKey: `{}:{alertname="A${i}"}` }), r.log);
  await Promise.resolve();
  t.equal(held.calls(), 2, 'two fetches run');
  t.equal(await deferred(r.metrics, 'busy'), 3, 'the three beyond counted');
  t.equal(await metricValue(r.metrics, 'rollguard_alerts_truncated_total'), 5, 'every left-out alert counted as truncated');
  const warns = r.lines.filter((l) => l.level === 'warn' && l.obj.deferred === 'busy');
  t.equal(warns.length, 3);
  t.match(warns[0]!.msg, /2 fetches from ALERTMANAGER_URL are running, as many as ALERTMANAGER_MAX_FETCHES allows: fetched once one ends.*raise ALERTMANAGER_MAX_FETCHES/);
  t.match(warns[0]!.obj, { groupKey: '{}:{alertname="A2"}', receiver: 'rollguard', running: 2 });
  held.releaseAll();
  t.equal(await calls(held, 4), 4, 'two places freed: the two oldest waiting are fetched, never more than two at once');
  held.releaseAll();
  t.equal(await calls(held, 5), 5, 'then the last');
  held.releaseAll();
  await r.groups.idle();
  t.equal(await metricValue(r.metrics, 'rollguard_alertmanager_fetches_total', { outcome: 'ok' }), 5, 'every group fetched');
  t.throws(() => loadConfig({ ALERTMANAGER_MAX_FETCHES: '0' }), { name: 'ConfigError', message: /ALERTMANAGER_MAX_FETCHES \(--alertmanager-max-fetches\)/ });
});

t.test(`at most ${MAX_WAITING_GROUPS} groups wait: past that the oldest is dropped, counted and logged`, async (t) => {
  const held = heldFetches();
  const r = rig({ ALERTMANAGER_MAX_FETCHES: '1' }, held.respond);
  for (let i = 0; i < MAX_WAITING_GROUPS + 3; i++) r.groups.notice(payload(1, { groupKey: `{}:{alertname="G${i}"}` }), r.log);
  await Promise.resolve();
  t.equal(held.calls(), 1);
  t.equal(await metricValue(r.metrics, 'rollguard_alertmanager_fetches_dropped_total'), 2, 'the two oldest waiting dropped');
  const dropped = r.lines.filter((l) => /groups wait for a fetch/.test(l.msg));
  t.same(dropped.map((l) => l.obj.groupKey), ['{}:{alertname="G1"}', '{}:{alertname="G2"}']);
  t.match(dropped[0]!.msg, new RegExp(`more than ${MAX_WAITING_GROUPS} groups wait for a fetch \\(ALERTMANAGER_MAX_FETCHES`));
  for (let n = 2; n <= MAX_WAITING_GROUPS + 1; n++) {
    held.releaseAll();
    await calls(held, n);
  }
  held.releaseAll();
  await r.groups.idle();
  t.equal(held.calls(), MAX_WAITING_GROUPS + 1, 'the running one and every group that waited');
});

t.test("a fetched alert whose startsAt is further ahead than ALERT_MAX_CLOCK_SKEW is not queued; one that is no RFC 3339 time fails the fetch", async (t) => {
  const clock = Date.parse('2026-12-01T10:05:00Z');
  const r = rig({}, () => answer([amAlert('ok', { deployment: 'ok' }), amAlert('future', { deployment: 'future' }, {}, '2026-12-01T11:05:00Z')]), { now: () => clock });
  r.groups.notice(payload(2), r.log);
  await r.groups.idle();
  t.same((await r.queued()).map((a) => a.fingerprint), ['ok']);
  t.equal(await refusedCount(r.metrics, 'ALERT_MAX_CLOCK_SKEW'), 1);
  const warn = r.lines.find((l) => l.level === 'warn' && /pass an intake limit/.test(l.msg));
  t.match((warn?.obj.reasons as string[])[0], /^alerts fetched\[1\]\.startsAt: 2026-12-01T11:05:00\.000Z is 3600 s ahead of rollguard's clock/);

  for (const startsAt of ['1', 'Tuesday 3']) {
    const bad = rig({}, () => answer([amAlert('ok', { deployment: 'ok' }), amAlert('odd', { deployment: 'odd' }, {}, startsAt)]), { now: () => clock });
    bad.groups.notice(payload(2), bad.log);
    await bad.groups.idle();
    t.same(await bad.queued(), [], `startsAt ${JSON.stringify(startsAt)}: not Alertmanager's answer, nothing queued`);
    t.equal(await metricValue(bad.metrics, 'rollguard_alertmanager_fetches_total', { outcome: 'failed' }), 1);
    t.match(bad.lines.find((l) => l.level === 'error')?.obj.err, /answered something that is not a list of alert groups: expected an RFC 3339 timestamp/);
  }
});

t.test('a fetch makes one intake call per ALERT_MAX_PER_BATCH alerts it found, however many are queued already (a retry included)', async (t) => {
  const N = 400;
  const r = rig({ ALERT_MAX_PER_BATCH: '100' }, () => answer(Array.from({ length: N }, (_, i) => amAlert(`fp-${String(i).padStart(4, '0')}`, { deployment: `d${i}` }))), { retryDelays: [0] });
  // fp-0000 queued by the webhook earlier: a duplicate for this fetch
  const a0 = { fingerprint: 'fp-0000', labels: { ...GROUP_LABELS, deployment: 'd0' }, annotations: {}, startsAt: Date.parse('2026-12-01T10:00:00Z'), status: 'firing', generatorURL: '' } as unknown as Alert;
  const inner = r.store.intake.bind(r.store);
  await inner([{ key: dedupeKey(a0), alert: a0, lane: 2 as Lane }], 86_400_000);
  let calls = 0;
  r.store.intake = async (items, ttl) => {
    // the second call fails for a moment: the fetch is tried again, and walks what its first try queued
    if (++calls === 2) throw new Error('ECONNRESET (injected)');
    return inner(items, ttl);
  };
  r.groups.notice(payload(N), r.log);
  await r.groups.idle();
  t.ok(calls <= 5, `intake calls for one fetch of ${N}: ${calls} (before: one per alert queued already, 103)`);
  const queued = (await r.queued()).length;
  t.ok(queued >= 100 && queued < 200 + 1, `about ALERT_MAX_PER_BATCH newly queued (the webhook's one and this fetch's): ${queued}`);
});

/** A full garbage collection (v8's gc, which node hides unless asked for). */
function collectGarbage(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

// Found by a review (2026-12-08): a group waiting for its fetch, and the one being fetched, held
// the whole notification: up to BODY_LIMIT_BYTES (4 MiB) each, its alerts' annotations and any
// field a sender adds included, for each of MAX_WAITING_GROUPS groups. What the fetch needs is
// now kept instead (the receiver, groupKey, group labels and the delivered fingerprints' digests).
t.test('a group waiting for its fetch, and one being fetched, keep what the fetch needs, not the notification', async (t) => {
  const gc = collectGarbage();
  const waiting: Array<() => void> = [];
  let calls = 0;
  const r = rig({ ALERTMANAGER_MAX_FETCHES: '1' }, async () => {
    calls++;
    await new Promise<void>((res) => waiting.push(res));
    return answer([amAlert('delivered', { deployment: 'delivered' }), amAlert('left-out', { deployment: 'left-out' })]);
  });
  // built in a function of its own: nothing here holds the notification once notice() returns
  const send = (groupKey: string): WeakRef<WebhookPayload> => {
    const p = payload(1, { groupKey });
    p.alerts[0]!.annotations = { description: 'x'.repeat(1 << 20) };
    (p as Record<string, unknown>).padding = 'y'.repeat(1 << 20);
    r.groups.notice(p, r.log);
    return new WeakRef(p);
  };
  const refs = [send('{}:{alertname="Fetched"}'), send('{}:{alertname="Waiting"}')];
  await new Promise((res) => setImmediate(res));
  t.equal(calls, 1, 'one fetch runs, the other group waits for it');
  gc();
  t.same(refs.map((ref) => ref.deref() === undefined), [true, true], 'neither notification is held, the running fetch\'s nor the waiting one\'s');
  for (let i = 0; i < 200 && (calls < 2 || waiting.length > 0); i++) {
    for (const res of waiting.splice(0)) res();
    await new Promise((res) => setImmediate(res));
  }
  await r.groups.idle();
  t.equal(calls, 2, 'both groups fetched');
  t.same((await r.queued()).map((a) => a.fingerprint), ['left-out'], 'the alert left out is queued once; the delivered one is known by its digest and not queued again');
});

t.test('group labels over ALERT_MAX_LABELS or ALERT_MAX_LABEL_BYTES in all: the group is not fetched, and the warning names the setting', async (t) => {
  let calls = 0;
  const r = rig({ ALERT_MAX_LABELS: '10', ALERT_MAX_LABEL_BYTES: '64' }, () => {
    calls++;
    return answer([amAlert('left-out', { deployment: 'left-out' })]);
  });
  const big = payload(1, { groupKey: '{}:{big}' });
  big.groupLabels = { alertname: 'HighErrorRate', namespace: 'x'.repeat(60) };
  r.groups.notice(big, r.log);
  const many = payload(1, { groupKey: '{}:{many}' });
  many.groupLabels = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`l${i}`, 'v']));
  r.groups.notice(many, r.log);
  await r.groups.idle();
  t.equal(calls, 0, 'nothing fetched');
  const warns = r.lines.filter((l) => l.level === 'warn' && /not fetched from ALERTMANAGER_URL, as its group labels are over an intake limit/.test(l.msg));
  t.equal(warns.length, 2, 'one warning each');
  t.match(warns[0]!.obj.limit, /body\.groupLabels: \d+ bytes of names and values, over the 64 ALERT_MAX_LABEL_BYTES allows them/);
  t.match(warns[1]!.obj.limit, /body\.groupLabels: 11 labels, over the 10 an alert may have \(ALERT_MAX_LABELS\)/);
  t.notOk(JSON.stringify(r.lines).includes('x'.repeat(60)), 'the long value is not copied into the log');
  t.equal(await metricValue(r.metrics, 'rollguard_alerts_truncated_total'), 2, 'the left-out alerts still counted');
});

// Found by a review (2026-12-08): the lines about a truncated notification and its fetch named the
// groupKey and receiver whole, in the message and beside it (each up to ALERT_MAX_LABEL_BYTES).
t.test('the lines about a truncated notification cut its groupKey and receiver to 200 characters', async (t) => {
  const long = { groupKey: `{}:{alertname="${'g'.repeat(4000)}"}`, receiver: 'r'.repeat(4000) };
  const fetched = rig({}, () => answer([amAlert('left-out', { deployment: 'left-out' })]));
  fetched.groups.notice(payload(1, long), fetched.log);
  await fetched.groups.idle();
  const noApi = rig({}, () => answer([]));
  const offline = new TruncatedGroups({ store: noApi.store, metrics: noApi.metrics, config: loadConfig({}), now: Date.now, api: null });
  offline.notice(payload(1, long), noApi.log);
  const failing = rig({}, () => new Response('down', { status: 500 }));
  failing.groups.notice(payload(1, long), failing.log);
  await failing.groups.idle();
  const lines = [...fetched.lines, ...noApi.lines, ...failing.lines];
  t.ok(lines.length >= 4, 'the notice, the fetch, the one without ALERTMANAGER_URL and the failed fetch are logged');
  for (const l of lines) {
    t.notMatch(JSON.stringify(l), /g{300}|r{300}/, `${l.msg.slice(0, 60)}: neither is logged whole`);
    if (l.obj.groupKey !== undefined) t.equal((l.obj.groupKey as string).length, 201, 'the groupKey beside it cut, marked with …');
  }
});
