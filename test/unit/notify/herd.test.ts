// A receiver rate-limiting a storm of notifications (429 with Retry-After, as a Slack incoming
// webhook taking about one message a second): the end of its hold is one attempt, not every send
// that waited on it, and a critical page goes ahead of the warnings instead of being lost among them.
import { pino } from 'pino';
import t from 'tap';
import { createMetrics } from '../../../src/metrics.js';
import { Notifications, type Notification, type Notifier } from '../../../src/notify/notifier.js';
import { NotifyError } from '../../../src/notify/retry.js';

/** Takes one message per `intervalMs`; past that answers 429 Retry-After `intervalMs`. Each answer takes a few ms. */
function rateLimited(intervalMs: number) {
  let last = -Infinity;
  /** retries in flight (attempts of a notification tried before) */
  let inflight = 0;
  const tried = new Set<Notification>();
  const r = {
    attempts: 0,
    refused: 0,
    /** for each retry, the other retries in flight as it started (a first attempt of each is sent at once, before any Retry-After is known) */
    alongside: [] as number[],
    sent: [] as Notification[],
    notifier: {
      name: 'slack',
      async send(n: Notification) {
        r.attempts++;
        const retry = tried.has(n);
        tried.add(n);
        if (retry) {
          r.alongside.push(inflight);
          inflight++;
        }
        try {
          await new Promise((ok) => setTimeout(ok, 2));
          const now = performance.now();
          if (now - last < intervalMs) {
            r.refused++;
            throw new NotifyError('POST http://slack.example/… answered 429', true, intervalMs);
          }
          last = now;
          r.sent.push(n);
        } finally {
          if (retry) inflight--;
        }
      },
    } satisfies Notifier,
  };
  return r;
}

const warning = (i: number): Notification => ({ kind: 'rollback_refused', severity: 'warning', title: `Rollback of Deployment/prod/app-${i} refused`, lines: [], at: Date.now() });
const critical: Notification = { kind: 'rollback_failed', severity: 'critical', title: 'Rollback of Deployment/prod/checkout FAILED: escalate', lines: [], at: Date.now() };

t.test('after a hold, one send at a time goes, critical first: the page is delivered', async (t) => {
  const r = rateLimited(40);
  const n = new Notifications([r.notifier], pino({ level: 'silent' }), createMetrics({ defaults: false }), 5000, {
    retryForMs: 2000,
    backoff: { firstMs: 20, maxMs: 1000 },
    random: () => 0.5,
  });
  for (let i = 0; i < 60; i++) n.emit(warning(i));
  n.emit(critical);
  await n.settled();

  t.ok(r.sent.includes(critical), 'the critical page is delivered');
  t.ok(r.sent.indexOf(critical) <= 1, `among the first two delivered (${r.sent.indexOf(critical) + 1})`);
  t.ok(r.alongside.length > 0, `${r.alongside.length} retries`);
  t.equal(Math.max(...r.alongside), 0, 'no retry starts while another is in flight: a hold ends in one attempt');
  t.ok(r.attempts <= 61 + 2 * r.sent.length + 10, `${r.attempts} attempts for ${r.sent.length} deliveries`);
  t.ok(r.sent.length >= 10, `${r.sent.length} delivered`);
});

t.test('a flush ends the hold: the sends waiting at the gate go, one at a time, and it ends', async (t) => {
  const r = rateLimited(60_000);
  const n = new Notifications([r.notifier], pino({ level: 'silent' }), createMetrics({ defaults: false }), 5000, {
    retryForMs: 120_000,
    backoff: { firstMs: 20, maxMs: 30_000 },
    random: () => 0.5,
  });
  for (let i = 0; i < 5; i++) n.emit(warning(i));
  n.emit(critical);
  await new Promise((ok) => setTimeout(ok, 50));
  await n.flush();
  t.equal(r.sent.length, 1, 'the first one only: the receiver refuses the rest');
  t.ok(r.attempts <= 12, `${r.attempts} attempts`);
  t.ok(r.alongside.length >= 5, `${r.alongside.length} tried once more`);
  t.equal(Math.max(...r.alongside), 0, 'one at a time: not the whole backlog at once');
});

