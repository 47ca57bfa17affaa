// The real @kubernetes/client-node wrapper against a small HTTP server that holds reads: at most
// KUBE_MAX_CONCURRENT_READS reads reach the API server at once, the others wait their turn (counted
// in rollguard_dependency_calls_waiting), P0 alerts' first; writes are never held back behind them;
// a read whose caller gave up, or whose deadline passed, while it waited leaves at once and never
// reaches the server.
import t, { type Test } from 'tap';
import * as http from 'node:http';
import { ClientNodeKube } from '../../../src/kube/client.js';
import { P0_EXTRA_CALLS } from '../../../src/turns.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { createMetrics } from '../../../src/metrics.js';
import { loopbackKubeConfig } from '../../support/loopback-kube.js';

const held: { url: string; res: http.ServerResponse }[] = [];
const writes: string[] = [];
let inFlightReads = 0;
let mostReads = 0;
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    if (req.method !== 'GET') {
      writes.push(`${req.method} ${req.url}`);
      res.end(JSON.stringify({ metadata: { name: 'web' } }));
      return;
    }
    inFlightReads++;
    mostReads = Math.max(mostReads, inFlightReads);
    res.on('finish', () => inFlightReads--);
    held.push({ url: req.url!, res });
  });
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
t.teardown(() => {
  server.closeAllConnections();
  server.close();
});

const kc = loopbackKubeConfig(server);

async function until(t: Test, what: string, cond: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return t.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const answer = (i: number) => held[i]!.res.end(JSON.stringify({ metadata: { name: `d${i}` } }));

t.test('reads: at most maxConcurrentReads at once, the rest wait their turn; writes pass them', async (t) => {
  held.length = 0;
  writes.length = 0;
  mostReads = 0;
  const metrics = createMetrics({ defaults: false });
  const kube = new ClientNodeKube(kc, { timeoutMs: 5000, maxConcurrentReads: 2, metrics });
  const reads = Array.from({ length: 5 }, (_, i) => kube.get(RESOURCES.deployments, 'shop', `d${i}`, { precedence: 2 }));
  await until(t, 'two reads at the server', () => held.length === 2);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(held.length, 2, 'only two reads reached the API server');
  t.match(await metrics.registry.metrics(), /rollguard_dependency_calls_waiting\{dependency="kubernetes"\} 3/);

  // a rollback's write while every read place is taken: sent at once
  await kube.patch(RESOURCES.deployments, 'shop', 'web', { spec: { paused: false } }, 'merge');
  t.same(writes, ['PATCH /apis/apps/v1/namespaces/shop/deployments/web?fieldManager=rollguard']);

  for (let i = 0; i < 5; i++) {
    await until(t, `read ${i + 1} at the server`, () => held.length > i);
    answer(i);
  }
  const got = await Promise.all(reads);
  t.same(got.map((d) => d.metadata?.name), ['d0', 'd1', 'd2', 'd3', 'd4'], 'every read answered, in the order asked');
  t.equal(mostReads, 2, 'never more than two reads at once');
  t.match(await metrics.registry.metrics(), /rollguard_dependency_calls_waiting\{dependency="kubernetes"\} 0/);
});

t.test('a read whose caller gave up while it waited its turn leaves the line at once and is never sent', async (t) => {
  held.length = 0;
  const metrics = createMetrics({ defaults: false });
  const kube = new ClientNodeKube(kc, { timeoutMs: 5000, maxConcurrentReads: 1, metrics });
  const first = kube.get(RESOURCES.deployments, 'shop', 'd0');
  await until(t, 'the first read at the server', () => held.length === 1);
  const gaveUp = new AbortController();
  const second = kube.get(RESOURCES.deployments, 'shop', 'gone', { signal: gaveUp.signal }).then(() => undefined, (e: unknown) => e);
  const third = kube.get(RESOURCES.deployments, 'shop', 'd2');
  await new Promise((r) => setImmediate(r));
  t.match(await metrics.registry.metrics(), /rollguard_dependency_calls_waiting\{dependency="kubernetes"\} 2/);
  gaveUp.abort();
  // rejected while the first read still holds the only place
  const err = await second;
  t.ok(err instanceof KubeApiError, 'a KubeApiError');
  t.equal((err as KubeApiError).status, 'timeout');
  t.match((err as KubeApiError).message, /cancelled by caller while waiting its turn \(never sent\)/);
  t.match(await metrics.registry.metrics(), /rollguard_dependency_calls_waiting\{dependency="kubernetes"\} 1/, 'no longer counted waiting');
  answer(0);
  await first;
  await until(t, 'the third read at the server', () => held.length === 2);
  answer(1);
  t.equal((await third).metadata?.name, 'd1');
  t.same(held.map((h) => h.url), ['/apis/apps/v1/namespaces/shop/deployments/d0', '/apis/apps/v1/namespaces/shop/deployments/d2'], 'the abandoned read never reached the server; its place went to the next');
});

t.test("a P0 alert's read goes before the storm's reads already waiting", async (t) => {
  held.length = 0;
  const kube = new ClientNodeKube(kc, { timeoutMs: 5000, maxConcurrentReads: 1 });
  const storm = Array.from({ length: 3 }, (_, i) => kube.get(RESOURCES.deployments, 'shop', `storm${i}`, { precedence: 2 }));
  await until(t, 'the first storm read at the server', () => held.length === 1);
  const p0 = kube.get(RESOURCES.deployments, 'shop', 'p0', { precedence: 0 });
  for (let i = 0; i < 4; i++) {
    await until(t, `read ${i + 1} at the server`, () => held.length > i);
    if (i < 3) await new Promise((r) => setTimeout(r, 20)); // time for a wrong one to come first
    answer(i);
  }
  await Promise.all([p0, ...storm]);
  t.same(held.map((h) => h.url.split('/').at(-1)), ['storm0', 'p0', 'storm1', 'storm2']);
});

t.test("a read that waited all of its deadline for a turn is never sent, and says why", async (t) => {
  t.setTimeout(20_000); // a wait with no bound would hang here
  held.length = 0;
  const kube = new ClientNodeKube(kc, { timeoutMs: 300, maxConcurrentReads: 1 });
  // the first read, with a deadline of its own long enough to hold the only place throughout
  const first = kube.get(RESOURCES.deployments, 'shop', 'd0', { timeoutMs: 5000 });
  await until(t, 'the first read at the server', () => held.length === 1);
  const started = Date.now();
  const err = await kube.get(RESOURCES.deployments, 'shop', 'late').then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof KubeApiError);
  t.equal((err as KubeApiError).status, 'timeout');
  t.match((err as KubeApiError).message, /no turn to send it within 300 ms: KUBE_MAX_CONCURRENT_READS=1 reads were in flight all that time; never sent/);
  t.ok(Date.now() - started < 2000, 'at its deadline, not once the first read ends');
  answer(0);
  await first;
  await new Promise((r) => setTimeout(r, 50));
  t.same(held.map((h) => h.url.split('/').at(-1)), ['d0'], 'never sent');
});

