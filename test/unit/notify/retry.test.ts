// The retry decision for a failed notification (src/notify/retry.ts), row by row of its table.
import t from 'tap';
import { NotifyError, retryAfterMs, retryDelay } from '../../../src/notify/retry.js';

const p = { windowMs: 120_000, firstMs: 1_000, maxMs: 30_000 };
/** no jitter: the longest wait of each step */
const one = () => 0.999999;

t.test('waits are jittered down to half of the backoff, never more than it', async (t) => {
  const err = new NotifyError('no answer', true);
  t.same(retryDelay(err, 3, 0, p, () => 0), { waitMs: 2_000 }, 'the shortest: half of 4 s');
  t.same(retryDelay(err, 3, 0, p, () => 0.5), { waitMs: 3_000 });
  t.same(retryDelay(err, 9, 0, p, () => 0), { waitMs: 15_000 }, 'half of the longest wait');
  t.same(retryDelay(new NotifyError('429', true, 10_000), 1, 0, p, () => 0), { waitMs: 10_000 }, "a Retry-After is not jittered below itself");
});

t.test('retryable failures wait 1 s, 2 s, 4 s… up to the longest wait', async (t) => {
  const err = new NotifyError('POST http://hook/… answered 503', true);
  t.same([1, 2, 3, 4, 5, 6, 7].map((n) => retryDelay(err, n, 0, p, one)), [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000].map((waitMs) => ({ waitMs })));
  t.same(retryDelay(err, 1_000, 0, p, one), { waitMs: 30_000 }, 'no overflow after many attempts');
});

t.test('a Retry-After longer than the backoff is waited, within the longest wait', async (t) => {
  t.same(retryDelay(new NotifyError('429', true, 10_000), 1, 0, p, one), { waitMs: 10_000 });
  t.same(retryDelay(new NotifyError('429', true, 500), 3, 0, p, one), { waitMs: 4_000 }, 'a shorter one does not shorten the backoff');
  t.same(retryDelay(new NotifyError('429', true, 3_600_000), 1, 0, p, one), { waitMs: 30_000 }, 'an hour is cut to the longest wait');
});

t.test('no wait is started that would end past the window', async (t) => {
  const err = new NotifyError('no answer', true);
  t.same(retryDelay(err, 1, 119_000, p, one), { waitMs: 1_000 }, 'ends exactly at the window');
  t.match(retryDelay(err, 2, 119_000, p, one), { final: /given up after 2 attempts \(NOTIFY_RETRY_FOR\)/ });
  t.match(retryDelay(err, 1, 0, { ...p, windowMs: 0 }), { final: /NOTIFY_RETRY_FOR is 0/ });
});

t.test('a refusal (4xx other than 429), or an error that is not a NotifyError, is final', async (t) => {
  t.match(retryDelay(new NotifyError('answered 401', false, undefined, 401), 1, 0, p), { final: 'not retried: the receiver refused the credentials (401): fix them' });
  t.match(retryDelay(new NotifyError('answered 404', false, undefined, 404), 1, 0, p), { final: 'not retried: the receiver has no such endpoint (404): fix the URL' });
  t.match(retryDelay(new NotifyError('answered 302', false, undefined, 302), 1, 0, p), { final: /^not retried: the receiver redirects \(302\)/ });
  t.match(retryDelay(new NotifyError('answered 400', false, undefined, 400), 1, 0, p), { final: /^not retried: the receiver refused the message \(400\), and would refuse it again/ });
  t.match(retryDelay(new NotifyError('bad scheme', false), 1, 0, p), { final: /^not retried: it cannot be sent/ });
  t.match(retryDelay(new Error('a bug in a notifier'), 1, 0, p), { final: /not retried/ });
  t.match(retryDelay('thrown string', 1, 0, p), { final: /not retried/ });
});

t.test('Retry-After: seconds or an HTTP date; absent or unreadable is none', async (t) => {
  const now = Date.UTC(2026, 11, 4, 12, 0, 0);
  t.equal(retryAfterMs('120', now), 120_000);
  t.equal(retryAfterMs(' 3 ', now), 3_000);
  t.equal(retryAfterMs('Fri, 04 Dec 2026 12:00:30 GMT', now), 30_000);
  t.equal(retryAfterMs('Fri, 04 Dec 2026 11:00:00 GMT', now), 0, 'a date in the past: no wait of its own');
  t.equal(retryAfterMs(null, now), undefined);
  t.equal(retryAfterMs('', now), undefined);
  t.equal(retryAfterMs('soon', now), undefined);
  t.equal(retryAfterMs('-5', now), undefined);
});
