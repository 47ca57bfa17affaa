import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Test } from 'tap';
import { P0_PLACES, QueueWorker, type EventHandler, type WorkerOptions } from '../../src/engine/worker.js';
import { createMetrics } from '../../src/metrics.js';
import type { QueuedEvent, Store } from '../../src/store/store.js';
import { StoreUnavailableError } from '../../src/store/store.js';
import { alert } from './store-contract.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A worker on `store` with a logger whose lines the test reads, and its metrics. */
function worker(
  store: Store,
  handler: EventHandler,
  opts: { deadlineMs?: number; maxDeliveries: number; claimIdleMs: number; failEscalations?: number; concurrency?: number; coalesce?: Pick<WorkerOptions, 'coalesceKey' | 'onCoalesced' | 'targetsOf'> },
) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const metrics = createMetrics({ defaults: false });
  const dead: { ev: QueuedEvent; err: unknown }[] = [];
  let escalationsFailed = 0;
  const w = new QueueWorker({
    store,
    handler,
    metrics,
    logger: pino({ level: 'info' }, sink),
    consumer: 'worker-under-test',
    claimIdleMs: opts.claimIdleMs,
    maxDeliveries: opts.maxDeliveries,
    ...(opts.deadlineMs !== undefined ? { deadlineMs: opts.deadlineMs } : {}),
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
    onDead: async (ev, err) => {
      if (escalationsFailed < (opts.failEscalations ?? 0)) {
        escalationsFailed++;
        throw new StoreUnavailableError('store unreachable while escalating');
      }
      dead.push({ ev, err });
    },
    blockMs: 50,
    ...opts.coalesce,
  });
  const outcome = async (o: string) => (await metrics.eventsProcessed.get()).values.find((v) => v.labels.outcome === o)?.value ?? 0;
  return { w, lines, dead, outcome, metrics };
}

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * The queue worker's deadline, dead-lettering and coalescing, on any Store (test/unit: memory; test/integration:
 * a real redis-server). `make` returns a fresh, empty store.
 */
