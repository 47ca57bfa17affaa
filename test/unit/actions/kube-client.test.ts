// The real @kubernetes/client-node wrapper against a small HTTP server answering what an API
// server answers when things go wrong: every failure must come out as a clear KubeApiError.
import t from 'tap';
import * as http from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { ClientNodeKube } from '../../../src/kube/client.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { deploymentAction } from '../../../src/actions/deployment.js';
import { loopbackKubeConfig } from '../../support/loopback-kube.js';

type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void;
let handler: Handler = (_q, _b, res) => res.end('{}');
const seen: { method: string; url: string; contentType?: string; body: string }[] = [];
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    seen.push({ method: req.method!, url: req.url!, ...(req.headers['content-type'] ? { contentType: req.headers['content-type'] } : {}), body });
    handler(req, body, res);
  });
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
t.teardown(() => {
  server.closeAllConnections();
  server.close();
});

const kc = loopbackKubeConfig(server);
// A deadline no answer of this server comes near, even on a busy machine (the first request also
// loads client-node's lazy parts); the deadline's own cases use `tight`.
const kube = new ClientNodeKube(kc, { timeoutMs: 10_000 });
const tight = new ClientNodeKube(kc, { timeoutMs: 300 });

function status(code: number, reason: string, message: string): Handler {
  return (_q, _b, res) => {
    res.statusCode = code;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message }));
  };
}

async function failure(p: Promise<unknown>): Promise<KubeApiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof KubeApiError) return e;
    throw e;
  }
  throw new Error('expected a failure');
}

t.test('requests: raw JSON kept, patch content types, field manager, dry run', async (t) => {
  handler = (_q, _b, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ metadata: { name: 'web', generation: 4 }, spec: { template: { spec: { newFieldOf2030: { x: 1 } } } } }));
  };
  seen.length = 0;
  const d = await kube.get(RESOURCES.deployments, 'shop', 'web');
  t.same(d.spec.template.spec.newFieldOf2030, { x: 1 }, 'fields unknown to the client models survive');
  t.equal(seen[0]!.url, '/apis/apps/v1/namespaces/shop/deployments/web');
  await kube.patch(RESOURCES.deployments, 'shop', 'web', [{ op: 'test', path: '/metadata/generation', value: 4 }], 'json');
  await kube.patch(RESOURCES.statefulsets, 'shop', 'db', { spec: {} }, 'strategic', { dryRun: true });
  await kube.patch(RESOURCES.rollouts, 'shop', 'gb', { status: { abort: true } }, 'merge', { subresource: 'status' });
  await kube.patch(RESOURCES.services, 'shop', 'api', { spec: { selector: { version: 'blue' } } }, 'merge');
  await kube.list(RESOURCES.replicasets, 'shop', { labelSelector: 'app=web' });
  t.same(
    seen.slice(1).map((s) => [s.method, s.url, s.contentType]),
    [
      ['PATCH', '/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=rollguard', 'application/json-patch+json'],
      ['PATCH', '/apis/apps/v1/namespaces/shop/statefulsets/db?dryRun=All&fieldManager=rollguard', 'application/strategic-merge-patch+json'],
      ['PATCH', '/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/gb/status?fieldManager=rollguard', 'application/merge-patch+json'],
      ['PATCH', '/api/v1/namespaces/shop/services/api?fieldManager=rollguard', 'application/merge-patch+json'],
      ['GET', '/apis/apps/v1/namespaces/shop/replicasets?labelSelector=app%3Dweb&limit=500', undefined],
    ],
  );
  t.equal(seen[1]!.body, '[{"op":"test","path":"/metadata/generation","value":4}]');
});

