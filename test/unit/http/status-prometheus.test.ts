// /v1/status's Prometheus check measures Prometheus, not rollguard's own line of queries: with
// every PROMETHEUS_MAX_CONCURRENT place taken by a storm's queries, the check is still sent at once.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { statusRoutes } from '../../../src/http/status.js';
import { PrometheusClient } from '../../../src/prometheus/client.js';
import { ADMIN_TOKEN } from '../../support/app.js';
import { testEngine } from '../../support/engine.js';

t.test("the status page's Prometheus check does not wait behind the alerts' queries", async (t) => {
  const held: ServerResponse[] = [];
  const seen: string[] = [];
  let holding = true;
  const ok = (res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [{ metric: {}, value: [1, '1'] }] } }));
  };
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const q = new URLSearchParams(body).get('query') ?? '';
      seen.push(q);
      if (q === 'vector(1)' || !holding) ok(res);
      else held.push(res); // the storm's queries: held
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    srv.closeAllConnections();
    srv.close();
  });
  const prometheus = new PrometheusClient({ url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, maxConcurrent: 1, timeoutMs: 30_000 });
  const storm = [prometheus.query('storm0', Date.now(), { precedence: 1 }), prometheus.query('storm1', Date.now(), { precedence: 1 })];
  const end = Date.now() + 5000;
  while (held.length < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  t.equal(held.length, 1, 'the only place is taken, another query waits');

  const e = testEngine({ env: { ADMIN_TOKEN } });
  const app = buildApp({ config: e.config, store: e.store, metrics: e.metrics, logger: false, routes: [statusRoutes({ engine: e.engine, prometheus, rules: () => 0, version: 'test', dryRun: true })] });
  t.teardown(() => app.close());
  const res = await app.inject({ method: 'GET', url: '/v1/status', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  t.equal(res.statusCode, 200);
  t.same(res.json().prometheus, { configured: true, ok: true, detail: 'ok' }, 'Prometheus answers: the status says so');
  t.same(seen, ['storm0', 'vector(1)'], 'the check went past the query waiting its turn');
  holding = false;
  for (const r of held) ok(r);
  await Promise.all(storm);
  t.same(seen, ['storm0', 'vector(1)', 'storm1'], 'the one waiting was sent once the place was free');
});
