// Turns (src/turns.ts): the bound on calls at once to a dependency, its line served P0 first.
import { EventEmitter } from 'node:events';
import t from 'tap';
import { Turns, TurnTimeoutError } from '../../src/turns.js';

/** A call that runs until its test ends it: `started` says whether Turns let it run. */
function held(log: string[], name: string) {
  let end!: (v: string) => void;
  let fail!: (e: Error) => void;
  const call = {
    started: false,
    end: (v = name) => end(v),
    fail: (e: Error) => fail(e),
    fn: () =>
      new Promise<string>((resolve, reject) => {
        call.started = true;
        log.push(name);
        end = resolve;
        fail = reject;
      }),
  };
  return call;
}

const tick = () => new Promise((r) => setImmediate(r));

/**
 * One place (`new Turns(1)`, its waiting counts kept in `seen`) and a held call for each name, all
 * logging to `log`, in that order.
 */
function onePlace<N extends string[]>(...names: N) {
  const log: string[] = [];
  const seen: number[] = [];
  const calls = names.map((n) => held(log, n)) as { [K in keyof N]: ReturnType<typeof held> };
  return { log, seen, turns: new Turns(1, (n) => seen.push(n)), calls };
}

t.test('at most max calls at once; a place passes to the next in line as a call ends', async (t) => {
  const log: string[] = [];
  const seen: number[] = [];
  const turns = new Turns(2, (n) => seen.push(n));
  const calls = ['a', 'b', 'c', 'd'].map((n) => held(log, n));
  const settled = Promise.allSettled(calls.map((c) => turns.run(c.fn, { precedence: 2 })));
  await tick();
  t.same(log, ['a', 'b'], 'two run');
  t.equal(turns.waiting, 2);
  t.equal(turns.inFlight, 2);
  calls[0]!.end();
  await tick();
  t.same(log, ['a', 'b', 'c'], 'the first in line runs once a place is free');
  t.equal(turns.inFlight, 2, 'the place passed on: still two at once');
  calls[1]!.fail(new Error('boom'));
  await tick();
  t.same(log, ['a', 'b', 'c', 'd'], 'a call that fails gives its place back too');
  calls[2]!.end();
  calls[3]!.end();
  t.same((await settled).map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled'], "each caller gets its own call's outcome");
  t.equal(turns.inFlight, 0);
  t.equal(turns.waiting, 0);
  t.same(seen, [0, 1, 2, 1, 0], 'the waiting count is reported from the start and at each change');
});

t.test("the line is served by lane: a P0 call goes before every P1 and P2 call waiting, whenever they came; one lane's first come first served", async (t) => {
  const { log, turns, calls: [first] } = onePlace('running');
  const names = ['p2-a', 'p1-a', 'p2-b', 'p0-a', 'p1-b', 'p0-b'];
  const lanes = [2, 1, 2, 0, 1, 0] as const;
  const calls = names.map((n) => held(log, n));
  const all = [turns.run(first.fn, { precedence: 2 }), ...calls.map((c, i) => turns.run(c.fn, { precedence: lanes[i]! }))];
  await tick();
  first.end();
  for (let i = 0; i < calls.length; i++) {
    await tick();
    t.equal(log.length, i + 2, 'one more call runs as the one before ends, never two');
    calls[names.indexOf(log.at(-1)!)]!.end();
  }
  await Promise.all(all);
  t.same(log, ['running', 'p0-a', 'p0-b', 'p1-a', 'p1-b', 'p2-a', 'p2-b']);
});

t.test('unset precedence goes first (lane 0): work that is not an alert\'s', async (t) => {
  const { log, turns, calls: [first, p1, unset] } = onePlace('running', 'p1', 'unset');
  const all = [turns.run(first.fn), turns.run(p1.fn, { precedence: 1 }), turns.run(unset.fn)];
  await tick();
  first.end();
  await tick();
  t.same(log, ['running', 'unset']);
  unset.end();
  await tick();
  p1.end();
  await Promise.all(all);
});

t.test('a caller that gives up while waiting leaves the line at once: rejected with its reason, its call never made, no place taken from anyone', async (t) => {
  const { log, seen, turns, calls: [first, gaveUp, next] } = onePlace('running', 'gave-up', 'next');
  const ac = new AbortController();
  const running = turns.run(first.fn);
  const abandoned = turns.run(gaveUp.fn, { precedence: 0, signal: ac.signal });
  const after = turns.run(next.fn, { precedence: 2 });
  await tick();
  t.equal(turns.waiting, 2);
  const reason = new Error('deadline');
  ac.abort(reason);
  // rejected now, while the running call still holds the only place
  t.equal(await abandoned.then(() => 'ran', (e: unknown) => e), reason, 'rejected with the signal\'s reason, before any place came free');
  t.equal(turns.waiting, 1, 'out of the line');
  t.equal(seen.at(-1), 1, 'and the gauge told');
  first.end();
  await tick();
  t.same(log, ['running', 'next'], 'the place went to the next in line; the abandoned call was never made');
  next.end();
  await Promise.all([running, after]);
  t.equal(turns.inFlight, 0, 'no place lost or leaked');
  t.equal(gaveUp.started, false);
});

t.test('a signal aborted before the call waits: rejected at once, never queued', async (t) => {
  const { log, turns, calls: [first] } = onePlace('running');
  const running = turns.run(first.fn);
  const reason = new Error('already');
  const late = held(log, 'late');
  await t.rejects(turns.run(late.fn, { signal: AbortSignal.abort(reason) }), reason);
  t.equal(turns.waiting, 0);
  first.end();
  await running;
  t.equal(late.started, false);
});

t.test('an abort after the call got its place changes nothing here (the call itself is handed the signal)', async (t) => {
  const { log, turns, calls: [first, second] } = onePlace('running', 'second');
  const ac = new AbortController();
  const a = turns.run(first.fn);
  const b = turns.run(second.fn, { signal: ac.signal });
  await tick();
  first.end();
  await tick();
  t.equal(second.started, true);
  ac.abort(new Error('late'));
  second.end('answered');
  t.equal(await b, 'answered');
  await a;
  t.equal(turns.inFlight, 0);
});

t.test("a health check ('check') never waits and takes no place", async (t) => {
  const { log, turns, calls: [first, queued, check] } = onePlace('running', 'queued', 'check');
  const a = turns.run(first.fn);
  const b = turns.run(queued.fn, { precedence: 0 });
  const c = turns.run(check.fn, { precedence: 'check' });
  await tick();
  t.same(log, ['running', 'check'], 'the check runs beside the bound');
  check.end();
  await c;
  t.equal(queued.started, false, 'and took no place: the one in line still waits for the running call');
  first.end();
  await tick();
  queued.end();
  await Promise.all([a, b]);
});

t.test('max must be a whole number of at least 1', async (t) => {
  t.throws(() => new Turns(0), RangeError);
  t.throws(() => new Turns(1.5), RangeError);
});

t.test('a call that waits waitMs without a turn leaves the line: TurnTimeoutError, never made, no place taken', async (t) => {
  const { log, seen, turns, calls: [first, late] } = onePlace('running', 'late');
  const running = turns.run(first.fn);
  const started = Date.now();
  const err = await turns.run(late.fn, { precedence: 0, waitMs: 50 }).then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof TurnTimeoutError, 'TurnTimeoutError');
  t.match((err as Error).message, /no turn within 50 ms: 1 calls were in flight all that time; never sent/);
  t.ok(Date.now() - started >= 45, 'after its wait, not before');
  t.equal(late.started, false, 'never made');
  t.equal(turns.waiting, 0);
  t.equal(seen.at(-1), 0, 'the gauge told');
  first.end();
  await running;
  t.equal(turns.inFlight, 0, 'the place freed, not handed to the one that left');
});

