import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { createMetrics } from '../../../src/metrics.js';
import { evaluationTimeout, PrometheusBusyError, PrometheusClient, PrometheusQueryError, PrometheusUnavailableError } from '../../../src/prometheus/client.js';
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
  t.equal(seen?.get('timeout'), '4.000', "Prometheus's own evaluation timeout, below the client's (5 s when not given), so it gives up first");
  t.same([evaluationTimeout(1000), evaluationTimeout(30_000), evaluationTimeout(3)], ['0.800', '29.000', '0.002']);
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

t.test("Prometheus' own JSON error is an answer about the query at any status (timeout at 503, internal at 500), only 'unavailable' is down", async (t) => {
  // each errorType at the status Prometheus' API answers it with (web/api/v1/api.go, respondError)
  const cases: [string, number, string, 'error' | 'down', RegExp][] = [
    ['timeout', 503, 'query timed out in expression evaluation', 'error', /could not answer the query \(timeout, HTTP 503\): query timed out in expression evaluation: the query runs longer than Prometheus allows \(its --query\.timeout, or the timeout rollguard sends: PROMETHEUS_TIMEOUT less a margin\): make it cheaper \(aggregate it, e\.g\. sum by/],
    ['internal', 500, 'expanding series: read: connection reset', 'error', /could not answer the query \(internal, HTTP 500\): expanding series: .*see Prometheus' log/],
    ['execution', 422, 'query processing would load too many samples into memory in query execution', 'error', /refused the query \(execution\)/],
    ['bad_data', 400, 'invalid parameter "query"', 'error', /refused the query \(bad_data\)/],
    ['canceled', 499, 'query was canceled in expression evaluation', 'error', /refused the query \(canceled\)/],
    ['unavailable', 500, 'TSDB not ready', 'down', /answered HTTP 500: TSDB not ready/],
  ];
  const m = createMetrics({ defaults: false });
  for (const [errorType, code, error, want, message] of cases) {
    const s = await stub((_req, _body, res) => json(res, code, { status: 'error', errorType, error }));
    const e = await new PrometheusClient({ url: s.url, metrics: m }).queryRange('q', 1_700_000_000_000, 1_700_000_060_000, 15_000).catch((x: unknown) => x);
    await s.close();
    if (want === 'error') {
      t.type(e, PrometheusQueryError, `${errorType} at HTTP ${code}: an answer, not "down"`);
      t.notOk(e instanceof PrometheusUnavailableError, `${errorType}: not unavailable`);
      t.equal((e as PrometheusQueryError).errorType, errorType);
    } else t.type(e, PrometheusUnavailableError, `${errorType} at HTTP ${code}: down`);
    t.match((e as Error).message, message, errorType);
  }
  const text = await m.registry.metrics();
  t.match(text, /rollguard_prometheus_queries_total\{outcome="error"\} 5/);
  t.match(text, /rollguard_prometheus_queries_total\{outcome="unreachable"\} 1/);
});

t.test('an answer over maxResponseBytes (PROMETHEUS_MAX_RESPONSE_BYTES) is cut as it comes and is the query\'s error (too_large), saying to aggregate', async (t) => {
  // a Prometheus answering a matrix that never ends (a custom trigger selecting every series)
  let written = 0;
  let closed = false;
  const s = await stub((_req, _body, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"status":"success","data":{"resultType":"matrix","result":[');
    const series = `{"metric":{"pod":"api-7d9f8b6c4-x7k2p"},"values":[${Array.from({ length: 121 }, (_, k) => `[${1700000000 + k * 15},"0.5"]`).join(',')}]},`;
    const more = () => {
      while (!res.destroyed && res.write(series)) written += series.length;
    };
    res.on('drain', more);
    res.on('close', () => (closed = true));
    more();
  });
  t.teardown(s.close);
  const m = createMetrics({ defaults: false });
  const c = new PrometheusClient({ url: s.url, metrics: m, timeoutMs: 5000, maxResponseBytes: 256 * 1024 });
  const started = Date.now();
  const e = await c.queryRange('x', 1_700_000_000_000, 1_700_000_060_000, 15_000).catch((x: unknown) => x);
  t.type(e, PrometheusQueryError, 'an answer that is an error: held and escalated, never "down"');
  t.equal((e as PrometheusQueryError).errorType, 'too_large');
  t.match((e as Error).message, /answered more than PROMETHEUS_MAX_RESPONSE_BYTES \(262144 bytes\) to this query; not read further: aggregate the query to the few series the trigger needs \(e\.g\. sum by \(namespace, deployment\) \(\.\.\.\)\)/);
  t.ok(Date.now() - started < 3000, 'at the bound, not at PROMETHEUS_TIMEOUT');
  await until(t, 'the request cut', () => closed);
  t.ok(written < 8 * 1024 * 1024, `not read on: ${written} bytes written before the cut`);
  t.match(await m.registry.metrics(), /rollguard_prometheus_queries_total\{outcome="error"\} 1/);

  // within the bound, read whole (a multi-byte label across chunks included)
  const ok = await stub((_req, _body, res) => json(res, 200, { status: 'success', data: { resultType: 'vector', result: [{ metric: { route: '/caf\u00e9'.repeat(2000) }, value: [1700000000, '1'] }] } }));
  t.teardown(ok.close);
  const got = await new PrometheusClient({ url: ok.url, maxResponseBytes: 64 * 1024 }).query('x', 1_700_000_000_000);
  t.equal(got[0]!.labels.route, '/caf\u00e9'.repeat(2000));
});

/** Resolves once cond() holds (polled), or fails the test naming what was awaited. */
async function until(t: Test, what: string, cond: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return t.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A Prometheus that holds every query until the test answers it; `queries` in arrival order. */
async function holding() {
  const held: { query: string; res: ServerResponse }[] = [];
  let inFlight = 0;
  let most = 0;
  const s = await stub((_req, body, res) => {
    inFlight++;
    most = Math.max(most, inFlight);
    res.on('close', () => inFlight--);
    held.push({ query: new URLSearchParams(body).get('query') ?? '', res });
  });
  const answer = (i: number) => json(held[i]!.res, 200, { status: 'success', data: { resultType: 'vector', result: [] } });
  return { ...s, held, answer, most: () => most, queries: () => held.map((h) => h.query), close: () => (held.forEach((h) => h.res.destroy()), s.close()) };
}

t.test('maxConcurrent (PROMETHEUS_MAX_CONCURRENT): at most that many queries at once, the others wait their turn and are counted waiting', async (t) => {
  const p = await holding();
  t.teardown(p.close);
  const m = createMetrics({ defaults: false });
  const c = new PrometheusClient({ url: p.url, metrics: m, maxConcurrent: 2 });
  const answers = Array.from({ length: 5 }, (_, i) => c.query(`q${i}`, 1_700_000_000_000, { precedence: 2 }));
  await until(t, 'two queries at the server', () => p.held.length === 2);
  // the three others are held back by the client, not on their way: a while later still two
  await new Promise((r) => setTimeout(r, 100));
  t.equal(p.held.length, 2, 'only two queries reached Prometheus');
  t.match(await m.registry.metrics(), /rollguard_dependency_calls_waiting\{dependency="prometheus"\} 3/);
  for (let i = 0; i < 5; i++) {
    await until(t, `query ${i + 1} at the server`, () => p.held.length > i);
    p.answer(i);
  }
  t.same(await Promise.all(answers), [[], [], [], [], []], 'every query answered in the end');
  t.equal(p.most(), 2, 'never more than two at once');
  t.same(p.queries(), ['q0', 'q1', 'q2', 'q3', 'q4'], 'one lane: first come first served');
  t.match(await m.registry.metrics(), /rollguard_dependency_calls_waiting\{dependency="prometheus"\} 0/);
});

t.test("maxConcurrent: a P0 rule's query goes before the storm's queries already waiting", async (t) => {
  const p = await holding();
  t.teardown(p.close);
  const c = new PrometheusClient({ url: p.url, maxConcurrent: 1 });
  const storm = Array.from({ length: 4 }, (_, i) => c.queryRange(`storm${i}`, 1_700_000_000_000, 1_700_000_060_000, 15_000, { precedence: 2 }));
  await until(t, 'the first storm query at the server', () => p.held.length === 1);
  const p1 = c.query('p1', 1_700_000_000_000, { precedence: 1 });
  const p0 = c.query('p0', 1_700_000_000_000, { precedence: 0 });
  for (let i = 0; i < 6; i++) {
    await until(t, `query ${i + 1} at the server`, () => p.held.length > i);
    if (i < 5) await new Promise((r) => setTimeout(r, 20)); // time for a wrong one to come first
    json(p.held[i]!.res, 200, { status: 'success', data: { resultType: i === 1 || i === 2 ? 'vector' : 'matrix', result: [] } });
  }
  await Promise.all([p0, p1, ...storm]);
  t.same(p.queries(), ['storm0', 'p0', 'p1', 'storm1', 'storm2', 'storm3']);
});

/** A fetch that holds the first query until the test answers it, whatever its signal (a stuck connection), and answers the others at once or after `delayMs`. */
function stuckFetch(delayMs = 0) {
  const sent: string[] = [];
  let answerFirst!: () => void;
  const ok = () => new Response(JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [] } }), { headers: { 'content-type': 'application/json' } });
  const fetch = (async (_url: string | URL | Request, init?: RequestInit) => {
    sent.push(new URLSearchParams(String(init?.body)).get('query') ?? '');
    if (sent.length === 1) return new Promise<Response>((r) => (answerFirst = () => r(ok())));
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    init?.signal?.throwIfAborted();
    return ok();
  }) as typeof globalThis.fetch;
  return { fetch, sent, answerFirst: () => answerFirst() };
}

t.test('maxConcurrent: a query that waited all of PROMETHEUS_TIMEOUT for a turn is never sent: PrometheusBusyError, counted not_sent', async (t) => {
  t.setTimeout(20_000); // a wait with no bound would hang here
  const f = stuckFetch();
  const m = createMetrics({ defaults: false });
  const c = new PrometheusClient({ url: 'http://prometheus.invalid:9090', metrics: m, maxConcurrent: 1, timeoutMs: 300, fetch: f.fetch });
  const first = c.query('first', 1_700_000_000_000);
  await until(t, 'the first query sent', () => f.sent.length === 1);
  const started = Date.now();
  const err = await c.query('second', 1_700_000_000_000).then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof PrometheusBusyError, 'PrometheusBusyError: Prometheus answers, rollguard asks faster (src/engine/confirm.ts holds on it)');
  t.ok(err instanceof PrometheusUnavailableError, 'and, to callers that only need "no answer", unavailable');
  t.match((err as Error).message, /no turn to query it within PROMETHEUS_TIMEOUT \(300ms\): PROMETHEUS_MAX_CONCURRENT=1 queries were in flight all that time; never sent/);
  t.ok(Date.now() - started < 2000, 'at its wait bound, not once the first query ends');
  t.same(f.sent, ['first'], 'never sent');
  const text = await m.registry.metrics();
  t.match(text, /rollguard_prometheus_queries_total\{outcome="not_sent"\} 1/);
  t.notMatch(text, /outcome="unreachable"/, 'not counted as Prometheus unreachable');
  t.match(text, /rollguard_dependency_calls_waiting\{dependency="prometheus"\} 0/, 'the one that gave up is no longer counted waiting');
  f.answerFirst();
  t.same(await first, []);
  t.same(await c.query('third', 1_700_000_000_000), [], 'the place given back: the next query is sent');
  t.same(f.sent, ['first', 'third']);
});

t.test('maxConcurrent: a query that got its turn late has all of PROMETHEUS_TIMEOUT to be answered', async (t) => {
  // the first holds the only place for 200 ms; the second, sent then, is answered 250 ms later:
  // 450 ms after it was asked, past its 300 ms timeout had the wait counted in it
  const f = stuckFetch(250);
  const c = new PrometheusClient({ url: 'http://prometheus.invalid:9090', maxConcurrent: 1, timeoutMs: 300, fetch: f.fetch });
  const first = c.query('first', 1_700_000_000_000);
  await until(t, 'the first query sent', () => f.sent.length === 1);
  const asked = Date.now();
  const second = c.query('second', 1_700_000_000_000).then((r) => r, (e: unknown) => e);
  await new Promise((r) => setTimeout(r, 200));
  f.answerFirst();
  await first;
  t.same(await second, [], 'answered');
  t.ok(Date.now() - asked >= 400, 'more than its timeout after it was asked');
});

t.test("a health check (precedence 'check') is sent at once, whatever waits", async (t) => {
  const p = await holding();
  t.teardown(p.close);
  const c = new PrometheusClient({ url: p.url, maxConcurrent: 1 });
  const storm = [c.query('storm0', 1_700_000_000_000, { precedence: 2 }), c.query('storm1', 1_700_000_000_000, { precedence: 1 })];
  await until(t, 'the first at the server', () => p.held.length === 1);
  const check = c.query('vector(1)', 1_700_000_000_000, { precedence: 'check' });
  await until(t, 'the check at the server', () => p.held.length === 2);
  t.same(p.queries(), ['storm0', 'vector(1)']);
  p.answer(1);
  t.same(await check, []);
  p.answer(0);
  await until(t, 'storm1 at the server', () => p.held.length === 3);
  p.answer(2);
  await Promise.all(storm);
});

t.test("an answer that is not float samples (native histograms, a broken proxy's shape) is the query's error (bad_result), never a TypeError", async (t) => {
  const answers: [string, unknown, RegExp][] = [
    ['a matrix of native histograms', { resultType: 'matrix', result: [{ metric: {}, histograms: [[1700000000, { count: '10', sum: '1', buckets: [] }]] }] }, /native-histogram samples, not float samples: query a float of them \(histogram_quantile/],
    ['a vector of a native histogram', { resultType: 'vector', result: [{ metric: {}, histogram: [1700000000, { count: '10', sum: '1' }] }] }, /native-histogram samples/],
    ['a vector without its value', { resultType: 'vector', result: [{ metric: { pod: 'a' } }] }, /the vector answer is not float samples as the HTTP API gives them \(0\.value: /],
    ['a matrix that is no list', { resultType: 'matrix', result: { oops: true } }, /the matrix answer is not float samples/],
    ['a scalar of the wrong shape', { resultType: 'scalar', result: ['1700000000', 3] }, /the scalar answer is not float samples/],
  ];
  for (const [what, data, message] of answers) {
    const s = await stub((_req, _body, res) => json(res, 200, { status: 'success', data }));
    const c = new PrometheusClient({ url: s.url });
    const matrix = (data as { resultType: string }).resultType === 'matrix';
    const got: unknown = await (matrix ? c.queryRange('q', 1_700_000_000_000, 1_700_000_060_000, 15_000) : c.query('q', 1_700_000_000_000)).catch((e: unknown) => e);
    await s.close();
    t.type(got, PrometheusQueryError, what);
    t.equal((got as PrometheusQueryError).errorType, 'bad_result', what);
    t.match((got as Error).message, message, what);
  }
});
