// Notifications tried again against a real HTTP receiver on 127.0.0.1 (src/notify/retry.ts): a
// receiver's blip (no answer, 5xx, 429) does not lose a page; a status that says the URL or its
// credentials are wrong is final at once; the retries are bounded in time and in number; a
// shutdown (flush) tries each waiting one once more and then stops waiting.
import { createServer, type Server, type ServerResponse } from 'node:http';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { createMetrics } from '../../src/metrics.js';
import { Notifications, type Notification } from '../../src/notify/notifier.js';
import { WebhookNotifier } from '../../src/notify/webhook.js';
import { metricValue } from '../support/app.js';
import { freePort } from '../support/ports.js';

/** Each request is answered by `answer(n)` (n from 1): a status, optional headers, or 'hang'. */
async function receiver(t: Test, answer: (n: number) => number | { status: number; headers?: Record<string, string> } | 'hang') {
  const got: { at: number; recordId: string }[] = [];
  const hanging = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    let b = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (b += d));
    req.on('end', () => {
      got.push({ at: Date.now(), recordId: (JSON.parse(b) as { recordId: string }).recordId });
      const a = answer(got.length);
      if (a === 'hang') return void hanging.add(res);
      const { status, headers } = typeof a === 'number' ? { status: a, headers: {} } : a;
      res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(String(status));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => {
    for (const res of hanging) res.destroy();
    server.closeAllConnections();
    server.close(() => r());
  }));
  const port = (server.address() as { port: number }).port;
  return { got, url: `http://127.0.0.1:${port}/hook` };
}

const sample: Notification = { kind: 'rollback_failed', severity: 'critical', title: 'Rollback did not recover the service: escalate', lines: ['Service: Deployment/shop/checkout'], recordId: 'rb-1', at: Date.UTC(2026, 11, 4) };

function notifications(url: string | string[], opts: { retryForMs: number; firstMs?: number; maxMs?: number; maxRetrying?: number; timeoutMs?: number }) {
  const metrics = createMetrics({ defaults: false });
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const hooks = (Array.isArray(url) ? url : [url]).map((u, i) => Object.assign(new WebhookNotifier(u), i === 0 ? {} : { name: `webhook${i + 1}` }));
  const n = new Notifications(hooks, logger, metrics, opts.timeoutMs ?? 2000, {
    retryForMs: opts.retryForMs,
    random: () => 0.999999, // no jitter: each wait is its backoff
    backoff: { firstMs: opts.firstMs ?? 20, maxMs: opts.maxMs ?? 200 },
    ...(opts.maxRetrying !== undefined ? { maxRetrying: opts.maxRetrying } : {}),
  });
  const count = async (name: string, labels: Record<string, string>) => (await metricValue(metrics, name, labels)) ?? 0;
  return {
    n,
    lines,
    sent: (notifier = 'webhook') => count('rollguard_notifications_total', { notifier, outcome: 'sent' }),
    failed: (notifier = 'webhook') => count('rollguard_notifications_total', { notifier, outcome: 'failed' }),
    attemptsFailed: (notifier = 'webhook') => count('rollguard_notification_attempts_failed_total', { notifier }),
  };
}

for (const status of [500, 502, 503, 429]) {
  t.test(`a receiver answering ${status} twice, then 200: sent on the third attempt, with growing waits`, async (t) => {
    const r = await receiver(t, (k) => (k <= 2 ? status : 200));
    const x = notifications(r.url, { retryForMs: 10_000, firstMs: 40 });
    x.n.emit(sample);
    await x.n.settled();
    t.equal(r.got.length, 3, 'three attempts');
    t.same(r.got.map((g) => g.recordId), ['rb-1', 'rb-1', 'rb-1'], 'the same notification each time');
    t.ok(r.got[1]!.at - r.got[0]!.at >= 35, 'the first wait is the first backoff (40 ms)');
    t.ok(r.got[2]!.at - r.got[1]!.at >= 75, 'the second wait is twice as long (80 ms)');
    t.equal(await x.sent(), 1, 'counted sent once');
    t.equal(await x.failed(), 0, 'never counted failed');
    t.equal(await x.attemptsFailed(), 2, 'each failed attempt counted');
    t.ok(x.lines.some((l) => l.msg === 'notification sent after a retry' && l.attempts === 3), 'the late delivery is logged with its attempts');
    t.notOk(x.lines.some((l) => l.msg === 'notification failed (the rollback is not affected)'), 'no failure logged');
  });
}

