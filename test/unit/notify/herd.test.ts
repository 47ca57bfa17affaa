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

t.test('a flush lets every send waiting at the gate go at once, and ends', async (t) => {
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
});
