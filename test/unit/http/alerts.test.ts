import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import { StoreUnavailableError, type Store } from '../../../src/store/store.js';
import { fixture, metricValue, postAlerts, testApp, WEBHOOK_TOKEN } from '../../support/app.js';
import { capturingLogger } from '../../support/secret-template.js';

const firing = fixture('alertmanager/firing-two-alerts.json');
const mixed = fixture('alertmanager/one-resolved-one-firing.json');

t.test('a real Alertmanager payload is queued once per alert; resends are deduplicated', async (t) => {
  const { app, store, metrics } = testApp();
  const first = await postAlerts(app, firing);
  t.equal(first.statusCode, 200);
  t.same(first.json(), { queued: 2, duplicates: 0 });
  const again = await postAlerts(app, firing);
  t.equal(again.statusCode, 200, 'a resend is still acknowledged, so Alertmanager stops retrying');
  t.same(again.json(), { queued: 0, duplicates: 2 });
  t.equal(await store.queueDepth(), 2);

  const next = await postAlerts(app, mixed);
  t.same(next.json(), { queued: 1, duplicates: 1 }, 'the resolved alert is new; the still-firing one is a resend');
  const events = await store.consume('t', 10, 0, 60_000);
  t.same(
    events.map((e) => [e.alert.labels.deployment, e.alert.status]),
    [['checkout', 'firing'], ['payments', 'firing'], ['checkout', 'resolved']],
  );
  const resolved = events[2]!.alert;
  t.equal(resolved.startsAt, Date.parse('2026-11-23T11:06:41Z'));
  t.type(resolved.endsAt, 'number', 'endsAt kept for the resolved alert');
  t.equal(events[0]!.alert.endsAt, undefined, "the firing alert's zero endsAt is dropped");
  t.equal(events[0]!.alert.receiver, 'rollguard');

  t.equal(await metricValue(metrics, 'rollguard_alerts_received_total', { status: 'firing' }), 5);
  t.equal(await metricValue(metrics, 'rollguard_alerts_received_total', { status: 'resolved' }), 1);
  t.equal(await metricValue(metrics, 'rollguard_alerts_deduplicated_total'), 3);
  t.equal(await metricValue(metrics, 'rollguard_webhook_requests_total', { code: '200' }), 3);
});

t.test('unknown fields are tolerated (newer Alertmanagers add some)', async (t) => {
  const { app, store } = testApp();
  const body = JSON.parse(firing);
  body.notification_reason = 'repeat_interval';
  body.routeLabels = { team: 'sre' };
  body.alerts[0].somethingNew = { a: 1 };
  const res = await postAlerts(app, body);
  t.equal(res.statusCode, 200);
  t.equal(await store.queueDepth(), 2);
});

