// Hostile input (issue 9): property-based fuzzing of the webhook and the API (fast-check), oversize
// and deeply nested bodies, unicode and control characters in labels, label values that try to
// widen a target, and wrong, missing and timing-probed credentials. Every answer to hostile input
// is a 4xx with a JSON {error, message}, every valid input a 2xx; never a 5xx, never a crash; the
// store holds exactly what valid input put there. An alert over a per-alert limit (labels, label
// bytes) is refused alone, not its batch (a 4xx would lose its whole group): 200 with `refused`. The first part drives the whole app in process
// (inject()); the second a real `rollguard serve` process on real Redis over real sockets.
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { connect } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.js';
import { dedupeKey } from '../../src/alertmanager/alert.js';
import { intakeLimits, splitByLimits } from '../../src/alertmanager/limits.js';
import { webhookPayloadSchema } from '../../src/alertmanager/schema.js';
import { controlRoutes } from '../../src/http/control.js';
import { rollbacksRoutes } from '../../src/http/rollbacks.js';
import { RedisStore } from '../../src/store/redis.js';
import type { Store } from '../../src/store/store.js';
import { ADMIN_TOKEN, metricValue, WEBHOOK_TOKEN } from '../support/app.js';
import { testEngine } from '../support/engine.js';
import { waitFor } from '../support/ports.js';
import { startRedis } from '../support/redis.js';
import { startServe } from '../support/serve.js';
import { figures } from './figures.js';

const RUN = Number(process.env.RELIABILITY_RUN ?? 20261123);
let inputs = 0;
let serverErrors = 0;
let crashes = 0;

/** The whole HTTP surface of `rollguard serve` (webhook, rollbacks API, control), in process. */
function fullApp(opts: { env?: Record<string, string>; store?: Store } = {}) {
  const env = { WEBHOOK_TOKEN, ADMIN_TOKEN, DRY_RUN: 'true', ...(opts.env ?? {}) };
  const e = testEngine({ env, ...(opts.store ? { store: opts.store } : {}) });
  const app = buildApp({
    config: e.config,
    store: e.store,
    metrics: e.metrics,
    logger: false,
    routes: [rollbacksRoutes(e.engine), controlRoutes({ reload: async () => ({ ok: true, rules: 4, files: ['test-rules.yaml'], trigger: 'api' }) })],
  });
  return { app, ...e };
}

/** Every answer: a 2xx, or a 4xx with a JSON {error, message}; never a 5xx. */
function checkAnswer(t: Test, res: LightMyRequestResponse | { statusCode: number; body: string; headers: Record<string, unknown> }, what: string): boolean {
  inputs++;
  if (res.statusCode >= 500) {
    serverErrors++;
    t.fail(`${what}: ${res.statusCode} ${res.body.slice(0, 300)}`);
    return false;
  }
  if (res.statusCode >= 400) {
    let body: unknown;
    try {
      body = JSON.parse(res.body);
    } catch {
      t.fail(`${what}: ${res.statusCode} with a body that is not JSON: ${res.body.slice(0, 200)}`);
      return false;
    }
    const b = body as { error?: unknown; message?: unknown };
    if (typeof b.error !== 'string' || typeof b.message !== 'string') {
      t.fail(`${what}: ${res.statusCode} without {error, message}: ${res.body.slice(0, 200)}`);
      return false;
    }
  }
  return true;
}