t.test('a call that gets its turn before waitMs runs to its end, however long: the wait bound is not its time limit', async (t) => {
  const { log, turns, calls: [first, second] } = onePlace('running', 'second');
  const a = turns.run(first.fn);
  const b = turns.run(second.fn, { waitMs: 100 });
  await new Promise((r) => setTimeout(r, 30));
  first.end();
  await a;
  await new Promise((r) => setTimeout(r, 150)); // past its waitMs, running
  second.end('answered');
  t.equal(await b, 'answered');
});

t.test('a call that got its turn leaves nothing behind: no abort listener on its signal, no wait timer', async (t) => {
  const getEventListeners = EventEmitter.getEventListeners;
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const { log, turns, calls: [first, second] } = onePlace('running', 'second');
  const ac = new AbortController();
  const before = timers();
  const a = turns.run(first.fn);
  const b = turns.run(second.fn, { signal: ac.signal, waitMs: 60_000 });
  await tick();
  t.equal(getEventListeners(ac.signal, 'abort').length, 1, 'listening on the signal while it waits');
  t.equal(timers(), before + 1, 'its wait timer set while it waits');
  first.end();
  await tick();
  t.equal(second.started, true, 'it got its turn');
  t.equal(getEventListeners(ac.signal, 'abort').length, 0, 'the listener removed once it has its place');
  t.equal(timers(), before, 'the wait timer cleared once it has its place');
  second.end('answered');
  t.equal(await b, 'answered');
  await a;
});