t.test('batch caps: 413 naming the field, the limit and its setting, and nothing is queued', async (t) => {
  const big = (n: number) => 'x'.repeat(n);
  const cases: [string, Record<string, string>, (b: any) => void, RegExp][] = [
    ['alerts per batch', { ALERT_MAX_PER_BATCH: '3' }, (b) => (b.alerts = [0, 1, 2, 3].map((i) => ({ ...b.alerts[0], fingerprint: `fp${i}` }))), /^body\.alerts: 4 alerts, over the 3 a batch may hold \(ALERT_MAX_PER_BATCH; or set max_alerts/],
    ['groupKey', {}, (b) => (b.groupKey = big(5000)), /^body\.groupKey: 5000 bytes, over the 4096 a groupKey may have \(ALERT_MAX_LABEL_BYTES\)$/],
    ['receiver', {}, (b) => (b.receiver = big(4097)), /^body\.receiver: 4097 bytes, over the 4096 a receiver may have \(ALERT_MAX_LABEL_BYTES\)$/],
    ['externalURL', {}, (b) => (b.externalURL = `http://am/${big(4096)}`), /^body\.externalURL: 4106 bytes, over the 4096 an externalURL may have \(ALERT_MAX_LABEL_BYTES\)$/],
  ];
  for (const [name, env, mutate, re] of cases) {
    const { app, store, metrics } = testApp({ env });
    const body = JSON.parse(firing);
    mutate(body);
    const res = await postAlerts(app, body);
    t.equal(res.statusCode, 413, `${name}: 413`);
    t.equal(res.json().error, 'payload_too_large');
    t.match(res.json().message, re, `${name}: the message names the field, the limit and the setting`);
    t.equal(await store.queueDepth(), 0, `${name}: nothing queued`);
    t.equal(await metricValue(metrics, 'rollguard_webhook_requests_total', { code: '413' }), 1);
    t.equal(await metricValue(metrics, 'rollguard_alerts_refused_total', { limit: 'ALERT_MAX_LABEL_BYTES' }), 0, `${name}: a batch refused whole counts no alert refused`);
  }
});

t.test('per-alert caps: the alert over one is refused alone, counted and logged without its value; the rest of the batch is queued (200)', async (t) => {
  // the value over the limit is made of this marker, so that the log can be searched for it
  const big = (n: number) => 'OVERSIZED'.repeat(Math.ceil(n / 9)).slice(0, n);
  const cases: [string, Record<string, string>, number, (a: any) => void, string, RegExp][] = [
    ['label value', {}, 1, (a) => (a.labels.service = big(4097)), 'ALERT_MAX_LABEL_BYTES', /^body\.alerts\[1\]\.labels\.service: 4097 bytes, over the 4096 a label value may have \(ALERT_MAX_LABEL_BYTES\)$/],
    ['multi-byte label value', { ALERT_MAX_LABEL_BYTES: '100' }, 0, (a) => (a.labels.service = 'OVERSIZED' + 'é'.repeat(51)), 'ALERT_MAX_LABEL_BYTES', /^body\.alerts\[0\]\.labels\.service: 111 bytes, over the 100 a label value may have \(ALERT_MAX_LABEL_BYTES\)$/],
    ['labels per alert', { ALERT_MAX_LABELS: '20' }, 1, (a) => { for (let i = 0; i < 21; i++) a.labels[`OVERSIZED${i}`] = 'v'; }, 'ALERT_MAX_LABELS', /^body\.alerts\[1\]\.labels: \d+ labels, over the 20 an alert may have \(ALERT_MAX_LABELS\)$/],
    ['label name', {}, 0, (a) => (a.labels[big(4097)] = 'v'), 'ALERT_MAX_LABEL_BYTES', /^body\.alerts\[0\]\.labels: a label name of 4097 bytes, over the 4096 a label name may have \(ALERT_MAX_LABEL_BYTES\)$/],
    ['fingerprint', {}, 1, (a) => (a.fingerprint = big(4097)), 'ALERT_MAX_LABEL_BYTES', /^body\.alerts\[1\]\.fingerprint: 4097 bytes, over the 4096 a fingerprint may have \(ALERT_MAX_LABEL_BYTES\)$/],
    ['generatorURL', { ALERT_MAX_LABEL_BYTES: '100' }, 0, (a) => (a.generatorURL = `http://p/${big(100)}`), 'ALERT_MAX_LABEL_BYTES', /^body\.alerts\[0\]\.generatorURL: 109 bytes, over the 100 a generatorURL may have \(ALERT_MAX_LABEL_BYTES\)$/],
    // found by a review (2026-12-08): each string within ALERT_MAX_LABEL_BYTES, an alert of 100 labels held about 800 kB
    ['all its strings together (default: 4 × ALERT_MAX_LABEL_BYTES)', {}, 1, (a) => { for (let i = 0; i < 5; i++) a.labels[`l${i}`] = big(4000); }, 'ALERT_MAX_BYTES', /^body\.alerts\[1\]: \d+ bytes of label names and values, fingerprint and generatorURL together, over the 16384 an alert may have \(ALERT_MAX_BYTES\)$/],
    ['all its strings together, multi-byte', { ALERT_MAX_BYTES: '400' }, 0, (a) => { a.labels.a = 'OVERSIZED' + 'é'.repeat(100); a.labels.b = 'OVERSIZED' + '€'.repeat(50); }, 'ALERT_MAX_BYTES', /^body\.alerts\[0\]: \d+ bytes of label names and values, fingerprint and generatorURL together, over the 400 an alert may have \(ALERT_MAX_BYTES\)$/],
  ];
  for (const [name, env, index, mutate, setting, re] of cases) {
    const logs = capturingLogger();
    const { app, store, metrics } = testApp({ env, deps: { logger: logs.logger } });
    const body = JSON.parse(firing);
    body.alerts[index].labels.alertname = 'ExporterGoneWrong';
    mutate(body.alerts[index]);
    const good = body.alerts[1 - index];
    const res = await postAlerts(app, body);
    t.equal(res.statusCode, 200, `${name}: 200, so Alertmanager does not drop the group`);
    t.same(res.json(), { queued: 1, duplicates: 0, refused: 1 }, `${name}: the other alert queued, this one refused`);
    const events = await store.consume('t', 10, 0, 60_000);
    t.same(events.map((e) => e.alert.fingerprint), [good.fingerprint], `${name}: the queue holds the good alert only`);
    t.equal(await metricValue(metrics, 'rollguard_alerts_refused_total', { limit: setting }), 1, `${name}: counted by ${setting}`);
    t.equal(await metricValue(metrics, 'rollguard_alerts_received_total', { status: 'firing' }), 1, `${name}: received counts the alert taken`);
    t.equal(await metricValue(metrics, 'rollguard_alertmanager_alerts_refused_total', { limit: setting }), undefined, `${name}: not counted as fetched from Alertmanager`);
    const lines = logs.text().trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    const warn = lines.find((l) => l.level === 40 && /refused, not queued/.test(l.msg));
    t.ok(warn, `${name}: a warning is logged`);
    t.match(warn?.msg, new RegExp(`^1 of the 2 alert\\(s\\) of a webhook batch .*\\(${setting}: raise it`), `${name}: the warning names the setting`);
    t.match(warn, { groupKey: body.groupKey, receiver: 'rollguard', alerts: 2, refused: 1, limits: { [setting]: 1 } }, `${name}: and the group`);
    t.same(warn?.first, [{ index, alertname: 'ExporterGoneWrong', limit: setting, reason: warn?.first?.[0]?.reason }], `${name}: the alert by index and alertname`);
    t.match(warn?.first?.[0]?.reason, re, `${name}: the reason names the field, the limit and the setting`);
    t.notMatch(logs.text(), /OVERSIZED/, `${name}: neither the value over the limit nor the label set is logged`);
  }
  const { app } = testApp();
  const ok = JSON.parse(firing);
  ok.alerts[0].labels.service = big(4096);
  ok.alerts[0].annotations.description = big(4096);
  const res = await postAlerts(app, ok);
  t.equal(res.statusCode, 200, 'exactly at the limits is accepted');
  t.same(res.json(), { queued: 2, duplicates: 0 }, 'nothing refused: no refused field');
});

t.test('every alert of a batch over a per-alert limit, a resolved one too: 200, nothing queued, each refused and counted', async (t) => {
  const logs = capturingLogger();
  const { app, store, metrics } = testApp({ env: { ALERT_MAX_LABELS: '20' }, deps: { logger: logs.logger } });
  const body = JSON.parse(mixed);
  body.alerts[0].labels.alertname = 'x'.repeat(5000); // the alertname is itself the value over the limit: not logged
  for (let i = 0; i < 21; i++) body.alerts[1].labels[`l${i}`] = 'v';
  t.equal(body.alerts.map((a: { status: string }) => a.status).sort().join(), 'firing,resolved');
  const res = await postAlerts(app, body);
  t.equal(res.statusCode, 200);
  t.same(res.json(), { queued: 0, duplicates: 0, refused: 2 });
  t.equal(await store.queueDepth(), 0, 'nothing queued');
  t.equal(await metricValue(metrics, 'rollguard_alerts_refused_total', { limit: 'ALERT_MAX_LABEL_BYTES' }), 1);
  t.equal(await metricValue(metrics, 'rollguard_alerts_refused_total', { limit: 'ALERT_MAX_LABELS' }), 1);
  const warn = logs.text().split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => /refused, not queued/.test(l.msg));
  t.match(warn?.msg, /^2 of the 2 alert\(s\).*\(ALERT_MAX_LABEL_BYTES, ALERT_MAX_LABELS: raise it/);
  t.same(warn?.first.map((r: { index: number; alertname?: string }) => [r.index, r.alertname]), [[0, undefined], [1, 'HighErrorRate']], 'an alertname over the limit is left out');
  t.notMatch(logs.text(), /xxxxxxxxxx/, 'nothing of the over-long alertname is logged');
  const again = await postAlerts(app, body);
  t.same(again.json(), { queued: 0, duplicates: 0, refused: 2 }, 'a resend is refused again, never remembered as a duplicate');
});

t.test('a kept annotation over ALERT_MAX_ANNOTATION_BYTES is cut, not refused: the batch is queued', async (t) => {
  const { app, store } = testApp({ env: { ALERT_MAX_ANNOTATION_BYTES: '100' } });
  const body = JSON.parse(firing);
  body.alerts[0].annotations.description = 'y'.repeat(5000);
  const res = await postAlerts(app, body);
  t.equal(res.statusCode, 200);
  t.equal(await store.queueDepth(), 2, 'every alert of the batch queued');
  const events = await store.consume('t', 10, 0, 60_000);
  const kept = events.map((e) => e.alert.annotations.description).find((d) => d?.startsWith('y'));
  t.equal(kept, 'y'.repeat(100), 'cut to the limit');
});

t.test('annotations: only the allow-listed ones are kept, so nothing else of them is stored', async (t) => {
  const body = JSON.parse(firing);
  body.alerts[0].annotations = { summary: 's', description: 'd', runbook_url: 'https://runbooks/x', dashboard: 'https://grafana/x', debug_dump: 'x'.repeat(100_000) };
  const { app, store } = testApp();
  t.equal((await postAlerts(app, body)).statusCode, 200, 'an oversized annotation that is not kept does not refuse the batch');
  const [first] = await store.consume('t', 10, 0, 60_000);
  t.same(first!.alert.annotations, { summary: 's', description: 'd', runbook_url: 'https://runbooks/x' }, 'summary, description and runbook_url by default');
  const custom = testApp({ env: { ALERT_ANNOTATIONS: 'summary, dashboard' } });
  await postAlerts(custom.app, body);
  const [c] = await custom.store.consume('t', 10, 0, 60_000);
  t.same(c!.alert.annotations, { summary: 's', dashboard: 'https://grafana/x' }, 'ALERT_ANNOTATIONS sets the list');
});

t.test('400 names the field, and nothing is queued', async (t) => {
  const cases: [string, (b: any) => void, RegExp][] = [
    ['wrong version', (b) => (b.version = '3'), /body\.version: expected "4"/],
    ['alerts missing', (b) => delete b.alerts, /body\.alerts: /],
    ['alerts not an array', (b) => (b.alerts = {}), /body\.alerts: .*array/],
    ['fingerprint missing', (b) => delete b.alerts[1].fingerprint, /body\.alerts\.1\.fingerprint/],
    ['bad status', (b) => (b.alerts[0].status = 'pending'), /body\.alerts\.0\.status/],
    ['startsAt not a time', (b) => (b.alerts[0].startsAt = 'yesterday'), /body\.alerts\.0\.startsAt: expected an RFC 3339 timestamp/],
    ['label value not a string', (b) => (b.alerts[0].labels.replicas = 3), /body\.alerts\.0\.labels\.replicas/],
    ['receiver missing', (b) => delete b.receiver, /body\.receiver/],
  ];
  for (const [name, mutate, re] of cases) {
    const { app, store } = testApp();
    const b = JSON.parse(firing);
    mutate(b);
    const res = await postAlerts(app, b);
    t.equal(res.statusCode, 400, name);
    t.match(res.json().message, re, `${name}: ${res.json().message}`);
    t.equal(await store.queueDepth(), 0, `${name}: nothing queued`);
  }
  const { app } = testApp();
  const broken = await postAlerts(app, '{"version": "4", ');
  t.equal(broken.statusCode, 400, 'invalid JSON');
  const arr = await postAlerts(app, '[]');
  t.equal(arr.statusCode, 400, 'an array is not a payload');
  const proto = await postAlerts(app, '{"version":"4","__proto__":{"polluted":true}}');
  t.equal(proto.statusCode, 400, 'a __proto__ key is removed: what is left is judged as it is');
  t.match(proto.json().message, /body\.receiver|body\.alerts|body\.status/, proto.json().message);
});

t.test('startsAt and endsAt: anything but an RFC 3339 time (seconds, then Z or ±hh:mm) is 400 naming the field; nothing is queued', async (t) => {
  // each of these Date.parse alone takes (all but two), as some time in 2001 or today
  const bad = [
    '1', // 2001-01-01
    'Tuesday 3', // 2001-02-28
    '2026-12-06', // a date alone
    '2026-12-06T03:00Z', // no seconds
    '2026-12-06T03:00:00', // no offset: whose local time?
    '2026-12-06 03:00:00Z', // no T
    '2026-12-06T03:00:00+0530', // offset without its colon
    '2026-02-30T03:00:00Z', // 30 February (Date.parse: 2 March)
    '2026-12-06T24:00:00Z',
    '2026-12-06T03:00:00.Z', // a dot without digits
    'Sun, 06 Dec 2026 03:00:00 GMT', // RFC 2822
    '',
  ];
  for (const v of bad) {
    for (const field of ['startsAt', 'endsAt'] as const) {
      const { app, store } = testApp();
      const b = JSON.parse(mixed);
      b.alerts[0][field] = v;
      const res = await postAlerts(app, b);
      t.equal(res.statusCode, 400, `${field} ${JSON.stringify(v)}: 400`);
      t.match(res.json(), { error: 'bad_request', message: new RegExp(`^body\\.alerts\\.0\\.${field}: expected an RFC 3339 timestamp`) }, `${field} ${JSON.stringify(v)}: the message names the field`);
      t.equal(await store.queueDepth(), 0, `${field} ${JSON.stringify(v)}: nothing queued, not even the other alert`);
    }
  }
});

t.test("startsAt and endsAt: what Go's time.Time writes is accepted: nanoseconds, numeric offsets, the zero time", async (t) => {
  const { app, store } = testApp();
  const b = JSON.parse(mixed);
  b.alerts[0].startsAt = '2026-11-23T16:36:41.123456789+05:30'; // 11:06:41.123Z
  b.alerts[0].endsAt = '2026-11-23T04:06:45.5-07:00'; // 11:06:45.500Z
  b.alerts[1].startsAt = '2026-11-23T11:06:41.000001Z';
  b.alerts[1].endsAt = '0001-01-01T00:00:00Z';
  const res = await postAlerts(app, b);
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json(), { queued: 2, duplicates: 0 });
  const [resolved, firing] = await store.consume('t', 10, 0, 60_000);
  t.equal(resolved!.alert.startsAt, Date.parse('2026-11-23T11:06:41.123Z'), 'the offset applied; nanoseconds kept to the millisecond');
  t.equal(resolved!.alert.endsAt, Date.parse('2026-11-23T11:06:45.500Z'));
  t.equal(firing!.alert.startsAt, Date.parse('2026-11-23T11:06:41Z'));
  t.equal(firing!.alert.endsAt, undefined, 'the zero time is no end');
});

