import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createMetrics } from '../../../src/metrics.js';
import { PrometheusClient, PrometheusQueryError, PrometheusUnavailableError } from '../../../src/prometheus/client.js';
import { redactUrl } from '../../../src/redact.js';
import { freePort } from '../../../src/prometheus/local.js';

async function stub(handler: (req: IncomingMessage, body: string, res: ServerResponse) => void) {
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => handler(req, body, res));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  return { url, close: () => new Promise<void>((r) => srv.close(() => r())) };
}

const json = (res: ServerResponse, code: number, obj: unknown) => {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(obj));
};

t.test('query_range: form-encoded POST, seconds on the wire, ms and numbers out', async (t) => {
  let seen: URLSearchParams | undefined;
  let path = '';
  const s = await stub((req, body, res) => {
    path = req.url ?? '';
    seen = new URLSearchParams(body);
    json(res, 200, { status: 'success', data: { resultType: 'matrix', result: [{ metric: { pod: 'a' }, values: [[1700000000, '0.5'], [1700000015.5, 'NaN'], [1700000030, '+Inf']] }] } });
  });
  t.teardown(s.close);
  const m = createMetrics({ defaults: false });
  const c = new PrometheusClient({ url: s.url + '/prom/', metrics: m });
  const r = await c.queryRange('up', 1_700_000_000_000, 1_700_000_060_000, 15_000);
  t.equal(path, '/prom/api/v1/query_range');
  t.equal(seen?.get('query'), 'up');
  t.equal(seen?.get('start'), '1700000000.000');
  t.equal(seen?.get('step'), '15');
  t.same(r[0]!.labels, { pod: 'a' });
  t.equal(r[0]!.samples[0]!.t, 1_700_000_000_000);
  t.equal(r[0]!.samples[1]!.t, 1_700_000_015_500);
  t.ok(Number.isNaN(r[0]!.samples[1]!.v));
  t.equal(r[0]!.samples[2]!.v, Infinity);
  t.match(await m.registry.metrics(), /rollguard_prometheus_queries_total\{outcome="ok"\} 1/);
});

t.test('instant query: vector and scalar', async (t) => {
  const s = await stub((_req, body, res) => {
    const q = new URLSearchParams(body).get('query');
    if (q === 'scalar(1)') json(res, 200, { status: 'success', data: { resultType: 'scalar', result: [1700000000, '1'] } });
    else json(res, 200, { status: 'success', data: { resultType: 'vector', result: [{ metric: {}, value: [1700000000, '42'] }] } });
  });
  t.teardown(s.close);
  const c = new PrometheusClient({ url: s.url });
  t.same(await c.query('x', 1_700_000_000_000), [{ labels: {}, t: 1_700_000_000_000, v: 42 }]);
  t.same(await c.query('scalar(1)', 1_700_000_000_000), [{ labels: {}, t: 1_700_000_000_000, v: 1 }]);
});

t.test('a bad query is a PrometheusQueryError, not "down"', async (t) => {
  const s = await stub((_req, _body, res) => json(res, 400, { status: 'error', errorType: 'bad_data', error: 'parse error: unexpected }' }));
  t.teardown(s.close);
  const m = createMetrics({ defaults: false });
  const c = new PrometheusClient({ url: s.url, metrics: m });
  const e = await c.query('sum(', 0).catch((x) => x);
  t.type(e, PrometheusQueryError);
  t.equal(e.errorType, 'bad_data');
  t.match(e.message, /parse error/);
  t.match(await m.registry.metrics(), /outcome="error"\} 1/);
});