export function workerCases(t: Test, make: () => Promise<Store>): void {
  t.test(`every place taken by slow events: P0 alerts queued meanwhile are begun at once, in the ${P0_PLACES} places kept for them, not after a place frees`, async (t) => {
    const store = await make();
    const gate = (() => {
      let open!: () => void;
      const opened = new Promise<void>((r) => (open = r));
      return { open, opened };
    })();
    const inHand = new Set<string>();
    let most = 0;
    const begun: string[] = [];
    const handler: EventHandler = async (ev) => {
      inHand.add(ev.alert.fingerprint);
      most = Math.max(most, inHand.size);
      begun.push(ev.alert.fingerprint);
      await gate.opened;
      inHand.delete(ev.alert.fingerprint);
    };
    // each event its own target (the alert's deployment label is its fingerprint): none waits for another's
    const { w } = worker(store, handler, { maxDeliveries: 5, claimIdleMs: 60_000, concurrency: 2, coalesce: { targetsOf: (ev) => [ev.alert.fingerprint] } });
    await store.intake(['p1-a', 'p1-b', 'p1-c'].map((f) => ({ key: f, alert: alert(f), lane: 1 as const })), 60_000);
    w.start();
    t.teardown(async () => {
      gate.open();
      await w.stop();
    });
    await until('both places taken', () => inHand.size === 2);
    const p0s = Array.from({ length: P0_PLACES + 1 }, (_, i) => `p0-${i}`);
    await store.intake(p0s.map((f) => ({ key: f, alert: alert(f), lane: 0 as const })), 60_000);
    await until(`${P0_PLACES} P0 alerts begun while both places are still taken`, () => begun.filter((f) => f.startsWith('p0-')).length === P0_PLACES);
    t.same([...inHand].filter((f) => f.startsWith('p1-')).sort(), ['p1-a', 'p1-b'], 'the slow events still in hand: no place was freed for them');
    t.equal(inHand.size, 2 + P0_PLACES, 'the concurrency plus the places kept for P0 alerts');
    await sleep(300);
    t.equal(most, 2 + P0_PLACES, 'never more in hand: the last P0 alert waits for a place like any other');
    t.notOk(begun.includes('p1-c'), 'the third slow event is not begun beside them');
    gate.open();
    await until('everything handled', async () => (await store.queueDepth()) === 0);
    await w.stop();
    t.same(begun.slice(0, 2).sort(), ['p1-a', 'p1-b']);
    t.ok(begun.indexOf(`p0-${P0_PLACES}`) < begun.indexOf('p1-c'), 'the last P0 alert goes before the third slow event once places free');
  });

  t.test('every place taken by slow events: looking at the P0 lane leaves no reaction on the events in hand (they would pile up until each one finished)', async (t) => {
    const store = await make();
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    let inHand = 0;
    const handler: EventHandler = async () => {
      inHand++;
      await opened;
    };
    let looks = 0;
    const consume = store.consume.bind(store);
    store.consume = (...a: Parameters<Store['consume']>) => {
      if (a[4] === 0) looks++;
      return consume(...a);
    };
    const { w } = worker(store, handler, { maxDeliveries: 5, claimIdleMs: 60_000, concurrency: 4, coalesce: { targetsOf: (ev) => [ev.alert.fingerprint] } });
    await store.intake(['a', 'b', 'c', 'd'].map((f) => ({ key: f, alert: alert(f), lane: 1 as const })), 60_000);
    w.start();
    t.teardown(async () => {
      open();
      await w.stop();
    });
    await until('every place taken', () => inHand === 4);
    // each later .then on an event in hand is one reaction kept on it until it finishes
    let reactions = 0;
    for (const p of (w as unknown as { inflight: Set<Promise<void>> }).inflight) {
      const then = p.then.bind(p);
      Object.defineProperty(p, 'then', { value: (...a: Parameters<typeof then>) => (reactions++, then(...a)) });
    }
    const from = looks;
    await until('ten looks at the P0 lane', () => looks >= from + 10);
    t.equal(reactions, 0, 'no reaction left on the events in hand by the looks');
    open();
    await until('everything handled', async () => (await store.queueDepth()) === 0);
  });

  t.test('every place taken: a failed look at the P0 lane is counted and logged, the slow events go on, and the P0 alert is begun once the store answers', async (t) => {
    const store = await make();
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    const begun: string[] = [];
    const handler: EventHandler = async (ev) => {
      begun.push(ev.alert.fingerprint);
      if (!ev.alert.fingerprint.startsWith('p0-')) await opened;
    };
    let failLooks = 2;
    const consume = store.consume.bind(store);
    store.consume = (...a: Parameters<Store['consume']>) => {
      if (a[4] === 0 && failLooks > 0) {
        failLooks--;
        return Promise.reject(new StoreUnavailableError('redis consume: connection lost'));
      }
      return consume(...a);
    };
    const { w, lines, metrics } = worker(store, handler, { maxDeliveries: 5, claimIdleMs: 60_000, concurrency: 2, coalesce: { targetsOf: (ev) => [ev.alert.fingerprint] } });
    await store.intake(['p1-a', 'p1-b'].map((f) => ({ key: f, alert: alert(f), lane: 1 as const })), 60_000);
    w.start();
    t.teardown(async () => {
      open();
      await w.stop();
    });
    await until('both places taken', () => begun.length === 2);
    await store.intake([{ key: 'p0-x', alert: alert('p0-x'), lane: 0 as const }], 60_000);
    await until('the P0 alert begun once the store answers', () => begun.includes('p0-x'));
    t.equal(failLooks, 0, 'both failed looks were made');
    const failed = (await metrics.storeErrors.get()).values.find((v) => v.labels.op === 'consume')?.value ?? 0;
    t.equal(failed, 2, 'each failed look counted in rollguard_store_errors_total{op="consume"}');
    t.equal(lines.filter((l) => /cannot read the P0 lane/.test(String(l.msg))).length, 2, 'and logged');
    t.same(begun.slice(0, 2).sort(), ['p1-a', 'p1-b'], 'the slow events stayed in hand');
    open();
    await until('everything handled', async () => (await store.queueDepth()) === 0);
  });

  t.test('an event past EVENT_DEADLINE is abandoned (log line, metric), the next one is handled, and it is dead-lettered on its last delivery', async (t) => {
    const s = await make();
    const handled: string[] = [];
    const calls = new Map<string, number>();
    const { w, lines, dead, outcome } = worker(
      s,
      async (ev) => {
        calls.set(ev.alert.fingerprint, (calls.get(ev.alert.fingerprint) ?? 0) + 1);
        if (ev.alert.fingerprint === 'stuck') await new Promise(() => {}); // never settles, never throws
        handled.push(ev.alert.fingerprint);
      },
      { deadlineMs: 150, maxDeliveries: 3, claimIdleMs: 200 },
    );
    await s.intake([{ key: 'stuck', alert: alert('stuck') }, { key: 'next', alert: alert('next') }], 60_000);
    w.start();
    t.teardown(() => w.stop());
    await until('the next event handled', () => handled.includes('next'));
    t.same(handled, ['next'], 'the worker moved on past the stuck event');
    t.ok(lines.some((l) => /exceeded EVENT_DEADLINE \(150 ms\); abandoned/.test(String(l.msg))), 'a log line names the deadline');
    t.ok((await outcome('deadline_exceeded')) >= 1, 'rollguard_events_processed_total{outcome="deadline_exceeded"}');
    await until('the stuck event dead-lettered', () => dead.length > 0);
    t.equal(calls.get('stuck'), 3, 'handled exactly QUEUE_MAX_DELIVERIES times, never a 4th');
    t.equal(dead[0]!.ev.alert.fingerprint, 'stuck');
    t.match(String((dead[0]!.err as Error).message), /EVENT_DEADLINE/);
    t.equal(await outcome('dead_lettered'), 1);
    await until('the queue empty', async () => (await s.queueDepth()) === 0);
    t.ok(lines.some((l) => /dead-lettered after 3 deliveries \(QUEUE_MAX_DELIVERIES=3\)/.test(String(l.msg))));
  });

  t.test('an event delivered QUEUE_MAX_DELIVERIES times and never acked is dead-lettered without running, though no handler threw', async (t) => {
    const s = await make();
    await s.intake([{ key: 'poison', alert: alert('poison') }], 60_000);
    // Three replicas took it in turn and stopped (killed, or stalled for good) while holding it.
    for (const replica of ['r1', 'r2', 'r3']) {
      await until(`${replica} gets it`, async () => (await s.consume(replica, 10, 0, 50)).length === 1);
    }
    let ran = 0;
    const { w, dead, outcome } = worker(s, async () => void ran++, { maxDeliveries: 3, claimIdleMs: 50 });
    w.start();
    t.teardown(() => w.stop());
    await until('dead-lettered', () => dead.length > 0);
    t.equal(ran, 0, 'not run a 4th time');
    t.equal(dead[0]!.ev.deliveries, 4);
    t.match(String((dead[0]!.err as Error).message), /delivered 4 times and not handled in 3/);
    t.equal(await outcome('dead_lettered'), 1);
    await until('acked', async () => (await s.queueDepth()) === 0);
  });

  t.test('an escalation that fails leaves the event queued, said as such: dead-lettered (counted, logged as removed) once escalated', async (t) => {
    const s = await make();
    await s.intake([{ key: 'poison', alert: alert('poison') }], 60_000);
    const { w, lines, dead, outcome } = worker(s, async () => { throw new Error('handler fails'); }, { maxDeliveries: 1, claimIdleMs: 50, failEscalations: 1 });
    w.start();
    t.teardown(() => w.stop());
    await until('escalated', () => dead.length > 0);
    await until('acked', async () => (await s.queueDepth()) === 0);
    const said = lines.map((l) => String(l.msg));
    const failed = said.findIndex((m) => /escalating it failed: it stays queued/.test(m));
    const removed = said.filter((m) => /dead-lettered after \d+ deliveries .*removed from the queue/.test(m));
    t.ok(failed >= 0, 'the failed escalation is said');
    t.equal(removed.length, 1, 'removed from the queue: said once, after the escalation that worked');
    t.ok(said.findIndex((m) => /removed from the queue/.test(m)) > failed);
    t.equal(await outcome('dead_lettered'), 1, 'counted once');
  });

  t.test('a handler error on the last delivery dead-letters the event; a store failure leaves it queued', async (t) => {
    const s = await make();
    await s.intake([{ key: 'bad', alert: alert('bad') }, { key: 'storeless', alert: alert('storeless') }], 60_000);
    const seen = new Map<string, number[]>();
    const { w, dead, outcome } = worker(
      s,
      async (ev) => {
        seen.set(ev.alert.fingerprint, [...(seen.get(ev.alert.fingerprint) ?? []), ev.deliveries]);
        if (ev.alert.fingerprint === 'bad') throw new Error('handler bug');
        if (ev.deliveries === 1) throw new StoreUnavailableError('redis putRecord: connection lost');
      },
      { maxDeliveries: 2, claimIdleMs: 50 },
    );
    w.start();
    t.teardown(() => w.stop());
    await until('the queue empty', async () => (await s.queueDepth()) === 0);
    t.same(seen.get('bad'), [1, 2], 'the failing event ran QUEUE_MAX_DELIVERIES times');
    t.same(dead.map((d) => d.ev.alert.fingerprint), ['bad'], 'and only it is dead-lettered');
    t.match(String((dead[0]!.err as Error).message), /handler bug/);
    t.same(seen.get('storeless'), [1, 2], 'the store-failed event stayed queued and was handled on its next delivery');
    t.equal(await outcome('handled'), 1);
    t.equal(await outcome('failed'), 3);
  });

  t.test('an event stopped by the store more often than QUEUE_MAX_DELIVERIES is never dead-lettered: handled once the store is back', async (t) => {
    const s = await make();
    await s.intake([{ key: 'flap', alert: alert('flap') }], 60_000);
    const seen: number[] = [];
    const { w, dead } = worker(
      s,
      async (ev) => {
        seen.push(ev.deliveries);
        // a store that fails five times in a row (a Redis flapping, or at its maxmemory), then answers
        if (seen.length <= 5) throw new StoreUnavailableError('redis putRecord: Redis is at its maxmemory');
      },
      { maxDeliveries: 2, claimIdleMs: 50 },
    );
    w.start();
    t.teardown(() => w.stop());
    await until('the queue empty', async () => (await s.queueDepth()) === 0);
    t.same(dead, [], 'never dead-lettered');
    t.same(seen, [1, 2, 3, 4, 5, 6], 'run on every delivery, and handled on the sixth');
  });

  t.test('deliveries a handler error ended still count next to store failures', async (t) => {
    const s = await make();
    await s.intake([{ key: 'mixed', alert: alert('mixed') }], 60_000);
    const seen: number[] = [];
    const { w, dead } = worker(
      s,
      async (ev) => {
        seen.push(ev.deliveries);
        if (seen.length === 1) throw new StoreUnavailableError('redis getRecord: connection lost');
        throw new Error('handler bug');
      },
      { maxDeliveries: 2, claimIdleMs: 50 },
    );
    w.start();
    t.teardown(() => w.stop());
    await until('dead-lettered', () => dead.length > 0);
    t.same(seen, [1, 2, 3], 'one store failure, then QUEUE_MAX_DELIVERIES handler errors');
    t.match(String((dead[0]!.err as Error).message), /handler bug/);
  });

  // Found by review (2026-12-06): events in hand with one coalescing key are one evaluation, the
  // first one's; a first one whose handling evaluated nothing (the engine: a redelivery that found
  // its closed record) had the others linked to nothing new and acked, never evaluated.
  for (const first of ['evaluates', 'evaluates nothing'] as const) {
    t.test(`events coalesced into a first one that ${first}: ${first === 'evaluates' ? 'linked to it' : 'the next one handled on its own, the rest linked to that one'}`, async (t) => {
      const s = await make();
      await s.intake(['old', 'new-1', 'new-2'].map((fp) => ({ key: fp, alert: alert(fp) })), 60_000);
      const handled: string[] = [];
      const linked: [string, string][] = [];
      const { w } = worker(
        s,
        async (ev) => {
          handled.push(ev.alert.fingerprint);
          return !(first === 'evaluates nothing' && ev.alert.fingerprint === 'old');
        },
        {
          maxDeliveries: 3,
          claimIdleMs: 60_000,
          coalesce: {
            coalesceKey: () => 'rule and target',
            onCoalesced: async (ev, into) => void linked.push([ev.alert.fingerprint, into.alert.fingerprint]),
          },
        },
      );
      w.start();
      t.teardown(() => w.stop());
      await until('the queue empty', async () => (await s.queueDepth()) === 0);
      await w.stop();
      if (first === 'evaluates') {
        t.same(handled, ['old'], 'one evaluation');
        t.same(linked, [['new-1', 'old'], ['new-2', 'old']], 'the others linked to it');
      } else {
        t.same(handled, ['old', 'new-1'], 'the first new one evaluated on its own, after it');
        t.same(linked, [['new-2', 'new-1']], 'the next one linked to that evaluation');
      }
    });
  }

  // Found by review (2026-12-06): a linked event became its targets' tail as soon as it was linked,
  // so an event of another key on the same target, begun between the first one and it, no longer
  // held back the events after it: two events for one target ran at once, out of queue order.
  t.test('an event linked to an evaluation still waits, as its targets\' tail, for an event of another key on its target begun before it', async (t) => {
    const s = await make();
    // L and F: one key (F follows L); X and Y: keys of their own; all four on target T, in this order
    const keys: Record<string, string> = { L: 'R1/T', X: 'R2/T', F: 'R1/T', Y: 'R3/T' };
    const takes: Record<string, number> = { L: 50, X: 400, F: 50, Y: 50 };
    await s.intake(Object.keys(keys).map((fp) => ({ key: fp, alert: alert(fp) })), 60_000);
    const running = new Set<string>();
    const log: string[] = [];
    const { w } = worker(
      s,
      async (ev) => {
        const fp = ev.alert.fingerprint;
        if (running.size > 0) log.push(`${fp} began while ${[...running].join(',')} ran`);
        running.add(fp);
        log.push(`begin ${fp}`);
        await sleep(takes[fp]!);
        running.delete(fp);
        return true;
      },
      {
        maxDeliveries: 3,
        claimIdleMs: 60_000,
        coalesce: {
          coalesceKey: (ev) => keys[ev.alert.fingerprint],
          targetsOf: () => ['T'],
          onCoalesced: async (ev, into) => void log.push(`link ${ev.alert.fingerprint} to ${into.alert.fingerprint}`),
        },
      },
    );
    w.start();
    t.teardown(() => w.stop());
    await until('the queue empty', async () => (await s.queueDepth()) === 0);
    await w.stop();
    t.same(log.filter((l) => l.includes('while')), [], 'never two at once on T');
    t.same(log.filter((l) => l.startsWith('begin')), ['begin L', 'begin X', 'begin Y'], 'in queue order');
    t.ok(log.includes('link F to L'));
  });
}