t.test('a startsAt further ahead of rollguard\'s clock than ALERT_MAX_CLOCK_SKEW: that alert is refused alone (200), counted and logged naming the setting', async (t) => {
  const clock = Date.parse('2026-11-23T11:10:00Z'); // the fixtures' alerts started at 11:06:41
  const logs = capturingLogger();
  const { app, store, metrics } = testApp({ deps: { now: () => clock, logger: logs.logger } });
  t.equal(await metricValue(metrics, 'rollguard_alerts_refused_total', { limit: 'ALERT_MAX_CLOCK_SKEW' }), 0, 'exported at 0 from the start');
  const b = JSON.parse(firing);
  b.alerts[0].startsAt = '2026-11-23T12:10:00Z'; // an hour ahead
  b.alerts[1].startsAt = '2026-11-23T11:14:00Z'; // 4 minutes ahead: within the default 5 minutes
  const res = await postAlerts(app, b);
  t.equal(res.statusCode, 200, 'the rest of the group is not lost');
  t.same(res.json(), { queued: 1, duplicates: 0, refused: 1 });
  const events = await store.consume('t', 10, 0, 60_000);
  t.same(events.map((e) => [e.alert.fingerprint, e.alert.startsAt]), [[b.alerts[1].fingerprint, Date.parse('2026-11-23T11:14:00Z')]], 'the alert within the skew is queued as sent, not clamped');
  t.equal(await metricValue(metrics, 'rollguard_alerts_refused_total', { limit: 'ALERT_MAX_CLOCK_SKEW' }), 1);
  const warn = logs.text().split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => /refused, not queued/.test(l.msg));
  t.match(warn?.msg, /^1 of the 2 alert\(s\) .*\(ALERT_MAX_CLOCK_SKEW: raise it/);
  t.match(warn?.first?.[0], { index: 0, alertname: 'HighErrorRate', limit: 'ALERT_MAX_CLOCK_SKEW' });
  t.match(warn?.first?.[0]?.reason, /^body\.alerts\[0\]\.startsAt: 2026-11-23T12:10:00\.000Z is 3600 s ahead of rollguard's clock \(2026-11-23T11:10:00\.000Z\), more than the 300 s ALERT_MAX_CLOCK_SKEW allows/);

  const strict = testApp({ env: { ALERT_MAX_CLOCK_SKEW: '1m' }, deps: { now: () => clock } });
  const again = await postAlerts(strict.app, b);
  t.same(again.json(), { queued: 0, duplicates: 0, refused: 2 }, 'ALERT_MAX_CLOCK_SKEW=1m: 4 minutes ahead is refused too');
  const resolved = JSON.parse(mixed);
  resolved.alerts[0].startsAt = '2026-11-23T12:10:00Z';
  resolved.alerts[0].endsAt = '2026-11-23T12:11:00Z';
  t.same((await postAlerts(strict.app, resolved)).json(), { queued: 1, duplicates: 0, refused: 1 }, 'a resolved alert starting in the future is refused alike');
});

t.test('a __proto__ label or annotation on one alert is removed; the batch and its other alerts are queued', async (t) => {
  const { app, store } = testApp();
  const b = JSON.parse(firing) as { alerts: { labels: Record<string, string>; annotations: Record<string, string> }[] };
  t.equal(b.alerts.length, 2);
  // as Alertmanager forwards it: JSON text with own "__proto__" keys (JSON.stringify of a parsed object keeps them)
  const body = JSON.stringify(b)
    .replace('"labels":{', '"labels":{"__proto__":"x","constructor":{"prototype":{"polluted":"yes"}},')
    .replace(/("annotations":\{)(?![\s\S]*"annotations":\{)/, '$1"__proto__":{"polluted":"yes"},');
  t.equal((body.match(/__proto__/g) ?? []).length, 2);
  const res = await postAlerts(app, body);
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json().queued, 2);
  const events = await store.consume('t', 10, 0, 60_000);
  t.equal(events.length, 2);
  for (const ev of events) {
    t.notOk(Object.hasOwn(ev.alert.labels, '__proto__'), 'the __proto__ label is gone');
    t.notOk(Object.hasOwn(ev.alert.annotations, '__proto__'), 'the __proto__ annotation is gone');
    t.equal(Object.getPrototypeOf(ev.alert.labels), Object.prototype);
    t.equal(Object.getPrototypeOf(ev.alert.annotations), Object.prototype);
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'nothing polluted');
  t.same(events.map((e) => e.alert.labels.alertname).sort(), b.alerts.map((a) => a.labels.alertname).sort(), 'both alerts, their other labels kept');
});

t.test('401 for missing or wrong credentials; bearer and basic both work', async (t) => {
  const { app, store, metrics } = testApp({ env: { WEBHOOK_BASIC_USER: 'am', WEBHOOK_BASIC_PASSWORD: 'pw1' } });
  const none = await postAlerts(app, firing, { authorization: '' });
  t.equal(none.statusCode, 401);
  t.match(none.headers['www-authenticate'], /Bearer realm="rollguard-webhook", Basic/);
  t.match(none.json().message, /missing/);
  t.equal((await postAlerts(app, firing, { authorization: `Bearer ${WEBHOOK_TOKEN}x` })).statusCode, 401);
  t.equal((await postAlerts(app, firing, { authorization: `Bearer ${WEBHOOK_TOKEN.slice(0, -1)}` })).statusCode, 401, 'a prefix is not the token');
  t.equal((await postAlerts(app, firing, { authorization: `Token ${WEBHOOK_TOKEN}` })).statusCode, 401, 'unknown scheme');
  const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
  t.equal((await postAlerts(app, firing, { authorization: basic('am', 'wrong') })).statusCode, 401);
  t.equal((await postAlerts(app, firing, { authorization: basic('other', 'pw1') })).statusCode, 401);
  t.equal(await store.queueDepth(), 0, 'nothing queued by unauthorized requests');
  t.equal((await postAlerts(app, firing, { authorization: basic('am', 'pw1') })).statusCode, 200, 'basic');
  t.equal((await postAlerts(app, firing)).statusCode, 200, 'bearer');
  t.equal(await metricValue(metrics, 'rollguard_webhook_requests_total', { code: '401' }), 6);
});

t.test('token file is re-read, so a rotated token takes effect without restart', async (t) => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const file = join(mkdtempSync(join(tmpdir(), 'rg-tok-')), 'token');
  writeFileSync(file, 'old-token\n');
  const { app } = testApp({ env: { WEBHOOK_TOKEN: '', WEBHOOK_TOKEN_FILE: file } });
  t.equal((await postAlerts(app, firing, { authorization: 'Bearer old-token' })).statusCode, 200);
  writeFileSync(file, 'new-token\n');
  t.equal((await postAlerts(app, firing, { authorization: 'Bearer old-token' })).statusCode, 401);
  t.equal((await postAlerts(app, firing, { authorization: 'Bearer new-token' })).statusCode, 200);
});

t.test('413 over the body limit, 415 for other content types, 404 elsewhere', async (t) => {
  const { app, store } = testApp({ env: { BODY_LIMIT_BYTES: '2048' } });
  const big = JSON.parse(firing);
  big.commonAnnotations.description = 'x'.repeat(4096);
  const res = await postAlerts(app, big);
  t.equal(res.statusCode, 413);
  t.equal(res.json().error, 'payload_too_large');
  const text = await postAlerts(app, firing, { 'content-type': 'text/plain' });
  t.equal(text.statusCode, 415);
  t.equal(await store.queueDepth(), 0);
  const nf = await app.inject({ method: 'GET', url: '/v1/nope' });
  t.equal(nf.statusCode, 404);
});

/** A store whose every call fails as if Redis were down. */
function downStore(): Store {
  const s = new MemoryStore();
  const fail = async () => {
    throw new StoreUnavailableError('redis intake: Connection is closed.');
  };
  return Object.assign(s, { intake: fail, ping: fail, queueDepth: fail }) as Store;
}

t.test('503 with Retry-After when the store is unavailable (Alertmanager retries 5xx)', async (t) => {
  const { app, metrics } = testApp({ store: downStore() });
  const res = await postAlerts(app, firing);
  t.equal(res.statusCode, 503);
  t.equal(res.headers['retry-after'], '5');
  t.equal(res.json().error, 'store_unavailable');
  t.equal(await metricValue(metrics, 'rollguard_store_errors_total', { op: 'intake' }), 1);
  t.equal(await metricValue(metrics, 'rollguard_webhook_requests_total', { code: '503' }), 1);
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 503);
  t.match(ready.json().checks.store, /Connection is closed/);
  const live = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(live.statusCode, 200, 'liveness does not depend on the store');
  const m = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(m.statusCode, 200, '/metrics still answers');
});

