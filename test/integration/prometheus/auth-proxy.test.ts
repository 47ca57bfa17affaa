// A real Prometheus behind a real proxy that requires basic auth (a small node:http reverse
// proxy, as an oauth2-proxy or an nginx with auth_basic would be): an answer that is an error
// (401 without or with wrong credentials, 413 from a body limit) is not "Prometheus is down", so
// a P0 rule whose onPrometheusDown is `act` holds and escalates (a log line, the escalation
// metric, a notification, once per record) instead of rolling back; a
// PROMETHEUS_URL carrying user:password reaches Prometheus through the proxy, and the password is
// in no record, report, notification, metric or log line.
import t from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Alert } from '../../../src/alertmanager/alert.js';
import { loadConfig } from '../../../src/config.js';
import { Engine } from '../../../src/engine/pipeline.js';
import { incidentReport } from '../../../src/engine/report.js';
import { createMetrics } from '../../../src/metrics.js';
import { Notifications } from '../../../src/notify/notifier.js';
import { PrometheusClient } from '../../../src/prometheus/client.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { CapturingNotifier, FakeDeploymentAction, rules } from '../../support/engine.js';
import { errorRateSeries, startPrometheus } from '../../support/prometheus.js';

const T0 = Date.UTC(2026, 9, 1, 12, 0);
// the real Prometheus: 20% errors in namespace "prod" for three hours from T0
const prom = await startPrometheus(t, errorRateSeries(T0));

const USER = 'rollguard';
const PASSWORD = 'pr0m-S3cret:with/odd@chars';

