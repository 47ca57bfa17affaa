import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { announceAuth, openLiveWebhook } from '../../../src/http/auth.js';
import { controlRoutes } from '../../../src/http/control.js';
import { rollbacksRoutes } from '../../../src/http/rollbacks.js';
import { fixture, postAlerts, WEBHOOK_TOKEN } from '../../support/app.js';
import { firing, testEngine } from '../../support/engine.js';
import { logLines } from '../../support/log-lines.js';

const READ = 'read-secret-token';
const ADMIN = 'admin-secret-token';
const payload = fixture('alertmanager/firing-two-alerts.json');

function tokenFile(content: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'rg-auth-')), 'token');
  writeFileSync(file, content);
  return file;
}

/** The whole API (webhook, records, control) on an in-memory engine, logging into `lines`. */
function api(env: Record<string, string>) {
  const e = testEngine({ env });
  const { logger, lines } = logLines();
  const app = buildApp({ config: e.config, store: e.store, metrics: e.metrics, logger, routes: [rollbacksRoutes(e.engine), controlRoutes({ reload: async () => ({ ok: true, rules: 0, files: [], trigger: 'api' }) })] });
  return { ...e, app, lines };
}

t.test('an empty or whitespace-only WEBHOOK_TOKEN_FILE denies every webhook, with an error naming the file', async (t) => {
  for (const content of ['', ' \n\t\n', ',\n']) {
    const file = tokenFile(content);
    const s = api({ WEBHOOK_TOKEN_FILE: file });
    for (const authorization of ['', 'Bearer ', 'Bearer anything']) {
      const r = await postAlerts(s.app, payload, { authorization });
      t.equal(r.statusCode, 401, `${JSON.stringify(content)} / ${JSON.stringify(authorization)}`);
      t.equal(r.json().error, 'unauthorized');
    }
    t.equal(await s.store.queueDepth(), 0, 'nothing queued');
    const errors = s.lines.filter((l) => l.level === 50);
    t.equal(errors.length, 1, 'one error line, not one per request');
    t.match(String(errors[0]!.msg), `WEBHOOK_TOKEN_FILE ${file} is empty`);

    writeFileSync(file, 'now-a-token\n');
    t.equal((await postAlerts(s.app, payload, { authorization: 'Bearer now-a-token' })).statusCode, 200, 'a token written into the file works without a restart');
  }
});

t.test('an unreadable WEBHOOK_TOKEN_FILE denies too, even beside WEBHOOK_TOKEN', async (t) => {
  const s = api({ WEBHOOK_TOKEN, WEBHOOK_TOKEN_FILE: '/nonexistent/rollguard/token' });
  t.equal((await postAlerts(s.app, payload)).statusCode, 401);
  t.match(String(s.lines.find((l) => l.level === 50)?.msg), 'WEBHOOK_TOKEN_FILE /nonexistent/rollguard/token cannot be read (ENOENT)');
});

t.test('WEBHOOK_BASIC_PASSWORD is one password, commas and all: the whole is accepted, no piece of it', async (t) => {
  const s = api({ WEBHOOK_BASIC_USER: 'am', WEBHOOK_BASIC_PASSWORD: 'Xk9#q,7' });
  const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
  t.equal((await postAlerts(s.app, payload, { authorization: basic('am', 'Xk9#q,7') })).statusCode, 200, 'the password as set');
  for (const piece of ['7', 'Xk9#q', 'Xk9#q7']) {
    t.equal((await postAlerts(s.app, payload, { authorization: basic('am', piece) })).statusCode, 401, `not ${JSON.stringify(piece)}`);
  }
  t.equal((await postAlerts(s.app, payload, { authorization: basic('am', '') })).statusCode, 401, 'not an empty password');
  const comma = api({ WEBHOOK_BASIC_USER: 'am', WEBHOOK_BASIC_PASSWORD: ',' });
  t.equal((await postAlerts(comma.app, payload, { authorization: basic('am', ',') })).statusCode, 200, 'a comma alone is a password too');
  t.equal((await postAlerts(comma.app, payload, { authorization: basic('am', '') })).statusCode, 401);
});

