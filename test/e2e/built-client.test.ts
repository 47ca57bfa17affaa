// The built rollguard (tsc, then scripts/bundle-client-node.mjs, as `npm run build` and the image
// do) against a real control plane: its src/kube/client-node.ts is one bundled file, not the
// library's entry, and an alert through it rolls a Deployment back (reads, the patch, the watch of
// the rollout) exactly as the tests' tsx runs do with the library itself; and every way a user gives
// rollguard a cluster (client certificates, a token, a token file, an exec plugin, oidc, in-cluster,
// $KUBECONFIG, insecure-skip-tls-verify, an HTTP or SOCKS5 proxy-url) reads, watches and fails
// through the bundle as through the library, in a plain node process (test/support/built-client-cases.mjs).
// The build goes to a directory of its own, so the checkout's dist/ is neither read nor written.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import t from 'tap';
import { startCluster } from '../cluster/harness.js';
import { ADMIN_TOKEN, WEBHOOK_TOKEN } from '../support/app.js';
import { killOnExit } from '../support/children.js';
import { waitFor } from '../support/ports.js';
import { ROOT, startServe } from '../support/serve.js';
import { startTcpRelay } from '../support/tcp-relay.js';
import { startConnectProxy, startSocks5Proxy } from '../support/tunnel-proxies.js';

const NS = 'shop';
const REVISION = 'deployment.kubernetes.io/revision';
const MARK = '// rollguard: @kubernetes/client-node bundled by scripts/bundle-client-node.mjs';
const HOOK = join(ROOT, 'test/support/hooks/modules-loaded.mjs');
const CASES = join(ROOT, 'test/support/built-client-cases.mjs');