function post(app: FastifyInstance, url: string, payload: string, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}`, ...headers } });
}

// --- generators -------------------------------------------------------------------------------

/** Control characters, bidi overrides, zero-width, NUL, emoji, combining marks, CJK. */
const nasty = fc.constantFrom('\u0000', '\u0001', '\u001b[31m', '\n', '\r\n', '\t', '\u007f', '\u0085', '\u200b', '\u200d', '\u202e', '\u2028', '\u2029', '\ufeff', '\ufffd', '💥', '👩‍👩‍👧', 'é', 'e\u0301', '日本', '"', "'", '\\', '{{ $labels.x }}', '${x}', '%s', '<script>', '.*', 'a|b', '"} or vector(1) or {x="', '../', '*');
const labelText = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.array(fc.oneof(nasty, fc.string({ unit: 'grapheme-ascii', maxLength: 5 })), { maxLength: 6 }).map((a) => a.join('')),
);
/** Label names as Alertmanager would never send them, too (never __proto__: the parser removes that one, test/unit/http/alerts.test.ts). */
const labelName = labelText.filter((s) => s.length > 0 && s !== '__proto__');
const labels = fc.dictionary(labelName, labelText, { maxKeys: 6, noNullPrototype: true });

let fpSeq = 0;
/** A valid v4 payload with unique fingerprints (so every accepted alert is new and traceable). */
const validPayload = fc
  .record({
    status: fc.constantFrom('firing', 'resolved'),
    alerts: fc.array(
      fc.record({
        status: fc.constantFrom('firing', 'resolved'),
        labels,
        annotations: labels,
        // never ahead of the clock: an alert starting later than ALERT_MAX_CLOCK_SKEW from now is refused alone (tested below)
        startsAt: fc.integer({ min: Date.parse('2000-01-01T00:00:00Z'), max: Date.now() }).map((ms) => new Date(ms).toISOString()),
        generatorURL: labelText,
        fpSuffix: labelText,
      }),
      { maxLength: 5 },
    ),
    groupKey: labelText,
    receiver: labelText,
    commonLabels: labels,
    extra: fc.option(fc.jsonValue({ maxDepth: 3 }), { nil: undefined }),
  })
  .map((p) => ({
    version: '4',
    groupKey: p.groupKey,
    truncatedAlerts: 0,
    status: p.status,
    receiver: p.receiver,
    groupLabels: {},
    commonLabels: p.commonLabels,
    commonAnnotations: {},
    externalURL: 'http://am.example:9093',
    ...(p.extra !== undefined ? { notification_reason: p.extra } : {}),
    alerts: p.alerts.map(({ fpSuffix, ...a }) => ({ ...a, endsAt: '0001-01-01T00:00:00Z', fingerprint: `fp-${++fpSeq}-${fpSuffix}` })),
  }));

/** Replaces one value somewhere in a payload (at any depth) by an arbitrary JSON value, or deletes it. */
function mutate(payload: unknown, pick: number, replacement: unknown, del: boolean): unknown {
  const copy = JSON.parse(JSON.stringify(payload)) as unknown;
  const slots: [Record<string, unknown> | unknown[], string | number][] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach((x, i) => (slots.push([v, i]), walk(x)));
    else if (v && typeof v === 'object') for (const k of Object.keys(v)) slots.push([v as Record<string, unknown>, k]), walk((v as Record<string, unknown>)[k]);
  };
  walk(copy);
  if (slots.length === 0) return replacement;
  const [obj, key] = slots[pick % slots.length]!;
  if (del && !Array.isArray(obj)) delete (obj as Record<string, unknown>)[key as string];
  else (obj as Record<string | number, unknown>)[key] = replacement;
  return copy;
}

// --- in process ---------------------------------------------------------------------------------

t.test('fuzzed webhook bodies: 200 for every valid payload, 4xx for the rest, and the queue holds exactly the accepted alerts', async (t) => {
  const { app, store, config } = fullApp();
  const accepted = new Map<string, number>(); // dedupe key -> times expected in the queue (1)
  let validSent = 0;
  let mutatedSent = 0;
  let randomSent = 0;

  await fc.assert(
    fc.asyncProperty(validPayload, async (p) => {
      const res = await post(app, '/v1/alerts', JSON.stringify(p));
      checkAnswer(t, res, 'valid payload');
      validSent++;
      if (res.statusCode !== 200) return false;
      for (const a of p.alerts) accepted.set(dedupeKey({ fingerprint: a.fingerprint, startsAt: Date.parse(a.startsAt), status: a.status as 'firing' }), 1);
      return res.json().queued === p.alerts.length;
    }),
    { numRuns: 600, seed: RUN },
  );

  await fc.assert(
    fc.asyncProperty(validPayload, fc.nat(), fc.jsonValue({ maxDepth: 4 }), fc.boolean(), async (p, pick, repl, del) => {
      const m = mutate(p, pick, repl, del) as { alerts?: { fingerprint?: unknown; startsAt?: unknown; status?: unknown }[] };
      const before = await store.queueDepth();
      const res = await post(app, '/v1/alerts', JSON.stringify(m));
      mutatedSent++;
      if (!checkAnswer(t, res, `mutated payload ${JSON.stringify(m).slice(0, 200)}`)) return false;
      const after = await store.queueDepth();
      if (res.statusCode !== 200) return after === before;
      const body = res.json() as { queued: number; duplicates: number; refused?: number };
      // accepted: it was valid after all (e.g. an unknown field replaced); every alert within the
      // per-alert limits is in the queue, the others are refused alone
      const { kept, refused } = splitByLimits(webhookPayloadSchema.parse(m).alerts, intakeLimits(config), (i) => `body.alerts[${i}]`);
      for (const a of kept) accepted.set(dedupeKey({ fingerprint: a.fingerprint, startsAt: Date.parse(a.startsAt), status: a.status }), 1);
      return after === before + body.queued && (body.refused ?? 0) === refused.length && body.queued + body.duplicates + refused.length === (m.alerts ?? []).length;
    }),
    { numRuns: 1500, seed: RUN + 1 },
  );

  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'), fc.string({ unit: 'binary', maxLength: 200 })), async (body) => {
      const res = await post(app, '/v1/alerts', body);
      randomSent++;
      return checkAnswer(t, res, `random body ${JSON.stringify(body).slice(0, 100)}`) && res.statusCode >= 400 && res.statusCode < 500;
    }),
    { numRuns: 1000, seed: RUN + 2 },
  );

  // the queue holds exactly the alerts of the accepted payloads: no more, no less, once each
  const queued = await store.consume('check', 100_000, 0, 60_000);
  const keys = queued.map((e) => dedupeKey(e.alert));
  t.equal(new Set(keys).size, keys.length, 'no alert queued twice');
  t.same(new Set(keys), new Set(accepted.keys()), `the queue holds exactly the ${accepted.size} accepted alerts`);
  t.equal(await store.listRecords({ limit: 10 }).then((r) => r.length), 0, 'no rollback record was created by the webhook itself');
  figures(t, 'webhook-fuzz', { inputs_fuzzed: validSent + mutatedSent + randomSent, valid: validSent, mutated: mutatedSent, random: randomSent, alerts_accepted: accepted.size, server_errors: serverErrors });
});

t.test('unicode and control characters in labels survive intact, through the real Redis store too', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.destroy());
  const rstore = new RedisStore({ url: redis.url, prefix: 'hostile' });
  await rstore.waitReady(10_000);
  t.teardown(() => rstore.close());
  for (const store of [undefined, rstore]) {
    const { app, store: s } = fullApp(store ? { store } : {});
    const sent = new Map<string, Record<string, string>>();
    await fc.assert(
      fc.asyncProperty(labels, labels, async (l, ann) => {
        const fp = `fp-u-${++fpSeq}`;
        const body = { version: '4', groupKey: 'g', status: 'firing', receiver: 'rollguard', alerts: [{ status: 'firing', labels: l, annotations: ann, startsAt: '2026-11-23T10:00:00Z', fingerprint: fp }] };
        const res = await post(app, '/v1/alerts', JSON.stringify(body));
        if (!checkAnswer(t, res, 'unicode labels')) return false;
        sent.set(fp, l);
        return res.statusCode === 200 && res.json().queued === 1;
      }),
      { numRuns: 300, seed: RUN + 3 },
    );
    const got = await s.consume('u', 10_000, 0, 60_000);
    t.equal(got.length, sent.size, `${s.kind}: every alert queued`);
    let same = 0;
    for (const e of got) if (JSON.stringify(e.alert.labels) === JSON.stringify(sent.get(e.alert.fingerprint))) same++;
    t.equal(same, sent.size, `${s.kind}: every label set read back byte for byte`);
  }
  // lone surrogates are not UTF-8 (Alertmanager, written in Go, never sends them): accepted or refused, never a 5xx
  const { app } = fullApp({ store: rstore });
  for (const v of ['\ud800', 'a\udfffb', '\udc00\ud800']) {
    const res = await post(app, '/v1/alerts', JSON.stringify({ version: '4', groupKey: 'g', status: 'firing', receiver: 'r', alerts: [{ status: 'firing', labels: { x: v }, startsAt: '2026-11-23T10:00:00Z', fingerprint: `fp-s-${++fpSeq}${v}` }] }));
    t.ok(checkAnswer(t, res, 'lone surrogate') && res.statusCode < 300, `lone surrogate ${JSON.stringify(v)}: ${res.statusCode}`);
  }
});

t.test('oversize and deeply nested bodies: 413 and 400, the process keeps serving', async (t) => {
  const { app, store } = fullApp({ env: { BODY_LIMIT_BYTES: String(1024 * 1024) } });
  const big = await post(app, '/v1/alerts', JSON.stringify({ version: '4', pad: 'x'.repeat(1100 * 1024) }));
  checkAnswer(t, big, 'oversize');
  t.equal(big.statusCode, 413);
  t.equal(big.json().error, 'payload_too_large');
  const valid = { version: '4', groupKey: 'g', status: 'firing', receiver: 'r', alerts: [] as unknown[] };
  for (const depth of [100, 10_000, 100_000]) {
    const arr = '['.repeat(depth) + ']'.repeat(depth);
    const obj = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    const cases: [string, string, number[]][] = [
      ['nested array as the body', arr, [400, 413]],
      ['nested objects as the body', obj, [400, 413]],
      ['nested array as a label value', JSON.stringify({ ...valid, alerts: [{ status: 'firing', startsAt: '2026-11-23T10:00:00Z', fingerprint: 'deep', labels: { a: 'PLACEHOLDER' } }] }).replace('"PLACEHOLDER"', arr), [400, 413]],
      ['nested objects in an unknown field (tolerated, never stored)', JSON.stringify({ ...valid, extra: 'PLACEHOLDER' }).replace('"PLACEHOLDER"', obj), [200, 413]],
      ['prototype key at the bottom', '{"a":'.repeat(depth) + '{"__proto__":{"x":1}}' + '}'.repeat(depth), [400, 413]],
    ];
    for (const [name, body, want] of cases) {
      const res = await post(app, '/v1/alerts', body);
      checkAnswer(t, res, `${name}, depth ${depth}`);
      t.ok(want.includes(res.statusCode), `${name}, depth ${depth} (${body.length} bytes): ${res.statusCode} ${res.body.slice(0, 120)}`);
    }
  }
  t.equal(await store.queueDepth(), 0, 'nothing queued');
  t.equal((await app.inject('/healthz')).statusCode, 200);
});

t.test('alerts over a per-alert limit among valid ones: each refused alone (200, counted), the others queued; a batch of only such alerts: 200, nothing queued', async (t) => {
  const { app, store, metrics } = fullApp({ env: { BODY_LIMIT_BYTES: String(1024 * 1024), ALERT_MAX_LABELS: '20' } });
  const alert = (i: number, status: 'firing' | 'resolved', extra: Record<string, unknown> = {}, labels: Record<string, string> = {}) => ({
    status, labels: { alertname: 'HighErrorRate', namespace: 'shop', deployment: `lim-${i}`, ...labels }, startsAt: '2026-11-23T10:00:00Z', fingerprint: `fp-lim-${i}`, ...extra,
  });
  const huge = 'H'.repeat(50 * 1024); // the batch under BODY_LIMIT_BYTES, each far over ALERT_MAX_LABEL_BYTES
  const many = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`l${i}`, 'v']));
  const hostile = [
    alert(1, 'firing', {}, { dump: huge }),
    alert(2, 'resolved', {}, { dump: huge }),
    alert(3, 'firing', {}, { [huge]: 'v' }),
    alert(4, 'firing', {}, many),
    alert(5, 'firing', { fingerprint: huge }),
    alert(6, 'firing', { generatorURL: `http://p/${huge}` }),
    alert(7, 'firing', {}, { alertname: huge }),
  ];
  const good = [alert(10, 'firing'), alert(11, 'resolved'), alert(12, 'firing')];
  const batch = { version: '4', groupKey: 'g', status: 'firing', receiver: 'r', alerts: [good[0], ...hostile.slice(0, 4), good[1], ...hostile.slice(4), good[2]] };
  const res = await post(app, '/v1/alerts', JSON.stringify(batch));
  checkAnswer(t, res, 'mixed batch');
  t.equal(res.statusCode, 200, 'the batch is not refused for its hostile alerts');
  t.same(res.json(), { queued: 3, duplicates: 0, refused: 7 });
  t.equal(await metricValue(metrics, 'rollguard_alerts_refused_total', { limit: 'ALERT_MAX_LABEL_BYTES' }), 6);
  t.equal(await metricValue(metrics, 'rollguard_alerts_refused_total', { limit: 'ALERT_MAX_LABELS' }), 1);
  const only = await post(app, '/v1/alerts', JSON.stringify({ ...batch, alerts: hostile }));
  checkAnswer(t, only, 'only hostile alerts');
  t.equal(only.statusCode, 200, 'a batch of only refused alerts: 200 all the same');
  t.same(only.json(), { queued: 0, duplicates: 0, refused: 7 }, 'refused again: a refused alert is never remembered for dedupe');
  const queued = await store.consume('lim', 100, 0, 60_000);
  t.same(queued.map((e) => e.alert.fingerprint).sort(), ['fp-lim-10', 'fp-lim-11', 'fp-lim-12'], 'the queue holds the valid alerts only');
  t.notOk(JSON.stringify(queued).includes('HHHHHHHHHH'), 'nothing of an over-long value is stored');
  inputs += 2;
});