t.test('health, readiness, metrics and the OpenAPI document', async (t) => {
  const { app } = testApp({ deps: { readiness: { rules: () => { throw new Error('no rules loaded'); } } } });
  t.same((await app.inject('/healthz')).json(), { status: 'ok' });
  const ready = await app.inject('/readyz');
  t.equal(ready.statusCode, 503);
  t.same(ready.json(), { ready: false, checks: { store: 'ok', rules: 'no rules loaded' } });
  await postAlerts(app, firing);
  const m = await app.inject('/metrics');
  t.match(m.headers['content-type'], /text\/plain/);
  for (const name of ['rollguard_alerts_received_total', 'rollguard_alerts_deduplicated_total', 'rollguard_webhook_requests_total', 'rollguard_queue_depth 2']) {
    t.match(m.body, name);
  }
  const doc = (await app.inject('/openapi.json')).json();
  t.equal(doc.openapi, '3.0.3');
  const op = doc.paths['/v1/alerts'].post;
  t.ok(op.requestBody.content['application/json'].schema.properties.alerts, 'the webhook body schema comes from zod');
  t.same(Object.keys(op.responses).sort(), ['200', '400', '401', '413', '415', '503']);
  t.ok(op.responses['200'].content['application/json'].schema.properties.refused, 'the answer documents the count of refused alerts');
  t.match(op.responses['413'].description, /groupKey, receiver or externalURL over ALERT_MAX_LABEL_BYTES \(limits of the batch, not of one alert\)/);
});