t.test('the admin API shares the code: an empty ADMIN_TOKEN_FILE refuses (401) with the same error; unset it is off (403)', async (t) => {
  const file = tokenFile('\n');
  const s = api({ ADMIN_TOKEN_FILE: file });
  const r = await s.app.inject({ method: 'POST', url: '/v1/pause', payload: {}, headers: { authorization: 'Bearer x' } });
  t.equal(r.statusCode, 401);
  t.match(String(s.lines.find((l) => l.level === 50)?.msg), `ADMIN_TOKEN_FILE ${file} is empty`);
  const off = api({});
  t.equal((await off.app.inject({ method: 'POST', url: '/v1/pause', payload: {} })).statusCode, 403);
});

t.test('with READ_TOKEN set, the records, reports and pause state need the read or the admin token', async (t) => {
  const s = api({ WEBHOOK_TOKEN, ADMIN_TOKEN: ADMIN, READ_TOKEN: READ });
  await s.deliver(firing('HighErrorRate'));
  const id = (await s.engine.records.list({ limit: 1 }))[0]!.id;
  const reads = ['/v1/rollbacks', `/v1/rollbacks/${id}`, `/v1/rollbacks/${id}/report`, '/v1/pause'];
  for (const url of reads) {
    const none = await s.app.inject(url);
    t.equal(none.statusCode, 401, `${url} without a token`);
    t.match(none.headers['www-authenticate'], /Bearer realm="rollguard-read"/);
    t.equal((await s.app.inject({ url, headers: { authorization: `Bearer ${WEBHOOK_TOKEN}` } })).statusCode, 401, `${url}: the webhook token does not read`);
    t.equal((await s.app.inject({ url, headers: { authorization: `Bearer ${READ}` } })).statusCode, 200, `${url} with the read token`);
    t.equal((await s.app.inject({ url, headers: { authorization: `Bearer ${ADMIN}` } })).statusCode, 200, `${url}: the admin token reads`);
  }
  t.equal((await s.app.inject({ method: 'POST', url: '/v1/pause', payload: {}, headers: { authorization: `Bearer ${READ}` } })).statusCode, 401, 'the read token does not write');
  for (const url of ['/healthz', '/readyz', '/metrics', '/openapi.json']) t.equal((await s.app.inject(url)).statusCode, 200, `${url} stays open`);

  const doc = (await s.app.inject('/openapi.json')).json();
  t.same(doc.paths['/v1/rollbacks'].get.security, [{ readBearer: [] }, { adminBearer: [] }]);
  t.ok(doc.paths['/v1/rollbacks'].get.responses['401']);
});

t.test('READ_TOKEN_FILE: rotation without restart; empty, only the admin token reads', async (t) => {
  const file = tokenFile('r1\n');
  const s = api({ ADMIN_TOKEN: ADMIN, READ_TOKEN_FILE: file });
  t.equal((await s.app.inject({ url: '/v1/rollbacks', headers: { authorization: 'Bearer r1' } })).statusCode, 200);
  writeFileSync(file, 'r2\n');
  t.equal((await s.app.inject({ url: '/v1/rollbacks', headers: { authorization: 'Bearer r1' } })).statusCode, 401);
  t.equal((await s.app.inject({ url: '/v1/rollbacks', headers: { authorization: 'Bearer r2' } })).statusCode, 200);
  writeFileSync(file, '');
  t.equal((await s.app.inject('/v1/rollbacks')).statusCode, 401, 'an empty read token file does not open reads');
  t.equal((await s.app.inject({ url: '/v1/rollbacks', headers: { authorization: `Bearer ${ADMIN}` } })).statusCode, 200, 'the admin token still reads');
  t.match(String(s.lines.find((l) => l.level === 50)?.msg), `READ_TOKEN_FILE ${file} is empty`);
});

t.test('without a read token, reads stay open (the embedded default)', async (t) => {
  const s = api({ ADMIN_TOKEN: ADMIN });
  t.equal((await s.app.inject('/v1/rollbacks')).statusCode, 200);
  t.equal((await s.app.inject('/v1/pause')).statusCode, 200);
});