// the build: dist/ in a directory whose node_modules is the checkout's (its imports resolve there)
const dir = mkdtempSync(join(tmpdir(), 'rg-built-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
const dist = join(dir, 'dist');
const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`);
  return r;
};
run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json', '--outDir', dist]);
const bundle = join(dist, 'kube', 'client-node.js');
const before = readFileSync(bundle, 'utf8');
run(process.execPath, ['scripts/bundle-client-node.mjs', dist]);
const built = readFileSync(bundle, 'utf8');

const cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));

interface Obj {
  metadata: { generation: number; annotations?: Record<string, string> };
  spec: { replicas: number; template: { spec: { containers: { image: string }[] } } };
  status: { observedGeneration?: number; updatedReplicas?: number; availableReplicas?: number };
}
const get = (name: string) => cluster.request<Obj>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/${name}`);
const rolledOut = (d: Obj, rev: string) =>
  d.metadata.annotations?.[REVISION] === rev &&
  (d.status.observedGeneration ?? 0) >= d.metadata.generation &&
  d.status.updatedReplicas === d.spec.replicas &&
  d.status.availableReplicas === d.spec.replicas;

t.test('the build bundles the Kubernetes client into one file, once', async (t) => {
  t.match(before, /from '@kubernetes\/client-node'/, "tsc's output re-exports the library");
  t.ok(built.startsWith(MARK), 'the bundle replaced it');
  t.notMatch(built, /from ['"]@kubernetes\/client-node/, 'and imports nothing of the library');
  t.ok(built.length > 100_000, `it holds the library's code (${Math.round(built.length / 1024)} KiB)`);
  run(process.execPath, ['scripts/bundle-client-node.mjs', dist]);
  t.equal(readFileSync(bundle, 'utf8'), built, 'run again on the bundle, it leaves it as it is');
  const tscAgain = spawnSync(process.execPath, ['scripts/bundle-client-node.mjs', join(dir, 'nowhere')], { cwd: ROOT, encoding: 'utf8' });
  t.not(tscAgain.status, 0, 'no tsc output: it fails');
  t.match(tscAgain.stderr, /is missing \(run tsc -p tsconfig\.build\.json first\)/, 'saying what to run first');
});

t.test('every way of giving rollguard a cluster works through the built client', async (t) => {
  // the Deployment each case reads, with the ServiceAccount's rights (the chart's RBAC) or the admin's
  const ns = 'ways';
  await cluster.kubectl(['create', 'namespace', ns], { check: true });
  await cluster.kubectl(['-n', ns, 'create', 'deployment', 'probe', '--image=demo:v1'], { check: true });
  const files = join(dir, 'ways');
  mkdirSync(files);
  const admin = JSON.parse(readFileSync(cluster.adminKubeconfig, 'utf8')) as { users: { user: { 'client-certificate': string; 'client-key': string } }[] };
  const { 'client-certificate': certFile, 'client-key': keyFile } = admin.users[0]!.user;
  const kubeconfig = (name: string, clusterEntry: Record<string, unknown>, user: Record<string, unknown>, at = files) => {
    const file = join(at, `${name}.kubeconfig`);
    const cfg = { apiVersion: 'v1', kind: 'Config', clusters: [{ name, cluster: clusterEntry }], users: [{ name, user }], contexts: [{ name, context: { cluster: name, user: name } }], 'current-context': name };
    writeFileSync(file, JSON.stringify(cfg));
    return file;
  };
  const server = cluster.server;
  const verified = { server, 'certificate-authority': cluster.caFile };
  const token = cluster.rollguardToken;
  writeFileSync(join(files, 'token'), token);
  const plugin = (name: string, body: string) => {
    const file = join(files, name);
    writeFileSync(file, `#!/bin/sh\n${body}\n`);
    chmodSync(file, 0o755);
    return file;
  };
  const credential = JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token } });
  const goodPlugin = plugin('credential.sh', `printf '%s' '${credential}'`);
  const failingPlugin = plugin('failing.sh', 'echo "run the login command first" >&2\nexit 1');
  // a kubeconfig beside its files, naming them relatively (as kubectl writes one)
  const rel = join(files, 'rel');
  mkdirSync(rel);
  copyFileSync(cluster.caFile, join(rel, 'ca.crt'));
  copyFileSync(certFile, join(rel, 'admin.crt'));
  copyFileSync(keyFile, join(rel, 'admin.key'));
  // the service account's files as a pod has them, under a prefix
  const sa = join(files, 'pod');
  const saDir = join(sa, 'var/run/secrets/kubernetes.io/serviceaccount');
  mkdirSync(saDir, { recursive: true });
  writeFileSync(join(saDir, 'token'), token);
  copyFileSync(cluster.caFile, join(saDir, 'ca.crt'));
  writeFileSync(join(saDir, 'namespace'), 'rollguard-system');
  const api = new URL(server);
  // in front of the API server: the two proxies, a relay counting connections, a server that never answers
  const httpProxy = await startConnectProxy();
  const socksProxy = await startSocks5Proxy();
  const relay = await startTcpRelay(Number(api.port));
  const silent = net.createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    httpProxy.close();
    socksProxy.close();
    relay.close();
    silent.close();
  });
  const relayPort = new URL(relay.url).port;
  const silentPort = (silent.address() as net.AddressInfo).port;

  const read = { op: 'list', resource: 'deployments', namespace: ns };
  const file = (path: string) => ({ mode: 'kubeconfig', path });
  const cases = [
    { name: 'client certificate files', source: file(cluster.adminKubeconfig), ...read },
    { name: 'client certificate data', source: file(kubeconfig('cert-data', { server, 'certificate-authority-data': readFileSync(cluster.caFile).toString('base64') }, { 'client-certificate-data': readFileSync(certFile).toString('base64'), 'client-key-data': readFileSync(keyFile).toString('base64') })), ...read },
    { name: 'files named relative to the kubeconfig', source: file(kubeconfig('relative', { server, 'certificate-authority': 'ca.crt' }, { 'client-certificate': 'admin.crt', 'client-key': 'admin.key' }, rel)), ...read },
    { name: 'bearer token', source: file(cluster.rollguardKubeconfig), ...read },
    { name: 'token file', source: file(kubeconfig('token-file', verified, { 'token-file': join(files, 'token') })), ...read },
    { name: 'exec credential plugin', source: file(kubeconfig('exec', verified, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: goodPlugin, interactiveMode: 'Never' } })), ...read },
    { name: 'oidc auth-provider (a current id-token)', source: file(kubeconfig('oidc', verified, { 'auth-provider': { name: 'oidc', config: { 'id-token': token, 'client-id': 'rollguard' } } })), ...read },
    { name: 'insecure-skip-tls-verify', source: file(kubeconfig('insecure', { server, 'insecure-skip-tls-verify': true }, { token })), ...read },
    { name: 'proxy-url http (CONNECT)', source: file(kubeconfig('http-proxy', { ...verified, 'proxy-url': httpProxy.url }, { token })), ...read },
    { name: 'proxy-url socks5', source: file(kubeconfig('socks-proxy', { ...verified, 'proxy-url': socksProxy.url }, { token })), ...read },
    { name: 'default: $KUBECONFIG of two files, a context of the second', source: { mode: 'default', context: 'second' }, env: { KUBECONFIG: [kubeconfig('first', verified, {}), kubeconfig('second', verified, { token })].join(delimiter) }, ...read },
    { name: 'in-cluster service account', inClusterPrefix: sa, env: { KUBERNETES_SERVICE_HOST: api.hostname, KUBERNETES_SERVICE_PORT: api.port }, ...read },
    { name: 'reads share a kept-alive connection', source: file(kubeconfig('relayed', { server: `https://127.0.0.1:${relayPort}`, 'certificate-authority': cluster.caFile }, { token })), ...read, repeat: 3 },
    { name: 'watch', source: file(cluster.adminKubeconfig), op: 'watch', namespace: ns },
    // what fails says why
    { name: 'no CA to verify the server', source: file(kubeconfig('no-ca', { server }, { token })), ...read },
    { name: 'a plugin that fails', source: file(kubeconfig('exec-fails', verified, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: failingPlugin } })), ...read },
    { name: 'no answer', source: file(kubeconfig('silent', { server: `https://127.0.0.1:${silentPort}`, 'certificate-authority': cluster.caFile }, { token })), timeoutMs: 500, ...read },
    { name: 'not found', source: file(cluster.rollguardKubeconfig), op: 'get', resource: 'deployments', namespace: ns, object: 'absent' },
    { name: 'in-cluster outside a pod', source: { mode: 'in-cluster' }, env: { KUBERNETES_SERVICE_HOST: null }, op: 'load' },
  ];
  const loaded = join(files, 'modules');
  writeFileSync(loaded, '');
  // a process of its own, under plain node as the image runs it; this one serves the proxies meanwhile
  const child = killOnExit(spawn(process.execPath, ['--import', HOOK, CASES], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: files, MODULES_LOADED_OUT: loaded }, stdio: ['pipe', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  child.stdin!.end(JSON.stringify({ dist, cases }));
  t.equal(await exited, 0, stderr.slice(-2000));
  type Result = { name: string; ok: boolean; items?: string[]; events?: string[]; created?: string; status?: unknown; reason?: string; message?: string };
  const results = new Map(stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Result).map((x) => [x.name, x]));
  const of = (name: string) => results.get(name) ?? { name, ok: false, message: 'no result' };

  for (const c of cases.slice(0, 13)) {
    const got = of(c.name);
    t.match(got, { ok: true, items: ['probe'] }, `${c.name}: the Deployment is read${got.ok ? '' : ` (${got.message})`}`);
  }
  t.same(httpProxy.targets, [`${api.hostname}:${api.port}`], 'through the HTTP proxy, tunnelled to the API server');
  t.same(socksProxy.targets, [`${api.hostname}:${api.port}`], 'through the SOCKS5 proxy, tunnelled to the API server');
  t.equal(relay.connections(), 1, 'three reads over one connection: the pool (src/kube/agent.ts) takes the agents the bundle builds');
  const w = of('watch');
  t.ok(w.ok && w.events?.includes(`ADDED ConfigMap/${w.created}`), `the watch lists, then sees a ConfigMap created (${JSON.stringify(w.events ?? w.message)})`);

  t.match(of('no CA to verify the server'), { ok: false, status: 'network', reason: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'no CA: the server is not trusted, the TLS error named');
  t.match(of('a plugin that fails'), { ok: false, status: 'network', message: /run the login command first/ }, "a failing plugin: its own message");
  t.match(of('no answer'), { ok: false, status: 'timeout', message: /no answer within 500 ms/ }, 'no answer: a timeout, the deadline named');
  t.match(of('not found'), { ok: false, status: 404, reason: 'NotFound' }, 'an API error: its status and reason');
  t.match(of('in-cluster outside a pod'), { ok: false, message: /in-cluster config needs KUBERNETES_SERVICE_HOST/ }, 'in-cluster outside a pod: what it needs');

  const urls = readFileSync(loaded, 'utf8').split('\n').filter(Boolean);
  t.same(urls.filter((u) => u.includes('/node_modules/')), [], 'the bundle loads nothing from node_modules, the proxies\' and oidc\'s packages included');
});

