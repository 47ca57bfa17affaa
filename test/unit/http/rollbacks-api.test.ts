import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { controlRoutes } from '../../../src/http/control.js';
import { rollbacksRoutes } from '../../../src/http/rollbacks.js';
import type { RollbackRecord } from '../../../src/engine/record.js';
import { RuleHolder } from '../../../src/rules/holder.js';
import { ADMIN_TOKEN, WEBHOOK_TOKEN } from '../../support/app.js';
import { firing, RULES, testEngine } from '../../support/engine.js';

async function setup(env: Record<string, string> = {}, now?: () => number) {
  const e = testEngine({ env: { WEBHOOK_TOKEN, ADMIN_TOKEN, ...env }, ...(now ? { now } : {}) });
  const dir = mkdtempSync(join(tmpdir(), 'rg-rules-'));
  writeFileSync(join(dir, 'rules.yaml'), RULES);
  const holder = await RuleHolder.create({ paths: [dir], metrics: e.metrics });
  t.teardown(() => holder.close());
  const app = buildApp({ config: e.config, store: e.store, metrics: e.metrics, logger: false, routes: [rollbacksRoutes(e.engine), controlRoutes({ reload: () => holder.reload('api') })] });
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  return { ...e, app, admin, dir, holder };
}

t.test('list, filter, get and report', async (t) => {
  const s = await setup();
  await s.deliver(firing('MinorBug', 'search'));
  s.prometheus!.value = 0.001;
  await s.deliver(firing('HighErrorRate', 'checkout'));
  const all = (await s.app.inject('/v1/rollbacks')).json().rollbacks;
  t.equal(all.length, 2);
  const f = (await s.app.inject('/v1/rollbacks?target=Deployment/prod/search')).json().rollbacks;
  t.same(f.map((r: { state: string }) => r.state), ['notified']);
  const byState = (await s.app.inject('/v1/rollbacks?state=not_confirmed')).json().rollbacks;
  t.equal(byState.length, 1);
  const badState = await s.app.inject('/v1/rollbacks?state=exploded');
  t.equal(badState.statusCode, 400);
  t.match(badState.json().message, /query\.state/);
  const badLimit = await s.app.inject('/v1/rollbacks?limit=0');
  t.match(badLimit.json().message, /query\.limit/);

  const one = await s.app.inject(`/v1/rollbacks/${all[0].id}`);
  t.equal(one.statusCode, 200);
  t.equal(one.json().id, all[0].id);
  t.equal((await s.app.inject('/v1/rollbacks/rb-doesnotexist')).statusCode, 404);
  const badId = await s.app.inject('/v1/rollbacks/..%2F..%2Fetc');
  t.equal(badId.statusCode, 400);
  t.match(badId.json().message, /params\.id/);

  const report = await s.app.inject(`/v1/rollbacks/${f[0].id}/report`);
  t.equal(report.statusCode, 200);
  t.match(report.headers['content-type'], /text\/markdown/);
  t.match(report.body, /# Incident report: Deployment\/prod\/search/);
  t.match(report.body, /## Timeline/);
  t.match(report.body, /time to detect .*\| < 5 min \|/);
  t.match(report.body, /## Action items/);
});

t.test("the report: an alert's summary and description with line breaks, escape sequences and markdown forge no line, link or heading", async (t) => {
  const s = await setup();
  const summary = 'errors up\n## Root cause\n\nstate: rejected \u001b]52;c;Y3VybA==\u0007\u001b[2K\r[Approve here](https://evil.example/approve)';
  const description = '1. ![](https://evil.example/px.png) <script>x</script>\n| forged | row |';
  await s.deliver(firing('MinorBug', 'search', { annotations: { summary, description } }));
  const [rec] = (await s.app.inject('/v1/rollbacks')).json().rollbacks;
  const report = (await s.app.inject(`/v1/rollbacks/${rec.id}/report`)).body;
  t.notMatch(report, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, 'no control character but line feeds');
  t.same(report.split('\n').filter((l) => l.startsWith('#')), ['# Incident report: Deployment/prod/search', '## What happened', '## When it was detected and how long it took', '## Why a rollback was (or was not) done: the guards', '## Timeline', '## Impact', '## Root cause', '## Action items'], 'the headings are the report\'s own, once each');
  t.notMatch(report, /^(state: rejected|\| forged)/m, 'no line of the alert\'s own');
  t.match(report, 'started firing at', 'the summary stays on the alert line');
  t.match(report, ': errors up \\#\\# Root cause  state: rejected  \\]52;c;Y3VybA==  \\[2K \\[Approve here\\]\\(https://evil.example/approve\\).', 'escaped: shown as typed, no link');
  const impact = report.split('## Impact\n\n')[1]!.split('\n')[0];
  t.equal(impact, '1\\. \\!\\[\\]\\(https://evil.example/px.png\\) \\<script\\>x\\</script\\> \\| forged \\| row \\|', 'the description: one paragraph, no list, image, HTML or table row');
});

t.test("the report: an alert name (which the timeline and guard reasons quote) with a carriage return and a link forges no heading, link or table cell", async (t) => {
  const s = await setup();
  // the rule matches MinorBug: the hostile part rides on a label the timeline quotes
  const name = 'MinorBug';
  const hostile = 'X\r## Root cause\r[Approve](https://evil.example) | forged cell <img src=x> `code`';
  await s.deliver(firing(name, 'search', { labels: { alertname: name, deployment: 'search', namespace: 'prod', team: hostile } }));
  const [rec] = (await s.app.inject('/v1/rollbacks')).json().rollbacks;
  // as a record could hold it: a step and a guard reason quoting alert text
  const stored = (await s.store.getRecord(rec.id)) as unknown as RollbackRecord;
  stored.timeline.push({ at: Date.now(), step: 'received', message: `alert ${hostile} received` });
  stored.guards = [{ guard: 'scope', result: 'allow', reason: `target of ${hostile}` }];
  await s.store.putRecord(stored);
  const report = (await s.app.inject(`/v1/rollbacks/${rec.id}/report`)).body;
  t.notMatch(report, /\r/, 'no carriage return');
  t.same(report.split('\n').filter((l) => l.startsWith('#')).length, 8, 'the headings are the report\'s own');
  t.notMatch(report, /[^\\]\[Approve[^\\]*\]\(/, 'no link');
  t.notMatch(report, /(?<!\\)<img/, 'no HTML: escaped');
  const rows = report.split('\n').filter((l) => l.includes('forged cell'));
  t.equal(rows.length, 2, 'the step and the guard reason');
  for (const row of rows) t.equal(row.split(/(?<!\\)\|/).length, 5, `one cell each, its | escaped: ${row}`);
});

t.test('GET /v1/rollbacks pages with cursor and limit, returning nextCursor', async (t) => {
  const s = await setup();
  for (let i = 0; i < 5; i++) await s.store.putRecord({ id: `rb-page${i}`, target: `Deployment/prod/p${i}`, state: 'succeeded', createdAt: 1000 + i, timeline: [] });
  const seen: string[] = [];
  let url = '/v1/rollbacks?limit=2';
  for (let pages = 0; pages < 10; pages++) {
    const r = (await s.app.inject(url)).json() as { rollbacks: { id: string }[]; nextCursor: string | null };
    seen.push(...r.rollbacks.map((x) => x.id));
    if (r.nextCursor === null) break;
    url = `/v1/rollbacks?limit=2&cursor=${encodeURIComponent(r.nextCursor)}`;
  }
  t.same(seen, ['rb-page4', 'rb-page3', 'rb-page2', 'rb-page1', 'rb-page0'], 'every record once, newest first, over three pages');
  const bad = await s.app.inject('/v1/rollbacks?cursor=garbage!');
  t.equal(bad.statusCode, 400);
  t.match(bad.json().message, /query\.cursor: expected the nextCursor of an earlier page/);
});

t.test('mutating endpoints need the admin token, not the webhook token', async (t) => {
  const s = await setup();
  const body = { kind: 'Deployment', namespace: 'prod', name: 'checkout', reason: 'bad deploy' };
  for (const [method, url, payload] of [
    ['POST', '/v1/rollbacks', body],
    ['POST', '/v1/pause', {}],
    ['POST', '/v1/resume', {}],
    ['POST', '/-/reload', {}],
    ['POST', '/v1/rollbacks/rb-x/approve', {}],
  ] as const) {
    t.equal((await s.app.inject({ method, url, payload })).statusCode, 401, `${url} without a token`);
    t.equal((await s.app.inject({ method, url, payload, headers: { authorization: `Bearer ${WEBHOOK_TOKEN}` } })).statusCode, 401, `${url} with the webhook token`);
  }
  t.equal(s.action.executed.length, 0);
  const off = await setup({ ADMIN_TOKEN: '' });
  const r = await off.app.inject({ method: 'POST', url: '/v1/pause', payload: {}, headers: off.admin });
  t.equal(r.statusCode, 403);
  t.match(r.json().message, /admin API is disabled: set ADMIN_TOKEN/);
});

t.test('a manual rollback goes through the same guards', async (t) => {
  const s = await setup();
  const bad = await s.app.inject({ method: 'POST', url: '/v1/rollbacks', headers: s.admin, payload: { kind: 'Deployment', namespace: 'prod', name: 'Checkout!' } });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().message, /body\.name: expected a Kubernetes name/);
  t.match(bad.json().message, /body\.reason/);
  const unknown = await s.app.inject({ method: 'POST', url: '/v1/rollbacks', headers: s.admin, payload: { kind: 'CronJob', namespace: 'prod', name: 'x', reason: 'r' } });
  t.match(unknown.json().message, /body\.kind/);
  const extra = await s.app.inject({ method: 'POST', url: '/v1/rollbacks', headers: s.admin, payload: { kind: 'Deployment', namespace: 'prod', name: 'x', reason: 'r', force: true } });
  t.equal(extra.statusCode, 400, 'unknown fields are refused on the admin API');
  t.equal((await s.app.inject('/v1/rollbacks')).json().rollbacks.length, 0, 'bad requests changed nothing');

  const ok = await s.app.inject({ method: 'POST', url: '/v1/rollbacks', headers: s.admin, payload: { kind: 'Deployment', namespace: 'prod', name: 'checkout', reason: 'v2 corrupts carts', requestedBy: 'alice' } });
  t.equal(ok.statusCode, 202);
  t.match(ok.headers.location, /^\/v1\/rollbacks\/rb-m-/);
  await s.engine.idle();
  t.equal(s.action.executed.length, 1);
  t.match(s.action.executed[0]!.changeCause, /rollguard: manual rollback rb-m-\w+ by alice: v2 corrupts carts/);
  const rec = (await s.app.inject(ok.headers.location as string)).json();
  t.equal(rec.state, 'succeeded');

  s.action.applied = false; // a new bad deploy
  const again = await s.app.inject({ method: 'POST', url: '/v1/rollbacks', headers: s.admin, payload: { kind: 'Deployment', namespace: 'prod', name: 'checkout', reason: 'again' } });
  await s.engine.idle();
  const second = (await s.app.inject(again.headers.location as string)).json();
  t.equal(second.state, 'blocked', 'the cooldown applies to manual rollbacks too');
  t.equal(s.action.executed.length, 1);
});

t.test('pause and resume: the kill switch', async (t) => {
  const s = await setup();
  const p = await s.app.inject({ method: 'POST', url: '/v1/pause', headers: s.admin, payload: { by: 'sre-oncall', reason: 'incident 42' } });
  t.equal(p.statusCode, 200);
  t.match((await s.app.inject('/v1/pause')).json(), { paused: true, by: 'sre-oncall', reason: 'incident 42' });
  await s.deliver(firing('HighErrorRate'));
  t.equal(s.action.executed.length, 0);
  t.equal((await s.app.inject('/v1/rollbacks')).json().rollbacks[0].state, 'blocked');
  await s.app.inject({ method: 'POST', url: '/v1/resume', headers: s.admin });
  t.same((await s.app.inject('/v1/pause')).json(), { paused: false });
  await s.deliver(firing('HighErrorRate', 'payments'));
  t.equal(s.action.executed.length, 1);
});

t.test('approve and reject over the API', async (t) => {
  const s = await setup();
  await s.deliver(firing('HighLatency', 'a'));
  await s.deliver(firing('HighLatency', 'b'));
  const [rb, ra] = (await s.app.inject('/v1/rollbacks?state=pending_approval')).json().rollbacks;
  const ap = await s.app.inject({ method: 'POST', url: `/v1/rollbacks/${ra.id}/approve`, headers: s.admin, payload: { by: 'alice', comment: 'ok' } });
  t.equal(ap.statusCode, 200);
  await s.engine.idle();
  t.equal(s.action.executed.length, 1);
  const rj = await s.app.inject({ method: 'POST', url: `/v1/rollbacks/${rb.id}/reject`, headers: s.admin, payload: { by: 'bob' } });
  t.equal(rj.json().state, 'rejected');
  const twice = await s.app.inject({ method: 'POST', url: `/v1/rollbacks/${rb.id}/approve`, headers: s.admin, payload: {} });
  t.equal(twice.statusCode, 409);
  t.equal((await s.app.inject({ method: 'POST', url: '/v1/rollbacks/rb-nope/approve', headers: s.admin, payload: {} })).statusCode, 404);
  t.equal(s.action.executed.length, 1);
});

t.test('approve while paused: 409 naming the pause, the record unchanged (still pending approval)', async (t) => {
  const s = await setup();
  await s.deliver(firing('HighLatency', 'a'));
  const [rec] = (await s.app.inject('/v1/rollbacks?state=pending_approval')).json().rollbacks;
  await s.app.inject({ method: 'POST', url: '/v1/pause', headers: s.admin, payload: { by: 'sre-oncall', reason: 'incident 42' } });
  const before = (await s.app.inject(`/v1/rollbacks/${rec.id}`)).json();
  const r = await s.app.inject({ method: 'POST', url: `/v1/rollbacks/${rec.id}/approve`, headers: s.admin, payload: { by: 'alice' } });
  await s.engine.idle();
  t.equal(r.statusCode, 409);
  t.equal(r.json().message, `rollguard is paused (by sre-oncall: incident 42): rollback ${rec.id} stays pending approval (its approval is due by ${new Date(rec.dueAt).toISOString()}); approve it after POST /v1/resume`);
  t.same((await s.app.inject(`/v1/rollbacks/${rec.id}`)).json(), before, 'the record is unchanged');
  t.equal(s.action.executed.length, 0);
});

t.test('resume-gitops over the API: `reverted` must be rollback ids (400 naming the field, nothing changed); approve takes no `reverted`', async (t) => {
  const s = await setup();
  await s.deliver(firing('HighLatency', 'a'));
  const [rec] = (await s.app.inject('/v1/rollbacks')).json().rollbacks;
  const before = (await s.app.inject(`/v1/rollbacks/${rec.id}`)).json();
  const bad = await s.app.inject({ method: 'POST', url: `/v1/rollbacks/${rec.id}/resume-gitops`, headers: s.admin, payload: { by: 'alice', reverted: ['rb-ok', 'checkout'] } });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().message, /body\.reverted\.1: expected a rollback id/);
  const approve = await s.app.inject({ method: 'POST', url: `/v1/rollbacks/${rec.id}/approve`, headers: s.admin, payload: { reverted: ['rb-ok'] } });
  t.equal(approve.statusCode, 400, 'approve refuses a field it does not take');
  const none = await s.app.inject({ method: 'POST', url: `/v1/rollbacks/${rec.id}/resume-gitops`, headers: s.admin, payload: { by: 'alice', reverted: ['rb-ok'] } });
  t.equal(none.statusCode, 409);
  t.match(none.json().message, /suspended no GitOps owner/);
  t.same((await s.app.inject(`/v1/rollbacks/${rec.id}`)).json(), before, 'the record is unchanged');
});

t.test('approve or reject after the approval expired, before the scheduler closed it: 409 saying so, closed expired, nothing run', async (t) => {
  let offset = 0;
  const s = await setup({}, () => Date.now() + offset);
  await s.deliver(firing('HighLatency', 'a'));
  await s.deliver(firing('HighLatency', 'b'));
  const [rb, ra] = (await s.app.inject('/v1/rollbacks?state=pending_approval')).json().rollbacks;
  offset += 11 * 60_000; // the rule's approval expiresAfter is 10m; no scheduler tick has run
  for (const [verb, rec] of [['approve', ra], ['reject', rb]] as const) {
    const r = await s.app.inject({ method: 'POST', url: `/v1/rollbacks/${rec.id}/${verb}`, headers: s.admin, payload: { by: 'alice' } });
    await s.engine.idle();
    t.equal(r.statusCode, 409, verb);
    t.equal(r.json().message, `rollback ${rec.id} expired: its approval was due by ${new Date(rec.dueAt).toISOString()}; it is closed expired and nothing was run`, verb);
    const after = (await s.app.inject(`/v1/rollbacks/${rec.id}`)).json();
    t.equal(after.state, 'expired', `${verb}: closed expired`);
    t.notOk(after.approval, `${verb}: no answer recorded`);
    t.notOk(after.timeline.some((x: { step: string }) => x.step === 'approved' || x.step === 'rejected'), `${verb}: no answer in the timeline`);
  }
  t.equal(s.action.executed.length, 0, 'nothing executed');
  const again = await s.app.inject({ method: 'POST', url: `/v1/rollbacks/${ra.id}/approve`, headers: s.admin, payload: {} });
  t.equal(again.statusCode, 409);
  t.equal(again.json().message, `rollback ${ra.id} is expired, not pending approval`);
});

t.test('POST /-/reload: a broken file keeps the last good rules (422), a good one applies', async (t) => {
  const s = await setup();
  writeFileSync(join(s.dir, 'rules.yaml'), 'rules:\n  - name: broken\n    priority: P9\n');
  const bad = await s.app.inject({ method: 'POST', url: '/-/reload', headers: s.admin });
  t.equal(bad.statusCode, 422);
  t.match(bad.json().error, /rules\.yaml:\d+/);
  t.equal(s.holder.rules.rules.length, 4, 'the last good rules stay in force');
  writeFileSync(join(s.dir, 'rules.yaml'), RULES.replace('name: minor', 'name: minor-renamed'));
  const good = await s.app.inject({ method: 'POST', url: '/-/reload', headers: s.admin });
  t.same(good.json(), { ok: true, rules: 4 });
  t.ok(s.holder.rules.rules.some((r) => r.name === 'minor-renamed'));
});

t.test('the OpenAPI document covers every route', async (t) => {
  const s = await setup();
  const doc = (await s.app.inject('/openapi.json')).json();
  for (const p of ['/v1/alerts', '/v1/rollbacks', '/v1/rollbacks/{id}', '/v1/rollbacks/{id}/report', '/v1/rollbacks/{id}/approve', '/v1/rollbacks/{id}/reject', '/v1/pause', '/v1/resume', '/-/reload', '/healthz', '/readyz', '/metrics']) {
    t.ok(doc.paths[p], p);
  }
});
