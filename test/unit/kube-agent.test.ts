// The API client's connection pool (src/kube/agent.ts) against a real TLS server: reads share one
// kept-alive connection instead of a TCP connection and a TLS handshake each, writes keep their
// own, the server's certificate is still verified, a connection closed under a read or a timeout
// sends the next read to a new connection, and a changed TLS identity gets its own pool.
import t from 'tap';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { IDLE_SOCKET_MS, SharedAgent } from '../../src/kube/agent.js';
import { ClientNodeKube } from '../../src/kube/client.js';
import { RESOURCES } from '../../src/kube/kube.js';
import { KubeApiError } from '../../src/kube/errors.js';
import { openssl } from '../cluster/harness.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-kube-agent-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A self-signed certificate for 127.0.0.1, made with the cluster harness's openssl runner. */
function selfSigned(name: string): { cert: Buffer; key: Buffer } {
  openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', `${name}.key`, '-out', `${name}.crt`],
    dir,
  );
  return { cert: fs.readFileSync(path.join(dir, `${name}.crt`)), key: fs.readFileSync(path.join(dir, `${name}.key`)) };
}

const server = selfSigned('server');
const other = selfSigned('other');
let connections = 0;
const requests: string[] = [];
type Behaviour = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, nth: number) => boolean;
/** a test's override: returns true when it answered (or dropped) the request itself */
let behaviour: Behaviour = () => false;
const api = https.createServer({ cert: server.cert, key: server.key }, (req, res) => {
  requests.push(`${req.method} ${req.url}`);
  req.resume();
  req.on('end', () => {
    if (behaviour(req, res, requests.length)) return;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(req.url?.includes('replicasets') ? { metadata: { resourceVersion: '7' }, items: [] } : { metadata: { name: 'web' } }));
  });
});
api.on('secureConnection', () => connections++);
await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
t.teardown(() => {
  api.closeAllConnections();
  api.close();
});
const url = `https://127.0.0.1:${(api.address() as AddressInfo).port}`;