/** The proxy: basic auth required, bodies over `maxBody` bytes answered 413, the rest forwarded. */
async function startAuthProxy(upstream: string, maxBody = 64 * 1024) {
  const up = new URL(upstream);
  const expected = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
  const seen: { auth: string | undefined; status: number }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const answer = (status: number, text: string, headers: Record<string, string> = {}) => {
        seen.push({ auth: req.headers.authorization, status });
        res.writeHead(status, { 'content-type': 'text/html', ...headers });
        res.end(text);
      };
      if (req.headers.authorization !== expected) return answer(401, '<html><body>401 Authorization Required</body></html>', { 'www-authenticate': 'Basic realm="prometheus"' });
      if (body.length > maxBody) return answer(413, '<html><body>413 Request Entity Too Large</body></html>');
      const headers = { ...req.headers, host: up.host };
      delete headers.authorization;
      const fwd = http.request({ host: up.hostname, port: up.port, path: req.url, method: req.method, headers }, (ur) => {
        seen.push({ auth: req.headers.authorization, status: ur.statusCode ?? 0 });
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      });
      fwd.on('error', () => answer(502, 'bad gateway'));
      fwd.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    withCredentials: `http://${encodeURIComponent(USER)}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

const RULES = `
rules:
  - name: act
    match: ['alertname="P0Errors"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P0
    onPrometheusDown: act
`;

/** An engine 90 minutes into the backfilled window, logging everything (debug) into `lines`. */
function engineWith(url: string) {
  const offset = Date.now() - (T0 + 90 * 60_000);
  let jump = 0;
  const now = () => Date.now() - offset + jump;
  const lines: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
  const logger = pino({ level: 'debug' }, sink);
  const config = loadConfig({ DRY_RUN: 'false', LOCK_TTL: '10s', RECOVERY_TIMEOUT: '2s', RECOVERY_POLL: '300ms', BUDGET_CLUSTER_PER_HOUR: '100', PROMETHEUS_URL: url });
  const metrics = createMetrics({ defaults: false });
  const notifier = new CapturingNotifier();
  const notifications = new Notifications([notifier], logger, metrics);
  const action = new FakeDeploymentAction();
  action.createdAt = now() - 10 * 60_000;
  const prometheus = new PrometheusClient({ url: config.PROMETHEUS_URL!, timeoutMs: 5000, metrics });
  const engine = new Engine({ config, store: new MemoryStore(now), metrics, logger, rules: { rules: rules(RULES) }, prometheus, kube: null, actions: { Deployment: action }, notifications, owner: 'auth-proxy', now });
  let n = 0;
  const alert = (deployment: string): Alert => ({ fingerprint: `fp-${deployment}`, status: 'firing', labels: { alertname: 'P0Errors', namespace: 'prod', deployment }, annotations: {}, startsAt: now() - 3 * 60_000, generatorURL: '', receiver: 'rollguard', groupKey: 'g', externalURL: '', receivedAt: now() });
  return {
    engine, action, metrics, notifier, notifications, lines,
    deliver: (deployment: string) => engine.handle({ id: `ev-${++n}`, alert: alert(deployment), deliveries: 1 }).finally(() => engine.idle()),
    record: async (deployment: string) => (await engine.records.list({ target: `Deployment/prod/${deployment}` }))[0]!,
    later: (ms: number) => { jump += ms; },
    now,
  };
}

t.test('the proxy answers 401 (no credentials, wrong ones) or 413: the P0 rule holds and escalates, nothing is rolled back', async (t) => {
  const proxy = await startAuthProxy(prom.url);
  t.teardown(proxy.close);
  const tight = await startAuthProxy(prom.url, 16);
  t.teardown(tight.close);
  for (const [name, url, status] of [
    ['no credentials', proxy.url, 401],
    ['a wrong password', proxy.withCredentials.replace(encodeURIComponent(PASSWORD), 'not-the-password'), 401],
    ['a body limit', tight.withCredentials, 413],
  ] as const) {
    const e = engineWith(url);
    await e.deliver('web');
    const rec = await e.record('web');
    t.equal(rec.confirmation?.outcome, 'error', `${name}: the confirmation is an error: ${rec.confirmation?.reason}`);
    t.match(rec.confirmation?.reason, new RegExp(`answered HTTP ${status}`));
    t.equal(rec.decision?.decision, 'hold', `${name}: decision hold, not rollback_now (onPrometheusDown: act is for Prometheus down, not for an error answer)`);
    t.equal(rec.state, 'held');
    t.equal(e.action.executed.length, 0, `${name}: nothing rolled back`);
    t.match(rec.decision?.reason, /never acting unconfirmed/);
    t.match(await e.metrics.registry.metrics(), /rollguard_prometheus_queries_total\{outcome="error"\} 1/, `${name}: counted as an error answer`);
    t.notMatch(await e.metrics.registry.metrics(), /outcome="unreachable"/, `${name}: not as Prometheus down`);
    for (const l of e.lines) t.notMatch(l, PASSWORD, 'no log line holds the password');
    // escalated: a log line, the escalation metric, a notification
    await e.notifications.flush();
    const logged = e.lines.map((l) => JSON.parse(l) as { level: number; msg: string; reason?: string }).filter((l) => l.msg === 'trigger could not be evaluated: held, escalated');
    t.equal(logged.length, 1, `${name}: an error log line`);
    t.equal(logged[0]?.level, 50);
    t.match(logged[0]?.reason, new RegExp(`HTTP ${status}`));
    t.match(await e.metrics.registry.metrics(), /rollguard_escalations_total\{reason="trigger_error"\} 1/, `${name}: rollguard_escalations_total{reason="trigger_error"}`);
    const sent = e.notifier.sent.filter((n) => n.kind === 'trigger_error');
    t.equal(sent.length, 1, `${name}: a notification`);
    t.equal(sent[0]?.severity, 'critical');
    t.match(sent[0]?.title, /Rollback of Deployment\/prod\/web held: its trigger could not be checked/);
    t.match(sent[0]?.lines.join(' '), new RegExp(`HTTP ${status}`));

    // Still refused at the due time: held again, still not acted on
    e.later(rec.dueAt! - e.now() + 1000);
    await e.engine.tick();
    const again = await e.record('web');
    t.equal(again.state, 'held', `${name}: held again at its due time`);
    t.equal(e.action.executed.length, 0);
    await e.notifications.flush();
    t.equal(e.notifier.sent.filter((n) => n.kind === 'trigger_error').length, 1, `${name}: escalated once, not at every re-check`);
    t.match(await e.metrics.registry.metrics(), /rollguard_escalations_total\{reason="trigger_error"\} 1/);
  }
  t.ok(proxy.seen.some((s) => s.status === 401 && s.auth === undefined), 'the proxy saw a request without credentials and refused it');
  t.ok(tight.seen.some((s) => s.status === 413), 'the tight proxy answered 413');
});

t.test('PROMETHEUS_URL with user:password: the proxy lets the queries through; the password is in no record, report, notification, metric or log line', async (t) => {
  const proxy = await startAuthProxy(prom.url);
  t.teardown(proxy.close);
  t.equal((await fetch(`${proxy.url}/api/v1/query?query=up`)).status, 401, 'the proxy really requires credentials');
  const probes = proxy.seen.length;
  const e = engineWith(proxy.withCredentials);
  await e.deliver('web');
  const rec = await e.record('web');
  t.equal(rec.confirmation?.outcome, 'confirmed', `confirmed through the proxy: ${rec.confirmation?.reason}`);
  t.equal(e.action.executed.length, 1, 'rolled back once, on a confirmed trigger');
  const queries = proxy.seen.slice(probes);
  t.ok(queries.length > 0 && queries.every((s) => s.status === 200 && s.auth?.startsWith('Basic ')), `every query (${queries.length}) went through the proxy with basic auth`);

  // and once the proxy refuses (the password rotated there, not here): the reason names the URL, redacted
  await proxy.close();
  const down = engineWith(proxy.withCredentials);
  await down.deliver('api');
  const downRec = await down.record('api');
  t.equal(downRec.confirmation?.outcome, 'prometheus_down', 'proxy gone: Prometheus down');
  t.match(downRec.confirmation?.reason, /Prometheus at http:\/\/\*\*\*@127\.0\.0\.1:\d+ unreachable/, 'the URL printed without its credentials');

  await e.notifications.flush();
  await down.notifications.flush();
  const everything = [
    JSON.stringify(await e.engine.records.list({})),
    JSON.stringify(await down.engine.records.list({})),
    incidentReport(rec),
    incidentReport(downRec),
    JSON.stringify(e.notifier.sent),
    JSON.stringify(down.notifier.sent),
    await e.metrics.registry.metrics(),
    await down.metrics.registry.metrics(),
    ...e.lines,
    ...down.lines,
  ];
  t.ok(e.notifier.sent.length > 0 && down.notifier.sent.length > 0 && e.lines.length > 0, 'there were notifications and log lines to look at');
  for (const text of everything) {
    t.notOk(text.includes(PASSWORD) || text.includes(encodeURIComponent(PASSWORD)), 'the password appears nowhere');
    t.notOk(text.includes(`${USER}:`), 'nor the user:password pair');
  }
});