t.test('no answer at all (connection refused), then a receiver: tried again until it listens', async (t) => {
  const port = await freePort();
  const x = notifications(`http://127.0.0.1:${port}/hook`, { retryForMs: 10_000, firstMs: 30, maxMs: 60 });
  let got = 0;
  const server = createServer((req, res) => {
    got++;
    req.resume();
    req.on('end', () => res.writeHead(200).end());
  });
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  x.n.emit(sample);
  while ((await x.attemptsFailed()) < 2) await new Promise((r) => setTimeout(r, 5));
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  await x.n.settled();
  t.equal(got, 1, 'delivered once the receiver listens');
  t.equal(await x.sent(), 1);
  t.equal(await x.failed(), 0);
  t.ok((await x.attemptsFailed()) >= 2);
});

t.test('a timeout is retried like no answer', async (t) => {
  const r = await receiver(t, (k) => (k === 1 ? 'hang' : 200));
  const x = notifications(r.url, { retryForMs: 10_000, timeoutMs: 500 }); // roomy: the answered attempt must not time out on a busy machine
  x.n.emit(sample);
  await x.n.settled();
  t.equal(r.got.length, 2);
  t.equal(await x.sent(), 1);
  t.equal(await x.attemptsFailed(), 1);
});

const WHY: Record<number, RegExp> = {
  400: /^not retried: the receiver refused the message \(400\), and would refuse it again/,
  401: /^not retried: the receiver refused the credentials \(401\): fix them$/,
  403: /^not retried: the receiver refused the credentials \(403\): fix them$/,
  404: /^not retried: the receiver has no such endpoint \(404\): fix the URL$/,
  410: /^not retried: the receiver has no such endpoint \(410\): fix the URL$/,
};
for (const status of [400, 401, 403, 404, 410]) {
  t.test(`a receiver answering ${status} is not tried again: the log line says what to fix`, async (t) => {
    const r = await receiver(t, () => status);
    const x = notifications(r.url, { retryForMs: 10_000 });
    x.n.emit(sample);
    await x.n.settled();
    t.equal(r.got.length, 1, 'one attempt');
    t.equal(await x.failed(), 1);
    t.equal(await x.attemptsFailed(), 1);
    const line = x.lines.find((l) => l.msg === 'notification failed (the rollback is not affected)');
    t.match(line?.why, WHY[status]);
    t.match((line?.err as { message?: string } | undefined)?.message, new RegExp(`answered ${status}`));
  });
}

t.test('a receiver down for longer than NOTIFY_RETRY_FOR: given up within the window, counted failed once, logged once', async (t) => {
  const r = await receiver(t, () => 503);
  const x = notifications(r.url, { retryForMs: 300, firstMs: 20, maxMs: 80 });
  x.n.emit(sample);
  await x.n.settled();
  // waits of 20, 40, 80, 80, 80 ms add up to the 300 ms window: at most 6 attempts, fewer when
  // the attempts themselves take time (a wait that would end past the window is not started)
  t.ok(r.got.length >= 3 && r.got.length <= 6, `several attempts, none past the window (${r.got.length})`);
  t.equal(await x.failed(), 1, 'counted failed once');
  t.equal(await x.sent(), 0);
  t.equal(await x.attemptsFailed(), r.got.length, 'every attempt counted');
  const failures = x.lines.filter((l) => l.msg === 'notification failed (the rollback is not affected)');
  t.equal(failures.length, 1, 'one warning, not one per attempt');
  t.match(failures[0]!.why, /given up after \d+ attempts \(NOTIFY_RETRY_FOR\)/);
  t.equal(failures[0]!.attempts, r.got.length);
});

t.test('NOTIFY_RETRY_FOR 0: one attempt, as before retries existed', async (t) => {
  const r = await receiver(t, () => 503);
  const x = notifications(r.url, { retryForMs: 0 });
  x.n.emit(sample);
  await x.n.settled();
  t.equal(r.got.length, 1);
  t.equal(await x.failed(), 1);
  t.match(x.lines.find((l) => l.msg === 'notification failed (the rollback is not affected)')?.why, /NOTIFY_RETRY_FOR is 0/);
});

