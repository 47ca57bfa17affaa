// Connections a client holds: a request not received whole within HTTP_REQUEST_TIMEOUT (a body sent
// a byte at a time, headers never finished, nothing sent at all) is closed by the server, on both
// listeners; so is a kept-alive connection idle past HTTP_IDLE_TIMEOUT, and a refused request's
// connection at once. Timings are never asserted beyond "closed before a generous deadline".
import net from 'node:net';
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { createMetrics } from '../../../src/metrics.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { WEBHOOK_TOKEN } from '../../support/app.js';

/** Far beyond the timeouts set below (300 ms), far below Fastify's and Node's defaults (72 s and more). */
const DEADLINE_MS = 8_000;

async function listening(env: Record<string, string>, listener: 'api' | 'metrics' = 'api') {
  const config = loadConfig({ WEBHOOK_TOKEN, HTTP_REQUEST_TIMEOUT: '300ms', HTTP_IDLE_TIMEOUT: '300ms', ...env });
  const metrics = createMetrics({ defaults: false });
  const app = buildApp({ config, store: new MemoryStore(), metrics, logger: false }, listener);
  await app.listen({ host: '127.0.0.1', port: 0 });
  /** rollguard_http_connections_refused_total's series, as `setting listener` → value. */
  const refused = async () =>
    Object.fromEntries((await metrics.httpConnectionsRefused.get()).values.map((v) => [`${v.labels.setting} ${v.labels.listener}`, v.value]));
  return { app, port: (app.server.address() as net.AddressInfo).port, refused };
}

/** Opens a connection, writes `data`, and resolves with what came back once the server closes it, or 'still open' at the deadline. */
function heldOpen(port: number, data: string, trickle = false): Promise<{ closed: boolean; answer: string }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let answer = '';
    const drip = trickle ? setInterval(() => s.writable && s.write(' '), 100) : undefined;
    const done = (closed: boolean) => {
      clearInterval(drip);
      clearTimeout(deadline);
      s.destroy();
      resolve({ closed, answer: answer.split('\r\n')[0] ?? '' });
    };
    const deadline = setTimeout(() => done(false), DEADLINE_MS);
    s.on('data', (d) => (answer += d.toString()));
    s.on('error', () => {});
    s.on('close', () => done(true));
    if (data) s.write(data);
  });
}