t.test('no credentials configured: the webhook is open (embedded default)', async (t) => {
  const { app } = testApp({ env: { WEBHOOK_TOKEN: '' } });
  t.equal((await postAlerts(app, firing, { authorization: '' })).statusCode, 200);
});

// Found by a review (2026-12-08): the "alerts accepted" line, one per batch, carried the groupKey
// and receiver whole (each up to ALERT_MAX_LABEL_BYTES), where the refusal lines cut them: a
// sender of one-alert batches made each alert's log line kilobytes long. Now cut to 200 characters.
t.test('the line of an accepted batch names its groupKey and receiver cut to 200 characters', async (t) => {
  const logs = capturingLogger();
  const { app } = testApp({ deps: { logger: logs.logger } });
  const body = JSON.parse(firing);
  body.groupKey = `{}:{alertname="${'g'.repeat(4000)}"}`;
  body.receiver = 'r'.repeat(4000);
  const res = await postAlerts(app, body);
  t.equal(res.statusCode, 200);
  const accepted = logs.text().split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.msg === 'alerts accepted');
  t.ok(accepted, 'the line is logged');
  t.equal(accepted.groupKey.length, 201, 'the groupKey cut, marked with …');
  t.equal(accepted.receiver.length, 201, 'the receiver cut, marked with …');
  t.notMatch(logs.text(), /g{300}|r{300}/, 'neither is logged whole anywhere');
});

t.test('ALERT_MAX_BYTES: raised, a large alert is queued; below 64 it is refused naming the flag', async (t) => {
  const { app, store } = testApp({ env: { ALERT_MAX_BYTES: '65536' } });
  const body = JSON.parse(firing);
  for (let i = 0; i < 5; i++) body.alerts[0].labels[`l${i}`] = 'v'.repeat(4000);
  const res = await postAlerts(app, body);
  t.same(res.json(), { queued: 2, duplicates: 0 }, 'both queued');
  t.equal(await store.queueDepth(), 2);
  t.throws(() => testApp({ env: { ALERT_MAX_BYTES: '10' } }), { name: 'ConfigError', message: /ALERT_MAX_BYTES \(--alert-max-bytes\)/ });
});
