// The real @kubernetes/client-node wrapper against a small HTTP server that holds reads: at most
// KUBE_MAX_CONCURRENT_READS reads reach the API server at once, the others wait their turn (counted
// in rollguard_dependency_calls_waiting), writes are never held back behind them, and a read whose
// caller gave up while it waited never reaches the server.
import t, { type Test } from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { ClientNodeKube } from '../../../src/kube/client.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { createMetrics } from '../../../src/metrics.js';

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

const kc = new KubeConfig();
kc.loadFromOptions({
  clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
  users: [{ name: 'u', token: 't0ken' }],
  contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
  currentContext: 'x',
});

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
  const reads = Array.from({ length: 5 }, (_, i) => kube.get(RESOURCES.deployments, 'shop', `d${i}`));
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

t.test('a read whose caller gave up while it waited its turn is not sent', async (t) => {
  held.length = 0;
  const kube = new ClientNodeKube(kc, { timeoutMs: 5000, maxConcurrentReads: 1 });
  const first = kube.get(RESOURCES.deployments, 'shop', 'd0');
  await until(t, 'the first read at the server', () => held.length === 1);
  const gaveUp = new AbortController();
  const second = kube.get(RESOURCES.deployments, 'shop', 'gone', { signal: gaveUp.signal });
  gaveUp.abort();
  answer(0);
  await first;
  const err = await second.then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof KubeApiError, 'a KubeApiError');
  t.match((err as KubeApiError).message, /cancelled by caller/);
  await new Promise((r) => setTimeout(r, 50));
  t.same(held.map((h) => h.url), ['/apis/apps/v1/namespaces/shop/deployments/d0'], 'the abandoned read never reached the server');
});