t.test('forged times: a startsAt or endsAt that is no RFC 3339 time is 400 naming the field; one starting in the future is refused alone', async (t) => {
  const { app, store, metrics } = fullApp();
  const alert = (i: number, extra: Record<string, unknown> = {}) => ({ status: 'firing', labels: { alertname: 'HighErrorRate', namespace: 'shop', deployment: `time-${i}` }, startsAt: '2026-11-23T10:00:00Z', fingerprint: `fp-time-${i}`, ...extra });
  const body = (alerts: unknown[]) => JSON.stringify({ version: '4', groupKey: 'g', status: 'firing', receiver: 'r', alerts });
  // every one of these Date.parse takes as some time: "1" is 2001-01-01, "Tuesday 3" 2001-02-28
  const forged = ['1', '0', '2001', 'Tuesday 3', '12/06/2026', 'December 6, 2026', 'Sun, 06 Dec 2026 03:00:00 GMT', '2026-12-06', '2026-12-06T03:00', '2026-12-06T03:00:00', ' 2026-11-23T10:00:00Z', '2026-11-23T10:00:00Z ', '2026-02-29T00:00:00Z', '+012026-11-23T10:00:00Z'];
  let n = 0;
  for (const v of forged) {
    for (const field of ['startsAt', 'endsAt']) {
      const res = await post(app, '/v1/alerts', body([alert(++n), alert(++n, { [field]: v })]));
      checkAnswer(t, res, `${field} ${JSON.stringify(v)}`);
      t.equal(res.statusCode, 400, `${field} ${JSON.stringify(v)}: 400`);
      t.match(res.json().message, new RegExp(`body\\.alerts\\.1\\.${field}: expected an RFC 3339 timestamp`), `${field} ${JSON.stringify(v)}: names the field`);
    }
  }
  t.equal(await store.queueDepth(), 0, 'nothing of those batches queued');
  const future = [new Date(Date.now() + 3_600_000).toISOString(), '9999-12-31T23:59:59.999999999Z', '2100-01-01T00:00:00+14:00'];
  const res = await post(app, '/v1/alerts', body([alert(100), ...future.map((startsAt, i) => alert(101 + i, { startsAt }))]));
  checkAnswer(t, res, 'future startsAt');
  t.equal(res.statusCode, 200, 'the batch is not refused for its future alerts');
  t.same(res.json(), { queued: 1, duplicates: 0, refused: 3 });
  t.equal(await metricValue(metrics, 'rollguard_alerts_refused_total', { limit: 'ALERT_MAX_CLOCK_SKEW' }), 3);
  t.same((await store.consume('time', 10, 0, 60_000)).map((e) => e.alert.fingerprint), ['fp-time-100'], 'the queue holds the alert that started in the past only');
  inputs += 1;
});