t.test('start-up says when the webhook or the reads are open, naming the setting to set', async (t) => {
  const open = logLines();
  announceAuth(loadConfig({}), open.logger);
  const warns = open.lines.filter((l) => l.level === 40).map((l) => String(l.msg));
  t.match(warns.find((m) => m.startsWith('the webhook is open')), /WEBHOOK_TOKEN/);
  t.match(warns.find((m) => m.startsWith('reads are open')), /READ_TOKEN/);

  const closed = logLines();
  announceAuth(loadConfig({ WEBHOOK_TOKEN, READ_TOKEN: READ, ADMIN_TOKEN: ADMIN }), closed.logger);
  t.same(closed.lines.filter((l) => (l.level as number) >= 40), [], 'nothing to warn about');

  const broken = logLines();
  const file = tokenFile('  ');
  announceAuth(loadConfig({ WEBHOOK_TOKEN_FILE: file }), broken.logger);
  t.match(String(broken.lines.find((l) => l.level === 50)?.msg), `WEBHOOK_TOKEN_FILE ${file} is empty`);
  t.notOk(broken.lines.some((l) => String(l.msg).startsWith('the webhook is open')), 'a broken file is not an open webhook');
});

t.test('start-up logs an error when token files share a token with each other or with a setting, naming both and never the token', async (t) => {
  const shared = logLines();
  announceAuth(loadConfig({ WEBHOOK_TOKEN_FILE: tokenFile('wh-1\nshared-tok\n'), ADMIN_TOKEN: 'shared-tok' }), shared.logger);
  const err = shared.lines.filter((l) => l.level === 50).map((l) => String(l.msg));
  t.match(err.join('\n'), 'WEBHOOK_TOKEN(_FILE) and ADMIN_TOKEN share a token: its holder gets both credentials\' rights; give each credential its own token');
  t.notMatch(JSON.stringify(shared.lines), /shared-tok/, 'the token is not logged');

  const apart = logLines();
  announceAuth(loadConfig({ WEBHOOK_TOKEN_FILE: tokenFile('wh-1\n'), READ_TOKEN_FILE: tokenFile('rd-1'), ADMIN_TOKEN: 'adm-1' }), apart.logger);
  t.same(apart.lines.filter((l) => (l.level as number) >= 50), [], 'distinct tokens: no error');

  const password = logLines();
  announceAuth(loadConfig({ ADMIN_TOKEN_FILE: tokenFile('pw-shared\n'), WEBHOOK_BASIC_USER: 'am', WEBHOOK_BASIC_PASSWORD: 'pw-shared' }), password.logger);
  t.match(password.lines.filter((l) => l.level === 50).map((l) => String(l.msg)).join('\n'), 'ADMIN_TOKEN(_FILE) and WEBHOOK_BASIC_PASSWORD share a token', "the webhook's password in a token file: said at start-up");
  t.notMatch(JSON.stringify(password.lines), /pw-shared/, 'the password is not logged');
});

t.test('openLiveWebhook: an open webhook is refused only in front of real rollbacks, unless on purpose', async (t) => {
  const refused = (env: Record<string, string>) => openLiveWebhook(loadConfig(env));
  t.match(refused({ KUBECONFIG: '/etc/kc' }), /the webhook has no credential .* rollbacks are real \(a cluster through KUBECONFIG \(\/etc\/kc\), DRY_RUN=false\)/);
  t.match(refused({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }), /the pod's ServiceAccount \(KUBERNETES_SERVICE_HOST\)/);
  // a token list of separators only no longer loads at all (test/unit/config.test.ts): it is no credential, never an open webhook
  t.throws(() => loadConfig({ KUBECONFIG: '/etc/kc', WEBHOOK_TOKEN: ',' }), /WEBHOOK_TOKEN \(--webhook-token\): holds no token/);
  for (const [why, env] of [
    ['no cluster: dry-run', {}],
    ['DRY_RUN=true', { KUBECONFIG: '/etc/kc', DRY_RUN: 'true' }],
    ['on purpose', { KUBECONFIG: '/etc/kc', WEBHOOK_ALLOW_UNAUTHENTICATED: 'true' }],
    ['a token', { KUBECONFIG: '/etc/kc', WEBHOOK_TOKEN: 'x'.repeat(32) }],
    ['a token file (an empty one refuses every request instead)', { KUBECONFIG: '/etc/kc', WEBHOOK_TOKEN_FILE: '/nonexistent' }],
    ['basic auth', { KUBECONFIG: '/etc/kc', WEBHOOK_BASIC_USER: 'am', WEBHOOK_BASIC_PASSWORD: 'pw' }],
    ['no cluster and DRY_RUN=false: every rollback is refused anyway', { DRY_RUN: 'false' }],
  ] as const) {
    t.equal(refused(env), undefined, why);
  }
});
