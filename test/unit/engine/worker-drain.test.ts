// The shutdown's drain with the store unreachable (Redis restarted with the node being drained):
// a failing read of the queue threw out of drain(), so serve's shutdown skipped everything after
// it (stopping the engine, waiting for the rollbacks it runs, sending the notifications still
// queued, leaving, closing the store), said "shutdown failed" and exited 1. Now the drain stops
// taking events, settles the ones in hand, and says how many are left (-1: not known).
import { pino } from 'pino';
import t from 'tap';
import { QueueWorker } from '../../../src/engine/worker.js';
import { createMetrics } from '../../../src/metrics.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { StoreUnavailableError } from '../../../src/store/store.js';
import { alert } from '../../support/store-contract.js';

t.test('a drain whose queue read fails settles the events in hand and resolves', async (t) => {
  const store = new MemoryStore();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const started: string[] = [];
  const handled: string[] = [];
  const w = new QueueWorker({
    store,
    metrics: createMetrics({ defaults: false }),
    logger: pino({ level: 'silent' }),
    consumer: 'c',
    claimIdleMs: 60_000,
    maxDeliveries: 3,
    blockMs: 20,
    handler: async (ev) => {
      started.push(ev.alert.fingerprint);
      await gate;
      handled.push(ev.alert.fingerprint);
    },
  });
  await store.intake([{ key: 'a', alert: alert('a') }], 60_000);
  w.start();
  while (started.length === 0) await new Promise((r) => setTimeout(r, 10));
  store.consume = async () => {
    throw new StoreUnavailableError('redis consume: connection refused');
  };
  store.queueDepth = async () => {
    throw new StoreUnavailableError('redis queueDepth: connection refused');
  };
  const draining = w.drain(Date.now() + 60_000);
  setTimeout(release, 50);
  const left = await draining;
  t.equal(left, -1, 'how many are left is not known');
  t.same(handled, ['a'], 'the event in hand was finished before the drain returned');
});