t.test('content types, methods and unknown paths', async (t) => {
  const { app } = fullApp();
  for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', '', 'application/json; charset=utf-16', 'application/jsonx']) {
    const res = await post(app, '/v1/alerts', '{"version":"4"}', ct ? { 'content-type': ct } : { 'content-type': '' });
    checkAnswer(t, res, `content-type ${ct}`);
    t.ok(res.statusCode >= 400 && res.statusCode < 500, `content-type ${JSON.stringify(ct)}: ${res.statusCode}`);
  }
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
      fc.oneof(fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)), fc.constantFrom('/v1/alerts', '/v1/rollbacks', '/v1/rollbacks/rb-x', '/v1/pause', '/-/reload', '/metrics', '/../../etc/passwd', '/v1/rollbacks/%00', '/v1//alerts')),
      fc.string({ maxLength: 50 }),
      async (method, path, body) => {
        const res = await app.inject({ method: method as 'GET', url: path, payload: method === 'GET' || method === 'HEAD' ? undefined : body, headers: { 'content-type': 'application/json' } });
        if (method === 'HEAD') {
          inputs++;
          return res.statusCode < 500;
        }
        return checkAnswer(t, res, `${method} ${path}`);
      },
    ),
    { numRuns: 800, seed: RUN + 4 },
  );
});