function client(ca: Buffer, timeoutMs = 2000): ClientNodeKube {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: url, caData: ca.toString('base64') }],
    users: [{ name: 'u', token: 't0ken' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return new ClientNodeKube(kc, { timeoutMs });
}

t.beforeEach(() => {
  behaviour = () => false;
  connections = 0;
  requests.length = 0;
});

t.test('reads share one kept-alive TLS connection; each write has a connection of its own', async (t) => {
  const kube = client(server.cert);
  for (let i = 0; i < 5; i++) await kube.get(RESOURCES.deployments, 'shop', 'web');
  await kube.list(RESOURCES.replicasets, 'shop', { labelSelector: 'app=web' });
  await kube.get(RESOURCES.services, 'shop', 'web');
  t.equal(requests.length, 7, 'every read reached the server');
  t.equal(connections, 1, 'over one connection and one handshake');
  await kube.patch(RESOURCES.deployments, 'shop', 'web', [{ op: 'replace', path: '/spec/replicas', value: 2 }], 'json');
  await kube.patch(RESOURCES.deployments, 'shop', 'web', [{ op: 'replace', path: '/spec/replicas', value: 3 }], 'json');
  t.equal(connections, 3, 'the two PATCHes opened their own');
  await kube.get(RESOURCES.deployments, 'shop', 'web');
  t.equal(connections, 3, 'the next read is back on the pooled one');
});

t.test('a LIST of chunked pages, each after the other on the pooled connection, comes whole', async (t) => {
  const kube = client(server.cert);
  behaviour = (req, res) => {
    if (!req.url?.includes('replicasets')) return false;
    const page = Number(new URL(req.url, 'https://x').searchParams.get('continue') ?? '0');
    const items = Array.from({ length: 3 }, (_, i) => ({ metadata: { name: `rs-${page}-${i}`, labels: { filler: 'x'.repeat(2000) } } }));
    res.setHeader('content-type', 'application/json');
    // no Content-Length: the body goes out in chunks
    const body = JSON.stringify({ metadata: { resourceVersion: '9', ...(page < 3 ? { continue: String(page + 1) } : {}) }, items });
    res.write(body.slice(0, 1000));
    setTimeout(() => res.end(body.slice(1000)), 5);
    return true;
  };
  const items = await kube.list(RESOURCES.replicasets, 'shop', { labelSelector: 'app=web' });
  t.same(items.map((i) => i.metadata.name).slice(0, 4), ['rs-0-0', 'rs-0-1', 'rs-0-2', 'rs-1-0']);
  t.equal(items.length, 12, 'four pages of three');
  t.equal(requests.length, 4);
  t.equal(connections, 1);
});

t.test('a pooled connection closed under a read: the read is sent again on a new connection', async (t) => {
  const kube = client(server.cert);
  await kube.get(RESOURCES.deployments, 'shop', 'web');
  t.equal(connections, 1);
  // the second request comes over the kept-alive connection: the server closes it without answering
  behaviour = (req, _res, nth) => (nth === 2 ? (req.socket.destroy(), true) : false);
  t.equal((await kube.get(RESOURCES.deployments, 'shop', 'web')).metadata.name, 'web');
  t.equal(requests.length, 3, 'sent twice');
  t.equal(connections, 2, 'the second time on a new connection');
});

t.test('after a read times out, the idle pooled connections are dropped: the next read connects anew', async (t) => {
  const kube = client(server.cert, 300);
  // two reads at once leave two connections in the pool
  await Promise.all([kube.get(RESOURCES.deployments, 'shop', 'a'), kube.get(RESOURCES.deployments, 'shop', 'b')]);
  t.equal(connections, 2);
  behaviour = (req) => req.url?.endsWith('/hang') ?? false;
  const e = await kube.get(RESOURCES.deployments, 'shop', 'hang').catch((err: unknown) => err);
  t.equal((e as KubeApiError).status, 'timeout');
  behaviour = () => false;
  await kube.get(RESOURCES.deployments, 'shop', 'web');
  t.equal(connections, 3, 'not the other pooled connection: it may lead to an API server that went away');
});

t.test('the server certificate is still verified: a client trusting another CA gets a network error, nothing sent', async (t) => {
  const kube = client(other.cert);
  requests.length = 0;
  const e = await kube.get(RESOURCES.deployments, 'shop', 'web').catch((err: unknown) => err);
  t.ok(e instanceof KubeApiError, 'a KubeApiError');
  t.equal((e as KubeApiError).status, 'network');
  t.match((e as KubeApiError).message, /certificate/i);
  t.equal(requests.length, 0);
});

t.test('SharedAgent: one pool per TLS identity; the old pool retired; proxy, plain-HTTP and function options left alone', async (t) => {
  const shared = new SharedAgent();
  const a = shared.for(new https.Agent({ ca: server.cert }));
  t.equal(shared.for(new https.Agent({ ca: Buffer.from(server.cert) })), a, 'the same identity, read again: the same pool');
  t.ok(a instanceof https.Agent);
  const pooled = a as https.Agent;
  t.equal((pooled as unknown as { keepAlive: boolean }).keepAlive, true, 'connections are kept alive');
  t.equal(pooled.options.timeout, IDLE_SOCKET_MS, 'and closed after idling IDLE_SOCKET_MS');
  t.equal(pooled.options.ca, server.cert, 'with the CA it was given');

  const rotated = shared.for(new https.Agent({ ca: server.cert, cert: other.cert, key: other.key }));
  t.not(rotated, a, 'a new client certificate: a new pool');
  t.equal((rotated as https.Agent).options.cert, other.cert);
  t.equal((pooled as unknown as { keepAlive: boolean }).keepAlive, false, 'the old pool keeps no connection any more');
  t.not(shared.for(new https.Agent({ ca: server.cert, rejectUnauthorized: false })), rotated, 'verification turned off is another identity');
  t.not(shared.for(new https.Agent({ ca: server.cert, minVersion: 'TLSv1.3' })), shared.for(new https.Agent({ ca: server.cert })), 'an option the list did not name still counts');

  const checking = new https.Agent({ ca: server.cert, checkServerIdentity: () => undefined });
  t.equal(shared.for(checking), checking, 'a function option cannot be compared: that call is not pooled');
  const plain = new http.Agent();
  t.equal(shared.for(plain), plain, 'plain HTTP: as client-node built it');
  class ProxyAgent extends https.Agent {}
  const proxy = new ProxyAgent({ ca: server.cert });
  t.equal(shared.for(proxy), proxy, 'a proxy agent: as client-node built it');
});
