// Found on 2026-12-06 (a review): a P0 event handed out again by the store while its ack was still
// on the way (in hand past QUEUE_CLAIM_IDLE, then claimed by the read) was counted as a P0 alert in
// hand though nothing was begun; an event of another lane read with it then waited for it, the
// loop awaited a race over no promise at all, and the replica never read the queue again.
import t from 'tap';
import { pino } from 'pino';
import { QueueWorker } from '../../../src/engine/worker.js';
import { createMetrics } from '../../../src/metrics.js';
import type { QueuedEvent, Store } from '../../../src/store/store.js';

const alert = (fp: string) => ({ fingerprint: fp, status: 'firing', labels: { alertname: fp }, annotations: {}, startsAt: '2026-12-06T00:00:00Z' }) as unknown as QueuedEvent['alert'];

t.test('a P0 event claimed again while its ack is on the way: the events read with it are handled, the worker reads on and stops', async (t) => {
  const p0: QueuedEvent = { id: '0:1-0', alert: alert('p0'), deliveries: 1, lane: 0 };
  const other: QueuedEvent = { id: '2:2-0', alert: alert('other'), deliveries: 1, lane: 2 };
  const later: QueuedEvent = { id: '2:3-0', alert: alert('later'), deliveries: 1, lane: 2 };
  let reads = 0;
  const acked: string[] = [];
  // a queue double: the P0 event, then the same event again (claimed while its ack is slow) with
  // another lane's event, then one more event, then nothing
  const store = {
    async consume(_c: string, _n: number, blockMs: number) {
      reads++;
      if (reads === 1) return [p0];
      if (reads === 2) {
        await new Promise((r) => setTimeout(r, 50));
        return [{ ...p0, deliveries: 2 }, other];
      }
      if (reads === 3) return [later];
      await new Promise((r) => setTimeout(r, Math.min(blockMs, 50)));
      return [];
    },
    async ack(ids: string[]) {
      await new Promise((r) => setTimeout(r, 300)); // Redis busy: the ack is on the way during the second read
      acked.push(...ids);
    },
    async queueDepth() {
      return 0;
    },
  } as unknown as Store;
  const handled: string[] = [];
  const w = new QueueWorker({
    store,
    metrics: createMetrics({ defaults: false }),
    logger: pino({ level: 'silent' }),
    consumer: 'c',
    claimIdleMs: 60_000,
    maxDeliveries: 5,
    handler: async (ev) => void handled.push(ev.alert.fingerprint),
    targetsOf: () => [],
  });
  w.start();
  const end = Date.now() + 10_000;
  while (!handled.includes('later') && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  t.same(handled, ['p0', 'other', 'later'], 'each handled once, the P0 event not again; the worker read on');
  const stopped = await Promise.race([w.stop().then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still stopping after 5 s'), 5000))]);
  t.equal(stopped, 'stopped');
  t.same(acked.sort(), ['0:1-0', '2:2-0', '2:3-0']);
});