t.test("a P0 alert's read that waited all of its deadline names the places kept for P0 reads too", async (t) => {
  t.setTimeout(20_000);
  held.length = 0;
  const kube = new ClientNodeKube(kc, { timeoutMs: 300, maxConcurrentReads: 1 });
  // the one place and the places kept for P0 reads, all held by P0 reads
  const holding = Array.from({ length: 1 + P0_EXTRA_CALLS }, (_, i) => kube.get(RESOURCES.deployments, 'shop', `h${i}`, { timeoutMs: 5000, precedence: 0 }));
  await until(t, 'every place held', () => held.length === 1 + P0_EXTRA_CALLS);
  const err = await kube.get(RESOURCES.deployments, 'shop', 'late', { precedence: 0 }).then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof KubeApiError);
  t.match((err as KubeApiError).message, new RegExp(`KUBE_MAX_CONCURRENT_READS=1 reads, and the ${P0_EXTRA_CALLS} more kept for P0 alerts' reads, were in flight all that time; never sent`));
  for (let i = 0; i < held.length; i++) answer(i);
  await Promise.all(holding);
});

t.test('a read that got its turn late has its whole deadline to be answered', async (t) => {
  held.length = 0;
  // a deadline of 2 s with wide margins, so that a busy machine cannot decide the case: the turn
  // comes 1 s inside the deadline, the answer 600 ms inside the second read's own deadline and 400 ms
  // past it had its wait been counted in it
  const kube = new ClientNodeKube(kc, { timeoutMs: 2000, maxConcurrentReads: 1 });
  const first = kube.get(RESOURCES.deployments, 'shop', 'd0', { timeoutMs: 10_000 });
  await until(t, 'the first read at the server', () => held.length === 1);
  const asked = Date.now();
  const second = kube.get(RESOURCES.deployments, 'shop', 'd1').then((d) => d, (e: unknown) => e);
  await new Promise((r) => setTimeout(r, 1000));
  answer(0);
  await first;
  await until(t, 'the second read at the server', () => held.length === 2);
  // answered 1,400 ms after it was sent: 2,400 ms after it was asked, past 2,000 had the wait counted in it
  await new Promise((r) => setTimeout(r, 1400));
  answer(1);
  const got = await second;
  t.notOk(got instanceof Error, `answered (${got instanceof Error ? got.message : ''})`);
  t.equal((got as { metadata?: { name?: string } }).metadata?.name, 'd1');
  t.ok(Date.now() - asked >= 2300, 'more than its deadline after it was asked');
});

t.test(`reads: with every place taken by a storm's reads, a P0 alert's read reaches the API server at once, in the ${P0_EXTRA_CALLS} places kept for them`, async (t) => {
  held.length = 0;
  mostReads = 0;
  const kube = new ClientNodeKube(kc, { timeoutMs: 5000, maxConcurrentReads: 2 });
  const storm = Array.from({ length: 3 }, (_, i) => kube.get(RESOURCES.deployments, 'shop', `storm${i}`, { precedence: 1 }));
  await until(t, "two of the storm's reads at the server", () => held.length === 2);
  const p0 = Array.from({ length: P0_EXTRA_CALLS + 1 }, (_, i) => kube.get(RESOURCES.deployments, 'shop', `p0-${i}`, { precedence: 0 }));
  await until(t, `the ${P0_EXTRA_CALLS} P0 reads at the server`, () => held.length === 2 + P0_EXTRA_CALLS);
  await new Promise((r) => setTimeout(r, 100));
  t.same(held.map((h) => h.url.split('/').pop()), ['storm0', 'storm1', ...Array.from({ length: P0_EXTRA_CALLS }, (_, i) => `p0-${i}`)], "no storm read ended, yet the P0 reads went; the last P0 read and the third storm read wait");
  t.equal(mostReads, 2 + P0_EXTRA_CALLS, 'never more than the bound and the places kept for P0 reads');
  for (let i = 0; i < held.length; i++) answer(i);
  await until(t, 'the waiting reads sent', () => held.length === 2 + P0_EXTRA_CALLS + 2);
  t.same(held.slice(2 + P0_EXTRA_CALLS).map((h) => h.url.split('/').pop()).sort(), [`p0-${P0_EXTRA_CALLS}`, 'storm2']);
  for (let i = 2 + P0_EXTRA_CALLS; i < held.length; i++) answer(i);
  await Promise.all([...storm, ...p0]);
});