t.test('places kept for lane 0 (p0Extra): with every place taken, lane 0 calls start at once, up to p0Extra more; later ones wait, and an extra place passes only to lane 0', async (t) => {
  const log: string[] = [];
  const turns = new Turns(2, undefined, 2);
  const storm = ['p1-a', 'p1-b', 'p1-c'].map((n) => held(log, n));
  const p0 = ['p0-a', 'p0-b', 'p0-c'].map((n) => held(log, n));
  const all = storm.map((c) => turns.run(c.fn, { precedence: 1 }));
  await tick();
  t.same(log, ['p1-a', 'p1-b'], 'the two places taken; the third P1 call waits');
  all.push(...p0.map((c) => turns.run(c.fn, { precedence: 0 })));
  await tick();
  t.same(log, ['p1-a', 'p1-b', 'p0-a', 'p0-b'], 'two P0 calls start at once in the places kept for them, no P1 call having ended');
  t.equal(turns.inFlight, 4, 'max + p0Extra at once, never more');
  t.equal(turns.waiting, 2, 'the third P0 call and the third P1 call wait');
  p0[0]!.end();
  await tick();
  t.same(log.slice(4), ['p0-c'], "an ended P0 call's extra place passes to the P0 call waiting");
  p0[1]!.end();
  await tick();
  t.same(log.slice(5), [], 'an extra place never passes to a P1 call: it waits for one of the two places');
  t.equal(turns.inFlight, 3);
  storm[0]!.end();
  await tick();
  t.same(log.slice(5), ['p1-c'], 'a place of the two, freed, goes to it');
  for (const c of [...storm.slice(1), p0[2]!]) c.end();
  await Promise.all(all);
  t.equal(turns.inFlight, 0);
  t.equal(turns.waiting, 0);
});

t.test('p0Extra must be a whole number of at least 0', async (t) => {
  t.throws(() => new Turns(1, undefined, -1), /whole number of at least 0, got -1/);
  t.throws(() => new Turns(1, undefined, 1.5), /got 1\.5/);
  t.equal(new Turns(1).p0Extra, 0, 'none unless asked for');
});

t.test('unset precedence waits first in line but takes no place kept for P0 alerts; an extra place passes to a P0 call behind it', async (t) => {
  const log: string[] = [];
  const turns = new Turns(1, undefined, 1);
  const [busy, unset, p0a, p0b] = ['busy', 'unset', 'p0-a', 'p0-b'].map((n) => held(log, n)) as [ReturnType<typeof held>, ReturnType<typeof held>, ReturnType<typeof held>, ReturnType<typeof held>];
  const all = [turns.run(busy.fn, { precedence: 1 }), turns.run(unset.fn)];
  await tick();
  t.same(log, ['busy'], 'an unset call waits for the one place');
  all.push(turns.run(p0a.fn, { precedence: 0 }), turns.run(p0b.fn, { precedence: 0 }));
  await tick();
  t.same(log, ['busy', 'p0-a'], 'a P0 call takes the extra place');
  p0a.end();
  await tick();
  t.same(log, ['busy', 'p0-a', 'p0-b'], 'its extra place passes to the P0 call, past the unset one ahead of it in lane 0');
  busy.end();
  await tick();
  t.same(log.at(-1), 'unset', 'the unset call gets the place when it frees');
  unset.end();
  p0b.end();
  await Promise.all(all);
  t.equal(turns.inFlight, 0);
});