t.test('fuzzed API queries, ids and admin bodies', async (t) => {
  const { app, store } = fullApp();
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
  await fc.assert(
    fc.asyncProperty(fc.dictionary(fc.constantFrom('target', 'state', 'limit', 'x', 'limit[]', '__proto__'), fc.string({ unit: 'binary', maxLength: 30 })), async (q) => {
      const qs = new URLSearchParams(q).toString();
      const res = await app.inject({ method: 'GET', url: `/v1/rollbacks?${qs}` });
      return checkAnswer(t, res, `GET /v1/rollbacks?${qs}`) && [200, 400].includes(res.statusCode);
    }),
    { numRuns: 500, seed: RUN + 5 },
  );
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 60 }), fc.constantFrom('', '/report', '/approve', '/reject'), async (id, suffix) => {
      const res = await app.inject({ method: suffix.startsWith('/a') || suffix.startsWith('/r') && suffix !== '/report' ? 'POST' : 'GET', url: `/v1/rollbacks/${encodeURIComponent(id)}${suffix}`, headers: admin, payload: suffix === '/approve' || suffix === '/reject' ? '{}' : undefined });
      return checkAnswer(t, res, `rollback id ${JSON.stringify(id)}${suffix}`) && res.statusCode >= 400 && res.statusCode < 500;
    }),
    { numRuns: 500, seed: RUN + 6 },
  );
  let manualAccepted = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.jsonValue({ maxDepth: 3 }),
        fc.record({ kind: fc.constantFrom('Deployment', 'deployment', 'Pod', ''), namespace: labelText, name: labelText, reason: labelText, toRevision: fc.oneof(fc.integer(), fc.double(), fc.string()) }, { requiredKeys: [] }),
      ),
      fc.constantFrom('/v1/rollbacks', '/v1/pause', '/v1/resume', '/-/reload'),
      async (body, url) => {
        const res = await app.inject({ method: 'POST', url, headers: admin, payload: JSON.stringify(body) ?? 'null' });
        if (url === '/v1/rollbacks' && res.statusCode === 202) manualAccepted++;
        return checkAnswer(t, res, `POST ${url} ${JSON.stringify(body).slice(0, 100)}`);
      },
    ),
    { numRuns: 600, seed: RUN + 7 },
  );
  t.equal((await store.listRecords({ limit: 10_000 })).length, manualAccepted, `records: exactly the ${manualAccepted} valid manual requests`);
});