/** Always answers 429 with Retry-After `holdMs`, until `recover()`: then takes every message. Each answer takes a ms. */
function alwaysLimited(holdMs: number) {
  let limiting = true;
  const r = {
    attempts: 0,
    sent: [] as Notification[],
    recover: () => (limiting = false),
    notifier: {
      name: 'slack',
      async send(n: Notification) {
        r.attempts++;
        await new Promise((ok) => setTimeout(ok, 1));
        if (limiting) throw new NotifyError('POST http://slack.example/… answered 429', true, holdMs);
        r.sent.push(n);
      },
    } satisfies Notifier,
  };
  return r;
}

t.test('a receiver always answering 429: what waits stays within its places, and a send is given up NOTIFY_RETRY_FOR after it was emitted', async (t) => {
  const r = alwaysLimited(100);
  const metrics = createMetrics({ defaults: false });
  const lines: { msg: string; why?: string }[] = [];
  const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  const n = new Notifications([r.notifier], logger, metrics, 5000, {
    retryForMs: 500,
    backoff: { firstMs: 20, maxMs: 100 },
    maxRetrying: 5,
    random: () => 0.5,
  });
  const outcomes = async () => {
    const v = (await metrics.notifications.get()).values;
    const of = (o: string) => v.filter((x) => x.labels.outcome === o).reduce((a, x) => a + x.value, 0);
    return { sent: of('sent'), failed: of('failed') };
  };
  // a steady trickle for 1.5 s, three times NOTIFY_RETRY_FOR: a notification every 10 ms
  let emitted = 0;
  let mostWaiting = 0;
  for (let i = 0; i < 150; i++) {
    n.emit(warning(i));
    emitted++;
    await new Promise((ok) => setTimeout(ok, 10));
    const o = await outcomes();
    mostWaiting = Math.max(mostWaiting, emitted - o.sent - o.failed);
  }
  t.ok(mostWaiting <= 5 + 1, `at most 5 waiting (maxRetrying), and the one being tried: ${mostWaiting}`);
  await new Promise((ok) => setTimeout(ok, 700));
  const o = await outcomes();
  t.same(o, { sent: 0, failed: emitted }, 'NOTIFY_RETRY_FOR after the last was emitted, none waits: each counted failed, none sent');
  t.ok(lines.some((l) => /^given up after [1-9]\d* attempts? \(NOTIFY_RETRY_FOR\)/.test(l.why ?? '')), 'given up once tried, at NOTIFY_RETRY_FOR (the log line says why)');
  t.notOk(lines.some((l) => /^given up after 0 attempts/.test(l.why ?? '')), 'none given up untried: a first attempt waits for its one try, within the places');
  t.ok(lines.some((l) => /^not sent: 5 notifications to slack already wait/.test(l.why ?? '')), 'past its places, a new one is not sent (the log line says why)');

  // the receiver still rate-limits: warnings wait, then a page; it recovers: the page goes first
  for (let i = 0; i < 4; i++) n.emit(warning(1000 + i));
  n.emit(critical);
  await new Promise((ok) => setTimeout(ok, 20));
  r.recover();
  await n.settled();
  t.equal(r.sent[0], critical, 'the critical page is the first delivered once the receiver recovers');
  t.equal(r.sent.length, 5, 'and the warnings after it');
  await n.flush();
});

t.test('a page emitted while the receiver holds everyone back is tried, with NOTIFY_RETRY_FOR 0 as with more ("0 tries once")', async (t) => {
  for (const retryForMs of [0, 1000]) {
    const r = alwaysLimited(200);
    const n = new Notifications([r.notifier], pino({ level: 'silent' }), createMetrics({ defaults: false }), 5000, { retryForMs, backoff: { firstMs: 20, maxMs: 100 }, random: () => 0.5 });
    n.emit(warning(1)); // answered 429: the hold starts
    await new Promise((ok) => setTimeout(ok, 10));
    r.recover(); // it will accept the next try, after its hold
    n.emit(critical);
    await n.settled();
    t.ok(r.sent.includes(critical), `NOTIFY_RETRY_FOR ${retryForMs}: the page delivered after the hold`);
    await n.flush();
  }
});