t.test('403, 404, 409, 500: status, reason, the server’s message, retriable', async (t) => {
  const cases: [number, string, string, boolean][] = [
    [403, 'Forbidden', 'deployments.apps "web" is forbidden: User "system:serviceaccount:rollguard-system:rollguard" cannot patch resource "deployments"', false],
    [404, 'NotFound', 'deployments.apps "web" not found', false],
    [409, 'Conflict', 'Operation cannot be fulfilled on deployments.apps "web": the object has been modified', true],
    [500, 'InternalError', 'Internal error occurred: etcdserver: request timed out', true],
  ];
  for (const [code, reason, message, retriable] of cases) {
    handler = status(code, reason, message);
    const e = await failure(kube.patch(RESOURCES.deployments, 'shop', 'web', [], 'json'));
    t.equal(e.status, code);
    t.equal(e.reason, reason);
    t.equal(e.retriable, retriable, `${code} retriable=${retriable}`);
    t.match(e.message, `PATCH apps/v1 deployments shop/web: HTTP ${code} ${reason}: ${message}`);
  }
  handler = (_q, _b, res) => {
    res.statusCode = 502;
    res.end('<html>bad gateway</html>');
  };
  const e = await failure(kube.get(RESOURCES.deployments, 'shop', 'web'));
  t.equal(e.status, 502);
  t.equal(e.reason, 'BadGateway');
});

t.test('a hanging API server: timeout after the deadline; the caller can cancel', async (t) => {
  handler = () => {
    /* never answers */
  };
  const t0 = Date.now();
  const e = await failure(tight.get(RESOURCES.deployments, 'shop', 'web'));
  t.equal(e.status, 'timeout');
  t.equal(e.retriable, true);
  t.match(e.message, /no answer within 300 ms/);
  t.ok(Date.now() - t0 < 2000, 'the deadline held');
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  const c = await failure(kube.get(RESOURCES.deployments, 'shop', 'web', { signal: ac.signal, timeoutMs: 5000 }));
  t.equal(c.status, 'timeout');
  t.equal(c.reason, 'Aborted');
});