t.test('answers that are errors (401, 403, 413, other 4xx, a redirect, a page that is not the API) are PrometheusQueryError, not "down"', async (t) => {
  const m = createMetrics({ defaults: false });
  const cases: [number, string, Record<string, string>, RegExp][] = [
    [401, 'Unauthorized', { 'www-authenticate': 'Basic realm="prometheus"' }, /HTTP 401: not authorized; check the credentials in PROMETHEUS_URL/],
    [403, 'Forbidden', {}, /HTTP 403: not authorized/],
    [413, '<html>Request Entity Too Large</html>', { 'content-type': 'text/html' }, /HTTP 413, not the API's JSON: <html>Request Entity Too Large/],
    [404, 'not found', {}, /HTTP 404, not the API's JSON: not found/],
    [302, '', { location: 'https://sso.example.com/login?rd=https%3A%2F%2Fprom&token=t0p' }, /HTTP 302, a redirect to https:\/\/sso\.example\.com\/login \(an auth proxy's login page\?\)/],
    [200, '<html>proxy login</html>', { 'content-type': 'text/html' }, /HTTP 200, not the API's JSON: <html>proxy login/],
  ];
  for (const [code, body, headers, re] of cases) {
    const s = await stub((_req, _body, res) => {
      res.writeHead(code, headers);
      res.end(body);
    });
    const e = await new PrometheusClient({ url: s.url, metrics: m }).query('up', 0).catch((x) => x);
    await s.close();
    t.type(e, PrometheusQueryError, `HTTP ${code}`);
    t.equal(e.errorType, `http_${code}`);
    t.match(e.message, re);
    t.notMatch(e.message, /t0p/, 'a query string of a redirect is not printed');
  }
  t.match(await m.registry.metrics(), /outcome="error"\} 6/);
  t.notMatch(await m.registry.metrics(), /outcome="unreachable"/);
});

t.test('user:password in the URL: a basic-auth header, and the URL printed without them', async (t) => {
  const seen: (string | undefined)[] = [];
  const s = await stub((req, _body, res) => {
    seen.push(req.headers.authorization);
    if (req.headers.authorization !== `Basic ${Buffer.from('rollguard:p@ss:w/rd').toString('base64')}`) {
      res.writeHead(401);
      res.end();
      return;
    }
    json(res, 200, { status: 'success', data: { resultType: 'vector', result: [] } });
  });
  t.teardown(s.close);
  const withCreds = s.url.replace('http://', 'http://rollguard:p%40ss%3Aw%2Frd@') + '/?tenant=a';
  const c = new PrometheusClient({ url: withCreds });
  t.same(await c.query('up', 0), [], 'the proxy accepted the credentials');
  t.equal(c.displayUrl, s.url.replace('http://', 'http://***@'), 'printed without user, password or query');
  const wrong = new PrometheusClient({ url: s.url.replace('http://', 'http://rollguard:wrong-secret@') });
  const e = await wrong.query('up', 0).catch((x) => x);
  t.type(e, PrometheusQueryError);
  t.notMatch(e.message, /wrong-secret|rollguard:/);
  const down = await new PrometheusClient({ url: `http://rollguard:wrong-secret@127.0.0.1:${await freePort()}` }).query('up', 0).catch((x) => x);
  t.type(down, PrometheusUnavailableError);
  t.notMatch(down.message, /wrong-secret/);
  t.match(down.message, /Prometheus at http:\/\/\*\*\*@127\.0\.0\.1:\d+ unreachable/);
  t.equal(redactUrl('https://u:pw@prom.example.com:9090/prefix/?x=1#y', { base: true }), 'https://***@prom.example.com:9090/prefix');
  t.equal(redactUrl('http://prom:9090', { base: true }), 'http://prom:9090');
});

t.test('unreachable, 5xx and timeouts are PrometheusUnavailableError', async (t) => {
  const m = createMetrics({ defaults: false });
  const port = await freePort();
  const refused = await new PrometheusClient({ url: `http://127.0.0.1:${port}`, metrics: m }).query('up', 0).catch((x) => x);
  t.type(refused, PrometheusUnavailableError);
  t.match(refused.message, /ECONNREFUSED/);

  const s503 = await stub((_req, _body, res) => json(res, 503, { status: 'error', error: 'starting up' }));
  t.teardown(s503.close);
  t.type(await new PrometheusClient({ url: s503.url }).query('up', 0).catch((x) => x), PrometheusUnavailableError);

  const s502 = await stub((_req, _body, res) => {
    res.writeHead(502, { 'content-type': 'text/html' });
    res.end('<html>bad gateway</html>');
  });
  t.teardown(s502.close);
  t.type(await new PrometheusClient({ url: s502.url }).query('up', 0).catch((x) => x), PrometheusUnavailableError, "a proxy's 502: down");

  const slow = await stub(() => {
    /* never answers */
  });
  t.teardown(() => {
    void slow.close();
  });
  const started = Date.now();
  const to = await new PrometheusClient({ url: slow.url, timeoutMs: 200, metrics: m }).query('up', 0).catch((x) => x);
  t.type(to, PrometheusUnavailableError);
  t.match(to.message, /timed out after 200ms/);
  t.ok(Date.now() - started < 3000);
  t.match(await m.registry.metrics(), /outcome="unreachable"\} 2/);
});