const partial = (path: string, auth = '') =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n${auth}\r\n{`;

t.test('a request not received whole within HTTP_REQUEST_TIMEOUT is closed by the server', async (t) => {
  const { app, port } = await listening({});
  t.teardown(() => app.close());
  const cases: [string, string, boolean][] = [
    ['POST /v1/alerts without a token, the body dripping a byte every 100 ms', partial('/v1/alerts'), true],
    ['POST /v1/alerts with the token, the body dripping', partial('/v1/alerts', `Authorization: Bearer ${WEBHOOK_TOKEN}\r\n`), true],
    ['POST /nope, the body dripping', partial('/nope'), true],
    ['POST /healthz, the body dripping', partial('/healthz'), true],
    ['headers never finished', 'POST /v1/alerts HTTP/1.1\r\nHost: x\r\n', false],
    ['nothing sent at all', '', false],
  ];
  const got = await Promise.all(cases.map(([, data, trickle]) => heldOpen(port, data, trickle)));
  cases.forEach(([why], i) => t.ok(got[i]!.closed, `${why}: closed by the server (${got[i]!.answer || 'no answer'})`));
  t.match(got[0]!.answer, /^HTTP\/1\.1 401/, 'the refused one was answered 401 first');
  t.match(got[5]!.answer, /^HTTP\/1\.1 408/, 'a silent connection is answered 408');
});

t.test('the metrics listener (METRICS_PORT) closes them too', async (t) => {
  const { app, port } = await listening({ METRICS_PORT: '0' }, 'metrics');
  t.teardown(() => app.close());
  t.ok((await heldOpen(port, partial('/metrics'), true)).closed, 'a dripping body on the metrics listener: closed');
  t.ok((await heldOpen(port, '')).closed, 'a silent connection on the metrics listener: closed');
});

t.test('a kept-alive connection idle past HTTP_IDLE_TIMEOUT is closed; a refused request closes its connection at once', async (t) => {
  const { app, port } = await listening({ HTTP_REQUEST_TIMEOUT: '60s' });
  t.teardown(() => app.close());
  const idle = await heldOpen(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  t.ok(idle.closed, 'closed after its answer, once idle');
  t.match(idle.answer, /^HTTP\/1\.1 200/);
  // HTTP_REQUEST_TIMEOUT is a minute here: only the refusal can close it before the deadline
  const refused = await heldOpen(port, partial('/v1/alerts', 'Authorization: Bearer wrong\r\n'), true);
  t.ok(refused.closed, 'a refused request: its connection closed (Connection: close)');
  t.match(refused.answer, /^HTTP\/1\.1 401/);
});

// increase() over a series that appears at 1 sees nothing: each listener exports both settings at 0 from the start
t.test('rollguard_http_connections_refused_total: both settings exported at 0 on each listener before any refusal', async (t) => {
  for (const listener of ['api', 'metrics'] as const) {
    const { app, refused } = await listening({}, listener);
    t.same(await refused(), { [`HTTP_MAX_CONNECTIONS ${listener}`]: 0, [`HTTP_MAX_CONNECTIONS_PER_ADDRESS ${listener}`]: 0 }, `${listener}: both series at 0`);
    await app.close();
  }
});

t.test('beyond HTTP_MAX_CONNECTIONS, a new connection is closed at once', async (t) => {
  const { app, port, refused } = await listening({ HTTP_REQUEST_TIMEOUT: '60s', HTTP_MAX_CONNECTIONS: '16' });
  t.teardown(() => app.close());
  const held = Array.from({ length: 16 }, () => net.connect(port, '127.0.0.1').on('error', () => {}));
  t.teardown(() => held.forEach((s) => s.destroy()));
  await Promise.all(held.map((s) => new Promise((r) => s.once('connect', r))));
  await new Promise((r) => setTimeout(r, 100));
  t.ok((await heldOpen(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')).closed, 'the 17th: closed');
  t.same(await refused(), { 'HTTP_MAX_CONNECTIONS api': 1, 'HTTP_MAX_CONNECTIONS_PER_ADDRESS api': 0 }, 'counted once, by the setting that refused it');
  held.forEach((s) => s.destroy());
  await new Promise((r) => setTimeout(r, 100));
  const after = await heldOpen(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.match(after.answer, /^HTTP\/1\.1 200/, 'served again once they are gone');
});

/** A kept-alive connection from `localAddress` sending GET /healthz every 100 ms; `closed` once the server ends it. */
function pinging(port: number, localAddress = '127.0.0.1') {
  const s = net.connect({ port, host: '127.0.0.1', localAddress }).on('error', () => {});
  s.on('data', () => {});
  const ping = () => s.writable && s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  s.once('connect', ping);
  const iv = setInterval(ping, 100);
  const closed = new Promise<boolean>((r) => s.once('close', () => (clearInterval(iv), r(true))));
  return { s, closed, stop: () => (clearInterval(iv), s.destroy()) };
}

t.test('one address holds at most HTTP_MAX_CONNECTIONS_PER_ADDRESS: kept-alive pingers cannot shut others out', async (t) => {
  // HTTP_IDLE_TIMEOUT 300 ms, a request every 100 ms: the idle timer never closes them
  const { app, port, refused } = await listening({ HTTP_REQUEST_TIMEOUT: '60s', HTTP_MAX_CONNECTIONS: '16', HTTP_MAX_CONNECTIONS_PER_ADDRESS: '4' });
  t.teardown(() => app.close());
  const conns = Array.from({ length: 16 }, () => pinging(port));
  t.teardown(() => conns.forEach((c) => c.stop()));
  const within = (ms: number) => new Promise<false>((r) => setTimeout(() => r(false), ms));
  const ended = await Promise.all(conns.map((c) => Promise.race([c.closed, within(2_000)])));
  t.equal(ended.filter(Boolean).length, 12, 'the 12 beyond 4 from one address: closed by the server');
  t.same(await refused(), { 'HTTP_MAX_CONNECTIONS api': 0, 'HTTP_MAX_CONNECTIONS_PER_ADDRESS api': 12 }, 'each counted, by the setting that refused it');
  // the 4 kept are still open, still pinging: another address (127.0.0.2, loopback too on Linux) gets in
  const other = await new Promise<string>((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    let a = '';
    const deadline = setTimeout(() => (s.destroy(), resolve('no answer by the deadline')), DEADLINE_MS);
    s.on('data', (d) => (a += d.toString()));
    s.on('error', (e) => (clearTimeout(deadline), resolve(`error ${e.message}`)));
    s.on('close', () => (clearTimeout(deadline), resolve(a.split('\r\n')[0] || 'closed, no answer')));
    s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  });
  t.match(other, /^HTTP\/1\.1 200/, 'a fresh connection from another address: 200');
  t.equal(conns.filter((c) => !c.s.destroyed).length, 4, 'the first 4 from the pinging address are still held');
});

t.test('HTTP_MAX_CONNECTIONS_PER_ADDRESS=0: no cap per address (behind a proxy)', async (t) => {
  const { app, port } = await listening({ HTTP_REQUEST_TIMEOUT: '60s', HTTP_MAX_CONNECTIONS: '16', HTTP_MAX_CONNECTIONS_PER_ADDRESS: '0' });
  t.teardown(() => app.close());
  const conns = Array.from({ length: 8 }, () => pinging(port));
  t.teardown(() => conns.forEach((c) => c.stop()));
  await new Promise((r) => setTimeout(r, 500));
  t.equal(conns.filter((c) => !c.s.destroyed).length, 8, 'all 8 from one address held');
});
