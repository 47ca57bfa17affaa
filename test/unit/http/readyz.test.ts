// /readyz needs no credential (the kubelet's probe sends none): its status code says ready or not to
// anyone, a failing check's reason (Redis' address, the rule files' paths) only to a reader, and
// always to the log.
import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import type { Store } from '../../../src/store/store.js';
import { ADMIN_TOKEN, testApp } from '../../support/app.js';
import { logLines } from '../../support/log-lines.js';

const READ_TOKEN = 'read-secret-token';
const STORE_ERROR = 'connect ECONNREFUSED 10.12.7.31:6379 (redis-master.infra.svc)';
const RULES_ERROR = 'no rules loaded: RULES_PATH is /etc/rollguard/rules; files read: /etc/rollguard/rules/prod.yaml';

function notReady(env: Record<string, string>) {
  const store = Object.assign(new MemoryStore(), { ping: async () => { throw new Error(STORE_ERROR); } }) as Store;
  const log = logLines();
  const { app } = testApp({ env, store, deps: { logger: log.logger, readiness: { rules: () => { throw new Error(RULES_ERROR); } } } });
  return { app, lines: log.lines };
}

t.test('with READ_TOKEN set: 503 and the failing checks named to anyone, their reasons only to a reader, and in the log', async (t) => {
  const { app, lines } = notReady({ READ_TOKEN });
  for (const authorization of [undefined, 'Bearer wrong-token', 'Basic eDp5']) {
    const res = await app.inject({ url: '/readyz', headers: authorization ? { authorization } : {} });
    t.equal(res.statusCode, 503, `${authorization ?? 'no credential'}: not ready, never 401 (the probe only needs the code)`);
    t.same(res.json(), { ready: false, checks: { store: 'failing', rules: 'failing' } });
    t.notMatch(res.body, /10\.12\.7\.31|redis-master|\/etc\/rollguard/, 'no address, no path');
  }
  for (const token of [READ_TOKEN, ADMIN_TOKEN]) {
    const res = await app.inject({ url: '/readyz', headers: { authorization: `Bearer ${token}` } });
    t.equal(res.statusCode, 503);
    t.same(res.json(), { ready: false, checks: { store: STORE_ERROR, rules: RULES_ERROR } }, 'a reader gets the reasons');
  }
  const warned = lines.filter((l) => l.level === 40 && typeof l.check === 'string');
  t.same(warned.map((l) => [l.check, l.reason]).sort(), [['rules', RULES_ERROR], ['store', STORE_ERROR]], 'each reason logged once, not on every probe');
});

t.test('with reads open (no READ_TOKEN, the embedded default), the reasons are given as the records are', async (t) => {
  const { app } = notReady({});
  const res = await app.inject('/readyz');
  t.equal(res.statusCode, 503);
  t.same(res.json(), { ready: false, checks: { store: STORE_ERROR, rules: RULES_ERROR } });
});

t.test('ready: 200 with every check ok, whoever asks', async (t) => {
  const { app } = testApp({ env: { READ_TOKEN } });
  const res = await app.inject('/readyz');
  t.equal(res.statusCode, 200);
  t.same(res.json(), { ready: true, checks: { store: 'ok' } });
});