t.test("a 429's Retry-After is waited, when longer than the backoff", async (t) => {
  const r = await receiver(t, (k) => (k === 1 ? { status: 429, headers: { 'retry-after': '1' } } : 200));
  const x = notifications(r.url, { retryForMs: 10_000, firstMs: 10, maxMs: 5_000 });
  x.n.emit(sample);
  await x.n.settled();
  t.equal(r.got.length, 2);
  t.ok(r.got[1]!.at - r.got[0]!.at >= 950, `waited the receiver's Retry-After of 1 s (${r.got[1]!.at - r.got[0]!.at} ms)`);
  t.equal(await x.sent(), 1);
});

t.test('flush (shutdown) tries each waiting notification once more at once, then stops waiting', async (t) => {
  let down = true;
  const r = await receiver(t, () => (down ? 503 : 200));
  // waits of a minute: only the flush can bring the next attempt
  const x = notifications(r.url, { retryForMs: 600_000, firstMs: 60_000, maxMs: 60_000 });
  x.n.emit(sample);
  x.n.emit({ ...sample, recordId: 'rb-2' });
  while (r.got.length < 2) await new Promise((res) => setTimeout(res, 5));
  await new Promise((res) => setTimeout(res, 20));
  down = false;
  // (had the flush waited for the minute's backoff, tap's timeout would end the test)
  await x.n.flush();
  t.same(r.got.map((g) => g.recordId).sort(), ['rb-1', 'rb-1', 'rb-2', 'rb-2'], 'each tried once more');
  t.equal(await x.sent(), 2, 'both delivered by the last attempt');

  // while the receiver still fails, the flush's attempt is the last one
  down = true;
  x.n.emit({ ...sample, recordId: 'rb-3' });
  while (r.got.length < 5) await new Promise((res) => setTimeout(res, 5));
  await new Promise((res) => setTimeout(res, 20));
  await x.n.flush();
  t.equal(r.got.filter((g) => g.recordId === 'rb-3').length, 2, 'tried once more, then given up');
  t.equal(await x.failed(), 1);
  t.match(x.lines.find((l) => l.msg === 'notification failed (the rollback is not affected)')?.why, /shutting down/);
});

t.test('at most maxRetrying notifications wait for a retry: past that a failure is final at once (a storm during an outage)', async (t) => {
  const r = await receiver(t, () => 503);
  const x = notifications(r.url, { retryForMs: 600_000, firstMs: 60_000, maxMs: 60_000, maxRetrying: 3 });
  for (let i = 0; i < 10; i++) x.n.emit({ ...sample, recordId: `rb-${i}` });
  while ((await x.attemptsFailed()) < 10) await new Promise((res) => setTimeout(res, 5));
  t.equal(await x.failed(), 7, 'seven final at their first failure');
  t.equal(x.lines.filter((l) => typeof l.why === 'string' && /3 critical notifications to webhook already wait for a retry/.test(l.why)).length, 7, 'each says why');
  // a place frees up when one waiting ends: the next failure may wait again
  await x.n.flush();
  t.equal(await x.failed(), 10, 'the three waiting ones given up at the flush');
  x.n.emit({ ...sample, recordId: 'rb-late' });
  while ((await x.attemptsFailed()) < 14) await new Promise((res) => setTimeout(res, 5));
  t.equal(await x.failed(), 10, 'a later failure waits for its retry again');
  await x.n.flush();
});

for (const status of [301, 302, 307, 308]) {
  t.test(`a redirect (${status}) is not followed: final, the message not sent elsewhere nor turned into a GET`, async (t) => {
    const elsewhere = await receiver(t, () => 200);
    const r = await receiver(t, () => ({ status, headers: { location: elsewhere.url } }));
    const x = notifications(r.url, { retryForMs: 10_000 });
    x.n.emit(sample);
    await x.n.settled();
    t.equal(r.got.length, 1, 'one attempt');
    t.equal(elsewhere.got.length, 0, 'nothing sent where it pointed');
    t.equal(await x.failed(), 1);
    t.equal(await x.sent(), 0, 'never counted sent');
    t.match((x.lines.find((l) => l.msg === 'notification failed (the rollback is not affected)')?.err as { message?: string } | undefined)?.message, new RegExp(`answered ${status}`));
  });
}

t.test('a URL that cannot be sent to (an unsupported scheme) is final at once, not retried as no answer', async (t) => {
  const x = notifications('ftp://127.0.0.1/hook', { retryForMs: 10_000 });
  x.n.emit(sample);
  await x.n.settled();
  t.equal(await x.attemptsFailed(), 1);
  t.equal(await x.failed(), 1);
});