t.test('an alert rolls a real Deployment back through the built client, which never loads the library', async (t) => {
  await cluster.kubectl(['create', 'namespace', NS], { check: true });
  const name = 'checkout';
  await cluster.request('POST', `/apis/apps/v1/namespaces/${NS}/deployments`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'demo:v1' }] } } },
  });
  await waitFor('revision 1', async () => rolledOut(await get(name), '1'), 60_000, 200);
  await cluster.request('PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/${name}`, { spec: { template: { spec: { containers: [{ name: 'app', image: 'demo:v2-bad' }] } } } });
  await waitFor('revision 2', async () => rolledOut(await get(name), '2'), 60_000, 200);

  const rules = join(dir, 'rules.yaml');
  writeFileSync(
    rules,
    `rules:
  - name: bad-deploy
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}", deployment: "{{ $labels.deployment }}" }, threshold: 0.05, for: 2m }
    priority: P0
    onPrometheusDown: act
`,
  );
  const loaded = join(dir, 'modules');
  writeFileSync(loaded, '');
  const s = await startServe(
    { WEBHOOK_TOKEN, ADMIN_TOKEN, KUBECONFIG: cluster.rollguardKubeconfig, DRY_RUN: 'false', RULES_PATH: rules, NODE_OPTIONS: `--import=${HOOK}`, MODULES_LOADED_OUT: loaded },
    [],
    { main: join(dist, 'main.js') },
  );
  t.teardown(() => s.proc.kill('SIGKILL'));
  const alert = {
    status: 'firing',
    labels: { alertname: 'HighErrorRate', namespace: NS, deployment: name },
    annotations: {},
    startsAt: new Date().toISOString(),
    endsAt: '0001-01-01T00:00:00Z',
    generatorURL: '',
    fingerprint: 'b0117c11e47',
  };
  const res = await fetch(`${s.url}/v1/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` },
    body: JSON.stringify({ version: '4', groupKey: '{}:{}', truncatedAlerts: 0, status: 'firing', receiver: 'rollguard', groupLabels: {}, commonLabels: {}, commonAnnotations: {}, externalURL: '', alerts: [alert] }),
  });
  t.equal(res.status, 200, 'the alert is taken');

  const d = await waitFor('revision 3, the old template', async () => {
    const d = await get(name);
    return rolledOut(d, '3') ? d : undefined;
  }, 90_000, 200);
  t.equal(d.spec.template.spec.containers[0]!.image, 'demo:v1', 'the Deployment runs revision 1 again');
  const rec = await waitFor('the record closed', async () => {
    const r = await fetch(`${s.url}/v1/rollbacks?target=${encodeURIComponent(`Deployment/${NS}/${name}`)}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const body = (await r.json()) as { rollbacks: { state: string; plan?: { fromRevision?: number; toRevision?: number }; timeline: { step: string; message: string }[] }[] };
    const one = body.rollbacks[0];
    return one && one.state !== 'in_progress' && one.state !== 'deciding' ? one : undefined;
  }, 90_000, 250);
  t.equal(rec.state, 'unverified', 'closed (no Prometheus here to re-check the trigger)');
  t.match(rec.timeline.find((x) => x.step === 'rollout')?.message, /^succeeded/, 'the rollout, followed through the built client, completed');
  t.match(rec.plan, { fromRevision: 2, toRevision: 1 }, 'planned from the ReplicaSets it listed');

  s.proc.kill('SIGTERM');
  t.equal(await s.exited, 0, s.stderr());
  const urls = readFileSync(loaded, 'utf8').split('\n').filter(Boolean);
  t.ok(urls.some((u) => u.endsWith('/dist/kube/client-node.js')), `the bundle was loaded (${urls.length} modules)`);
  t.same(urls.filter((u) => u.includes('/node_modules/@kubernetes/client-node/')), [], 'nothing of the library itself');
});