t.test('wrong, missing and timing-probed credentials: 401, the same answer whatever the guess, nothing queued', async (t) => {
  const { app, store } = fullApp({ env: { WEBHOOK_BASIC_USER: 'alertmanager', WEBHOOK_BASIC_PASSWORD: 'basic-secret' } });
  const body = JSON.stringify({ version: '4', groupKey: 'g', status: 'firing', receiver: 'r', alerts: [{ status: 'firing', labels: {}, startsAt: '2026-11-23T10:00:00Z', fingerprint: 'auth' }] });
  const probes: string[] = [];
  // every prefix of the right token, the right token plus one character, each single-character change
  for (let i = 0; i < WEBHOOK_TOKEN.length; i++) probes.push(`Bearer ${WEBHOOK_TOKEN.slice(0, i)}`);
  probes.push(`Bearer ${WEBHOOK_TOKEN}x`, `Bearer x${WEBHOOK_TOKEN}`, `Bearer ${ADMIN_TOKEN}`, `Bearer ${WEBHOOK_TOKEN.toUpperCase()}`);
  for (let i = 0; i < WEBHOOK_TOKEN.length; i++) probes.push(`Bearer ${WEBHOOK_TOKEN.slice(0, i)}${WEBHOOK_TOKEN[i] === 'a' ? 'b' : 'a'}${WEBHOOK_TOKEN.slice(i + 1)}`);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  probes.push(
    '', 'Bearer', 'Bearer ', 'Token ' + WEBHOOK_TOKEN, 'Basic', `Basic ${b64('alertmanager:wrong')}`, `Basic ${b64('alertmanager')}`, `Basic ${b64(':basic-secret')}`,
    `Basic ${b64('Alertmanager:basic-secret')}`, `Basic ${b64('alertmanager:basic-secret\u0000')}`, 'Basic !!!not-base64!!!', `Digest username="alertmanager"`, `Bearer ${WEBHOOK_TOKEN.slice(0, -1)}\u00e9`,
    `Bearer\t${'x'.repeat(10_000)}`,
  );
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: 'grapheme-ascii', maxLength: 64 }), async (s) => {
      const res = await post(app, '/v1/alerts', body, { authorization: `Bearer ${s}` });
      return checkAnswer(t, res, 'random token') && (s.trim() === WEBHOOK_TOKEN ? res.statusCode === 200 : res.statusCode === 401);
    }),
    { numRuns: 300, seed: RUN + 8 },
  );
  const bodies = new Set<string>();
  const timings: { shared: number; ms: number }[] = [];
  for (const p of probes) {
    const t0 = process.hrtime.bigint();
    const res = await post(app, '/v1/alerts', body, { authorization: p });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    checkAnswer(t, res, `probe ${p.slice(0, 40)}`);
    t.equal(res.statusCode, 401, `401 for ${JSON.stringify(p.slice(0, 50))}`);
    t.match(res.headers['www-authenticate'], /Bearer realm="rollguard-webhook", Basic realm="rollguard-webhook"/);
    if (p.startsWith('Bearer ') && p.length > 7) {
      bodies.add(res.body);
      let shared = 0;
      while (shared < WEBHOOK_TOKEN.length && p[7 + shared] === WEBHOOK_TOKEN[shared]) shared++;
      timings.push({ shared, ms });
    }
  }
  t.equal(bodies.size, 1, 'every wrong bearer token gets the very same answer, however much of the token it guessed');
  t.equal(await store.queueDepth(), 0, 'nothing queued without the right credentials');
  // admin endpoints: the webhook token is not the admin token
  for (const [method, url] of [['POST', '/v1/rollbacks'], ['POST', '/v1/pause'], ['POST', '/v1/resume'], ['POST', '/-/reload'], ['POST', '/v1/rollbacks/rb-abc/approve']] as const) {
    for (const auth of ['', `Bearer ${WEBHOOK_TOKEN}`, `Bearer ${ADMIN_TOKEN.slice(0, -1)}`, `Basic ${b64(`admin:${ADMIN_TOKEN}`)}`]) {
      const res = await app.inject({ method, url, headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) }, payload: '{}' });
      checkAnswer(t, res, `${method} ${url} with ${auth.slice(0, 10)}`);
      t.equal(res.statusCode, 401, `${method} ${url} with ${JSON.stringify(auth.slice(0, 12))}…: 401`);
    }
  }
  // the right credentials work (so the 401s above are not an accident)
  t.equal((await post(app, '/v1/alerts', body)).statusCode, 200, 'the right bearer token: 200');
  t.equal((await post(app, '/v1/alerts', body, { authorization: `Basic ${b64('alertmanager:basic-secret')}` })).statusCode, 200, 'the right basic credentials: 200');
  // timing is reported, never asserted (a shared machine): compared in constant time over sha256 digests
  const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const none = timings.filter((x) => x.shared === 0).map((x) => x.ms);
  const most = timings.filter((x) => x.shared >= WEBHOOK_TOKEN.length - 1).map((x) => x.ms);
  figures(t, 'auth-probes', { inputs_fuzzed: probes.length + 300 + 20, median_ms_no_prefix: med(none).toFixed(3), median_ms_all_but_one: med(most).toFixed(3) });
});

t.test('label values that try to widen a target name nothing: the record says why, the cluster is never touched', async (t) => {
  const { engine, action, deliver } = testEngine({ env: { DRY_RUN: 'false' } });
  const hostile = ['.*', 'a|b', '*', 'checkout,payments', 'checkout payments', '"checkout"', "'x'", '{checkout}', '../checkout', 'checkout/x', 'CHECKOUT', 'checkout\n', '\u0000', 'ｃheckout', '', 'a'.repeat(300), '{{ $labels.namespace }}', '$(rm -rf /)', 'checkout\u200b'];
  let sent = 0;
  for (const v of hostile) {
    for (const field of ['deployment', 'namespace'] as const) {
      const { firing } = await import('../support/engine.js');
      const a = firing('HighErrorRate', 'checkout');
      a.labels[field] = v;
      await deliver(a);
      sent++;
    }
  }
  await fc.assert(
    fc.asyncProperty(labelText.filter((s) => !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(s) || s.length > 63), async (v) => {
      const { firing } = await import('../support/engine.js');
      const a = firing('HighErrorRate', 'checkout');
      a.labels.deployment = v;
      await deliver(a);
      sent++;
      return action.executed.length === 0;
    }),
    { numRuns: 300, seed: RUN + 9 },
  );
  const recs = await engine.records.list({ limit: 10_000 });
  t.equal(action.executed.length, 0, 'no rollback executed');
  t.equal(recs.length, sent, 'one record per alert');
  t.ok(recs.every((r) => r.state === 'error' && /target could not be resolved/.test(r.outcome?.message ?? '')), 'each: error, target could not be resolved, with the reason');
  t.ok(recs.every((r) => r.target.startsWith('unresolved/')), 'no record names a real target');
  inputs += sent;
  figures(t, 'target-widening', { inputs_fuzzed: sent, rollbacks_executed: action.executed.length });
});