t.test('a send already waiting for its retry keeps waiting when it fails again while every place is taken', async (t) => {
  let ok = false;
  const r = await receiver(t, () => (ok ? 200 : 503));
  const x = notifications(r.url, { retryForMs: 60_000, firstMs: 30, maxMs: 30, maxRetrying: 1 });
  x.n.emit(sample); // takes the one place
  while ((await x.attemptsFailed()) < 3) await new Promise((res) => setTimeout(res, 5));
  t.equal(await x.failed(), 0, 'its second and third failures did not end it, though no place is free');
  ok = true;
  await x.n.settled();
  t.equal(await x.sent(), 1, 'sent once the receiver is back');
});

t.test('the places are per notifier, and critical pages have their own: one receiver down or a flood of others never costs a page its retries', async (t) => {
  const down = await receiver(t, () => 503);
  let back = false;
  const blip = await receiver(t, () => (back ? 200 : 503));
  const x = notifications([down.url, blip.url], { retryForMs: 600_000, firstMs: 50, maxMs: 50, maxRetrying: 2 });
  // warnings fill the places of both notifiers...
  for (let i = 0; i < 4; i++) x.n.emit({ ...sample, kind: 'approval_requested', severity: 'warning', recordId: `rb-w${i}` });
  while ((await x.failed()) < 2 || (await x.failed('webhook2')) < 2) await new Promise((res) => setTimeout(res, 5));
  // ...and a page still gets its retries on the receiver that blips
  x.n.emit(sample);
  while (blip.got.filter((g) => g.recordId === 'rb-1').length < 2) await new Promise((res) => setTimeout(res, 5));
  back = true;
  while ((await x.sent('webhook2')) < 1) await new Promise((res) => setTimeout(res, 5));
  t.ok(blip.got.filter((g) => g.recordId === 'rb-1').length >= 2, 'the page was tried again');
  t.equal(await x.failed('webhook2'), 2, 'only the two warnings past the places were final at once');
  await x.n.flush();
});

t.test("a receiver's Retry-After holds back every send to it, new ones included, not a burst of retries at its end", async (t) => {
  let first = true;
  const r = await receiver(t, () => {
    if (!first) return 200;
    first = false;
    return { status: 429, headers: { 'retry-after': '1' } };
  });
  const x = notifications(r.url, { retryForMs: 10_000, firstMs: 10, maxMs: 5_000 });
  x.n.emit(sample);
  while (r.got.length < 1) await new Promise((res) => setTimeout(res, 5));
  await new Promise((res) => setTimeout(res, 50));
  x.n.emit({ ...sample, recordId: 'rb-new' });
  await x.n.settled();
  const refusedAt = r.got[0]!.at;
  const later = r.got.slice(1);
  t.same(later.map((g) => g.recordId).sort(), ['rb-1', 'rb-new']);
  for (const g of later) t.ok(g.at - refusedAt >= 950, `${g.recordId} waited for the Retry-After (${g.at - refusedAt} ms)`);
  t.equal(await x.sent(), 2);
});

t.test("a shutdown's deadline cuts the attempts it runs: a hanging receiver does not hold the shutdown for NOTIFY_TIMEOUT", async (t) => {
  const r = await receiver(t, () => 'hang');
  // NOTIFY_TIMEOUT of a minute: only the deadline can end the attempt before tap's timeout
  const x = notifications(r.url, { retryForMs: 600_000, timeoutMs: 60_000 });
  x.n.emit(sample);
  while (r.got.length < 1) await new Promise((res) => setTimeout(res, 5));
  await x.n.flush(Date.now() + 200);
  t.equal(await x.failed(), 1, 'given up');
  t.match(x.lines.find((l) => l.msg === 'notification failed (the rollback is not affected)')?.why, /shutting down/);
});

t.test("a send waiting for its retry when the shutdown's deadline has already passed is not attempted again", async (t) => {
  const r = await receiver(t, () => 503);
  const x = notifications(r.url, { retryForMs: 600_000, firstMs: 60_000, maxMs: 60_000 });
  x.n.emit(sample);
  while ((await x.attemptsFailed()) < 1) await new Promise((res) => setTimeout(res, 5));
  await x.n.flush(Date.now() - 1);
  t.equal(r.got.length, 1, 'not attempted again');
  t.equal(await x.failed(), 1);
  t.match(x.lines.find((l) => l.msg === 'notification failed (the rollback is not affected)')?.why, /deadline passed/);
});