t.test('nothing listening: network error', async (t) => {
  const dead = new KubeConfig();
  dead.loadFromOptions({
    clusters: [{ name: 'c', server: 'http://127.0.0.1:1', skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const e = await failure(new ClientNodeKube(dead).get(RESOURCES.deployments, 'shop', 'web'));
  t.equal(e.status, 'network');
  t.equal(e.retriable, true);
  t.match(e.message, /ECONNREFUSED/);
});

t.test('a connection reset before any answer: a read is sent once more, a write never twice', async (t) => {
  let resets = 0;
  const ok: Handler = (_q, _b, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ metadata: { name: 'web' } }));
  };
  // the server drops the connection under the first `n` requests, as one closing a pooled connection does
  const resetting = (n: number): Handler => (q, b, res) => (resets++ < n ? q.socket.destroy() : ok(q, b, res));
  handler = resetting(1);
  seen.length = 0;
  t.equal((await kube.get(RESOURCES.deployments, 'shop', 'web')).metadata.name, 'web');
  t.equal(seen.filter((r) => r.method === 'GET').length, 2, 'the GET was sent a second time');

  resets = 0;
  seen.length = 0;
  t.equal((await kube.list(RESOURCES.replicasets, 'shop', { labelSelector: 'app=web' })).length, 0);
  t.equal(seen.length, 2, 'a LIST page too');

  resets = 0;
  handler = resetting(2);
  seen.length = 0;
  const twice = await failure(kube.get(RESOURCES.deployments, 'shop', 'web'));
  t.equal(twice.status, 'network');
  t.equal(twice.reason, 'ECONNRESET');
  t.equal(seen.length, 2, 'one retry only');

  // the two tries share the read's deadline: a reset late in it leaves the second try only the rest
  handler = (q) => {
    if (seen.length === 1) setTimeout(() => q.socket.destroy(), 150);
    // the second request is never answered
  };
  seen.length = 0;
  const late = await failure(tight.get(RESOURCES.deployments, 'shop', 'web'));
  t.equal(late.status, 'timeout');
  t.equal(seen.length, 2);
  const given = Number(/no answer within (\d+) ms/.exec(late.message)?.[1]);
  t.ok(given > 0 && given < 300, `the second try had what was left of 300 ms (${given} ms)`);

  resets = 0;
  handler = resetting(1);
  seen.length = 0;
  const w = await failure(kube.patch(RESOURCES.deployments, 'shop', 'web', [{ op: 'replace', path: '/spec/replicas', value: 2 }], 'json'));
  t.equal(w.status, 'network');
  t.equal(seen.filter((r) => r.method === 'PATCH').length, 1, 'the PATCH is not sent again');
  handler = ok;
});

t.test('through an action: a 500 while planning is a clear error, tried once', async (t) => {
  handler = status(500, 'InternalError', 'etcd leader changed');
  seen.length = 0;
  const ctx = { kube, logger: pino({ level: 'silent' }), changeCause: 'x', checkFence: async () => {} };
  const e = await failure(deploymentAction.plan({ kind: 'Deployment', namespace: 'shop', name: 'web' }, ctx));
  t.equal(e.status, 500);
  t.equal(seen.length, 1, 'one request, no retry loop');
});

t.test('a list comes in pages of 500, following the continue token, as one list', async (t) => {
  const pages: Record<string, { items: { metadata: { name: string } }[]; next?: string }> = {
    '': { items: [{ metadata: { name: 'a' } }, { metadata: { name: 'b' } }], next: 'tok1' },
    tok1: { items: [{ metadata: { name: 'c' } }], next: 'tok2' },
    tok2: { items: [{ metadata: { name: 'd' } }] },
  };
  handler = (q, _b, res) => {
    const u = new URL(q.url!, 'http://x');
    const p = pages[u.searchParams.get('continue') ?? '']!;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ kind: 'List', apiVersion: 'v1', metadata: { resourceVersion: '7', ...(p.next ? { continue: p.next } : {}) }, items: p.items }));
  };
  for (const rt of [RESOURCES.deployments, RESOURCES.configmaps]) {
    seen.length = 0;
    const items = await kube.list(rt, 'shop');
    t.same(items.map((i) => i.metadata.name), ['a', 'b', 'c', 'd'], `${rt.plural}: every page, in order`);
    t.same(
      seen.map((s) => new URL(s.url, 'http://x').searchParams.get('continue')),
      [null, 'tok1', 'tok2'],
      `${rt.plural}: three requests, each after the previous page's token`,
    );
    t.ok(seen.every((s) => new URL(s.url, 'http://x').searchParams.get('limit') === '500'), 'each asks for at most 500');
  }
});

t.test('a continue token expired between pages (410 Gone) starts the list again, once', async (t) => {
  let expired = 0;
  handler = (q, _b, res) => {
    const cont = new URL(q.url!, 'http://x').searchParams.get('continue');
    res.setHeader('content-type', 'application/json');
    if (cont === 'old') {
      expired++;
      res.statusCode = 410;
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 410, reason: 'Expired', message: 'The provided continue parameter is too old' }));
      return;
    }
    if (cont === null && expired === 0) {
      res.end(JSON.stringify({ metadata: { continue: 'old' }, items: [{ metadata: { name: 'stale' } }] }));
      return;
    }
    res.end(JSON.stringify({ metadata: {}, items: [{ metadata: { name: 'x' } }, { metadata: { name: 'y' } }] }));
  };
  const items = await kube.list(RESOURCES.deployments, 'shop');
  t.same(items.map((i) => i.metadata.name), ['x', 'y'], 'the list read again from its start, nothing of the first try kept');
  t.equal(expired, 1);
  handler = (q, _b, res) => {
    const cont = new URL(q.url!, 'http://x').searchParams.get('continue');
    res.setHeader('content-type', 'application/json');
    if (cont) {
      res.statusCode = 410;
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 410, reason: 'Expired', message: 'too old' }));
      return;
    }
    res.end(JSON.stringify({ metadata: { continue: 'again' }, items: [] }));
  };
  const err = await failure(kube.list(RESOURCES.deployments, 'shop'));
  t.equal(err.status, 410, 'expired twice: the 410 is the answer');
});