// --- a real process -----------------------------------------------------------------------------

t.test('a real rollguard serve on real Redis: raw hostile traffic, then still healthy and holding exactly the valid alerts', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'rollguard-hostile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, 'rules.yaml'),
    `rules:
  - name: any-error-rate
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    guards: { budget: { perTargetPerHour: 100 } }
`,
  );
  const rg = await startServe({ REDIS_URL: redis.url, WEBHOOK_TOKEN, ADMIN_TOKEN, RULES_PATH: join(dir, 'rules.yaml'), DRY_RUN: 'true', LOG_LEVEL: 'warn', BODY_LIMIT_BYTES: String(1024 * 1024), BUDGET_CLUSTER_PER_HOUR: '10000', MAX_CONCURRENT_ROLLBACKS: '100' });
  t.teardown(() => {
    rg.proc.kill('SIGKILL');
  });
  const send = async (body: string | Uint8Array, headers: Record<string, string> = {}) => {
    const r = await fetch(`${rg.url}/v1/alerts`, { method: 'POST', body, headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}`, ...headers } });
    return { statusCode: r.status, body: await r.text(), headers: Object.fromEntries(r.headers) };
  };
  const raw = (bytes: string | Buffer) =>
    new Promise<string>((resolve) => {
      const s = connect(rg.port, '127.0.0.1');
      let out = '';
      s.on('data', (d) => (out += d.toString('latin1')));
      s.on('error', () => resolve(out));
      s.on('close', () => resolve(out));
      s.setTimeout(3000, () => s.destroy());
      s.end(bytes);
    });

  const sentLabels = new Map<string, Record<string, string>>();
  let valid = 0;
  let garbage = 0;
  await fc.assert(
    fc.asyncProperty(validPayload, fc.oneof(fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'), fc.string({ unit: 'binary', maxLength: 300 })), async (p, junk) => {
      // a valid payload whose alerts each resolve to a target (a dry-run record each) ...
      for (const [i, a] of p.alerts.entries()) {
        a.labels = { ...a.labels, alertname: 'HighErrorRate', namespace: 'shop', deployment: `svc-${fpSeq}-${i}` };
        a.status = 'firing';
      }
      const res = await send(JSON.stringify(p));
      if (!checkAnswer(t, res, 'serve: valid payload') || res.statusCode !== 200) return false;
      for (const a of p.alerts) sentLabels.set(a.fingerprint, a.labels);
      valid += p.alerts.length;
      // ... and a junk one
      const bad = await send(junk);
      garbage++;
      return checkAnswer(t, bad, `serve: junk ${junk.slice(0, 80)}`) && bad.statusCode >= 400 && bad.statusCode < 500;
    }),
    { numRuns: 150, seed: RUN + 10 },
  );

  // one exporter emitting a huge label: its alert is refused alone, the others of its batch handled
  const hugeLabel = 'HUGELABEL'.repeat(12_000); // 108 KB: under BODY_LIMIT_BYTES, over ALERT_MAX_LABEL_BYTES
  const mixedAlerts = [0, 1, 2].map((i) => ({ status: 'firing', labels: { alertname: 'HighErrorRate', namespace: 'shop', deployment: `mixed-${i}`, ...(i === 1 ? { exporter_dump: hugeLabel } : {}) }, startsAt: '2026-11-23T10:00:00Z', fingerprint: `fp-mixed-${i}` }));
  const mixedRes = await send(JSON.stringify({ version: '4', groupKey: 'g-mixed', status: 'firing', receiver: 'r', alerts: mixedAlerts }));
  checkAnswer(t, mixedRes, 'serve: a batch with one alert over ALERT_MAX_LABEL_BYTES');
  t.equal(mixedRes.statusCode, 200, 'serve: a batch with one alert over ALERT_MAX_LABEL_BYTES is answered 200');
  t.same(JSON.parse(mixedRes.body), { queued: 2, duplicates: 0, refused: 1 });
  for (const a of [mixedAlerts[0]!, mixedAlerts[2]!]) sentLabels.set(a.fingerprint, a.labels);
  valid += 2;

  const hostileRaw: [string, string | Buffer][] = [
    ['garbage bytes', Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7919) % 256))],
    ['an HTTP/0.9 line', 'GET /\r\n\r\n'],
    ['a request line without a version', 'POST /v1/alerts\r\n\r\n'],
    ['a header without a colon', 'POST /v1/alerts HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n'],
    ['a 64 KB header', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`],
    ['a lying content-length', 'POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n{"version":"4"}'],
    ['conflicting content-length and chunked', 'POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['a bad chunk size', 'POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'],
    ['a NUL in the path', 'GET /v1/rollbacks/\u0000 HTTP/1.1\r\nHost: x\r\n\r\n'],
  ];
  for (const [name, bytes] of hostileRaw) {
    const out = await raw(bytes);
    inputs++;
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0);
    t.ok(status === 0 || (status >= 400 && status < 500), `${name}: ${status || 'connection closed'} ${out.split('\r\n')[0] ?? ''}`);
    if (status >= 500) serverErrors++;
  }
  for (const [name, body] of [
    ['2 MB body', JSON.stringify({ version: '4', pad: 'x'.repeat(2 * 1024 * 1024) })],
    ['nested 200 000 deep', '['.repeat(200_000) + ']'.repeat(200_000)],
  ] as const) {
    const res = await send(body).catch((err: Error) => ({ statusCode: 0, body: `{"error":"closed","message":"${err.message}"}`, headers: {} }));
    checkAnswer(t, res, name);
    t.ok(res.statusCode === 0 || (res.statusCode >= 400 && res.statusCode < 500), `${name}: ${res.statusCode}`);
  }
  // prototype keys are removed by the parser (a refused batch would be dropped by Alertmanager with
  // its whole group): what is left is judged as it is
  for (const [name, body, want] of [
    ['prototype poisoning', '{"version":"4","groupKey":"g","status":"firing","receiver":"r","alerts":[],"__proto__":{"admin":true}}', 200],
    ['constructor poisoning', '{"version":"4","constructor":{"prototype":{"admin":true}}}', 400],
  ] as const) {
    const res = await send(body);
    checkAnswer(t, res, name);
    t.equal(res.statusCode, want, `${name}: ${res.statusCode} ${res.body.slice(0, 120)}`);
  }
  for (const auth of ['', 'Bearer nope', `Bearer ${WEBHOOK_TOKEN.slice(1)}`]) {
    const res = await send(JSON.stringify({ version: '4', groupKey: 'g', status: 'firing', receiver: 'r', alerts: [{ status: 'firing', labels: { alertname: 'HighErrorRate', namespace: 'shop', deployment: 'unauth' }, startsAt: '2026-11-23T10:00:00Z', fingerprint: 'unauth' }] }), { authorization: auth });
    checkAnswer(t, res, 'serve: auth');
    t.equal(res.statusCode, 401);
  }

  t.equal(rg.proc.exitCode, null, 'the process is still running');
  t.equal((await fetch(`${rg.url}/healthz`)).status, 200, '/healthz');
  t.equal((await fetch(`${rg.url}/readyz`)).status, 200, '/readyz');
  // the store holds exactly what valid input put there: one dry-run record per valid alert
  const records = await waitFor(
    `${valid} records`,
    async () => {
      const r = (await (await fetch(`${rg.url}/v1/rollbacks?limit=1000`)).json()) as { rollbacks: { alert?: { fingerprint: string; labels: Record<string, string> }; state: string }[] };
      return r.rollbacks.length >= valid && r.rollbacks.every((x) => x.state === 'dry_run') ? r.rollbacks : undefined;
    },
    60_000,
    250,
  );
  t.equal(records.length, valid, `exactly ${valid} records, one per valid alert`);
  t.equal(records.filter((r) => JSON.stringify(r.alert?.labels) === JSON.stringify(sentLabels.get(r.alert?.fingerprint ?? ''))).length, valid, 'each with its labels exactly as sent');
  t.notOk(records.some((r) => r.alert?.fingerprint === 'fp-mixed-1'), 'no record for the refused alert');
  const crashedLines = rg.logs().filter((l) => (l.level as number) >= 50 && !/redis/.test(String(l.msg)));
  t.same(crashedLines.map((l) => l.msg), [], 'no error logged');
  const refusal = rg.logs().find((l) => /refused, not queued/.test(String(l.msg)));
  t.match(refusal, { level: 40, groupKey: 'g-mixed', refused: 1, limits: { ALERT_MAX_LABEL_BYTES: 1 }, first: [{ index: 1, alertname: 'HighErrorRate', limit: 'ALERT_MAX_LABEL_BYTES', reason: /^body\.alerts\[1\]\.labels\.exporter_dump: 108000 bytes/ }] }, 'the refusal is logged as a warning naming the setting, the group, the index and the alertname');
  t.notOk(JSON.stringify(rg.logs()).includes('HUGELABEL'), 'and never the value over the limit');
  t.match(await (await fetch(`${rg.url}/metrics`)).text(), /^rollguard_alerts_refused_total\{limit="ALERT_MAX_LABEL_BYTES"\} 1$/m, 'counted by its limit');
  if (rg.proc.exitCode !== null) crashes++;
  figures(t, 'serve-hostile', { inputs_fuzzed: 150 + garbage + hostileRaw.length + 8, valid_alerts: valid, records: records.length });
});

t.teardown(() => {
  figures(t, 'hostile-input', { inputs_fuzzed: inputs, server_errors: serverErrors, crashes });
});
