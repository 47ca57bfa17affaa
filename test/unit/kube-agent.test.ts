// The API client's connection pool (src/kube/agent.ts) against a real TLS server: calls share one
// kept-alive connection instead of a TCP connection and a TLS handshake each, the server's
// certificate is still verified, and a changed TLS identity gets its own pool.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { IDLE_SOCKET_MS, SharedAgent } from '../../src/kube/agent.js';
import { ClientNodeKube, RESOURCES } from '../../src/kube/client.js';
import { KubeApiError } from '../../src/kube/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-kube-agent-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A self-signed certificate for 127.0.0.1 (openssl, as the cluster harness makes its own). */
function selfSigned(name: string): { cert: Buffer; key: Buffer } {
  const r = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', `${name}.key`, '-out', `${name}.crt`],
    { cwd: dir, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`openssl failed: ${r.error?.message ?? r.stderr}`);
  return { cert: fs.readFileSync(path.join(dir, `${name}.crt`)), key: fs.readFileSync(path.join(dir, `${name}.key`)) };
}

const server = selfSigned('server');
const other = selfSigned('other');
let connections = 0;
const requests: string[] = [];
const api = https.createServer({ cert: server.cert, key: server.key }, (req, res) => {
  requests.push(`${req.method} ${req.url}`);
  req.resume();
  req.on('end', () => {
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

function client(ca: Buffer): ClientNodeKube {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: url, caData: ca.toString('base64') }],
    users: [{ name: 'u', token: 't0ken' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return new ClientNodeKube(kc, { timeoutMs: 2000 });
}

t.test('calls share one kept-alive TLS connection', async (t) => {
  const kube = client(server.cert);
  connections = 0;
  requests.length = 0;
  for (let i = 0; i < 5; i++) await kube.get(RESOURCES.deployments, 'shop', 'web');
  await kube.list(RESOURCES.replicasets, 'shop', { labelSelector: 'app=web' });
  await kube.patch(RESOURCES.deployments, 'shop', 'web', [{ op: 'replace', path: '/spec/replicas', value: 2 }], 'json');
  await kube.get(RESOURCES.services, 'shop', 'web');
  t.equal(requests.length, 8, 'every call reached the server');
  t.equal(connections, 1, 'over one connection and one handshake');
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

t.test('SharedAgent: one pool per TLS identity; proxy and plain-HTTP agents left alone', async (t) => {
  const shared = new SharedAgent();
  t.teardown(() => shared.destroy());
  const a = shared.for(new https.Agent({ ca: server.cert }));
  t.not(a, undefined);
  t.equal(shared.for(new https.Agent({ ca: Buffer.from(server.cert) })), a, 'the same identity, read again: the same pool');
  t.ok(a instanceof https.Agent);
  const pooled = a as https.Agent;
  t.equal((pooled as unknown as { keepAlive: boolean }).keepAlive, true, 'connections are kept alive');
  t.equal(pooled.options.timeout, IDLE_SOCKET_MS, 'and closed after idling IDLE_SOCKET_MS');
  t.equal(pooled.options.ca, server.cert, 'with the CA it was given');

  const rotated = shared.for(new https.Agent({ ca: server.cert, cert: other.cert, key: other.key }));
  t.not(rotated, a, 'a new client certificate: a new pool');
  t.equal((rotated as https.Agent).options.cert, other.cert);
  t.not(shared.for(new https.Agent({ ca: server.cert, rejectUnauthorized: false })), rotated, 'verification turned off is another identity');

  const plain = new http.Agent();
  t.equal(shared.for(plain), plain, 'plain HTTP: as client-node built it');
  class ProxyAgent extends https.Agent {}
  const proxy = new ProxyAgent({ ca: server.cert });
  t.equal(shared.for(proxy), proxy, 'a proxy agent: as client-node built it');
});
