// The API server answering 403, 404, 409, 500 or not at all (issue 9): rollguard's Deployment
// action talks to the real control plane through a small fault-injecting proxy, and each fault
// must give a clear, recorded outcome; a 409 is retried once with a fresh read; nothing else is
// retried.
import t from 'tap';
import pino from 'pino';
import { KubeConfig } from '@kubernetes/client-node';
import { startCluster, type Cluster } from '../cluster/harness.js';
import { deploymentAction } from '../../src/actions/deployment.js';
import type { ActionContext } from '../../src/actions/action.js';
import { ClientNodeKube } from '../../src/kube/client.js';
import type { KubeObject } from '../../src/kube/kube.js';
import { KubeApiError } from '../../src/kube/errors.js';
import { startFaultProxy } from '../support/fault-proxy.js';

const NS = 'e2e-faults';
const cluster: Cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));

// --- the proxy (test/support/fault-proxy.ts): forwards to the API server (the caller's bearer
// token passes through), unless a fault rule matches the request
const proxy = await startFaultProxy({ server: cluster.server, caFile: cluster.caFile });
t.teardown(() => proxy.close());
const faults = proxy.faults;
const log = proxy.log;

const kc = new KubeConfig();
kc.loadFromFile(proxy.kubeconfig(cluster.rollguardToken));
const kube = new ClientNodeKube(kc, { timeoutMs: 1500 });
const ctx: ActionContext = { kube, logger: pino({ level: 'silent' }), changeCause: 'rollguard: faults e2e', checkFence: async () => {} };
const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dep = () => cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/web`);
async function waitRevision(rev: string) {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    const d = await dep();
    if (d.metadata.annotations?.['deployment.kubernetes.io/revision'] === rev && (d.status?.observedGeneration ?? 0) >= (d.metadata.generation ?? 0)) return d;
    await sleep(200);
  }
  throw new Error(`revision ${rev} not reached\n${cluster.logTails(10)}`);
}
const image = (d: KubeObject) => d.spec.template.spec.containers[0].image as string;
const count = (method: string, re: RegExp) => proxy.count(method, re);
const DEP_PATH = /\/deployments\/web/;

async function caught(p: Promise<unknown>): Promise<KubeApiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof KubeApiError) return e;
    throw e;
  }
  throw new Error('expected a KubeApiError');
}

await cluster.kubectl(['create', 'namespace', NS], { check: true });
await cluster.request('POST', `/apis/apps/v1/namespaces/${NS}/deployments`, {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web' },
  spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'web:v1' }] } } },
});
await waitRevision('1');
await cluster.request('PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/web`, { spec: { template: { spec: { containers: [{ name: 'app', image: 'web:v2' }] } } } });
await waitRevision('2');

t.test('500 on the write: a clear error, one attempt, nothing changed', async (t) => {
  const plan = await deploymentAction.plan(ref, ctx);
  t.notOk(plan.refusal);
  log.length = 0;
  faults.push({ method: 'PATCH', path: DEP_PATH, answer: 500, reason: 'InternalError', times: 1 });
  const e = await caught(deploymentAction.execute(plan, ctx));
  t.equal(e.status, 500);
  t.equal(e.reason, 'InternalError');
  t.match(e.message, /PATCH apps\/v1 deployments e2e-faults\/web: HTTP 500 InternalError: injected 500/);
  t.equal(count('PATCH', DEP_PATH), 1, 'not retried');
  t.equal(image(await dep()), 'web:v2', 'nothing changed');
});

t.test('403 and 404 while planning', async (t) => {
  faults.push({ method: 'GET', path: /\/replicasets/, answer: 403, reason: 'Forbidden', times: 1 });
  const e = await caught(deploymentAction.plan(ref, ctx));
  t.equal(e.status, 403);
  t.equal(e.retriable, false);
  faults.push({ method: 'GET', path: DEP_PATH, answer: 404, reason: 'NotFound', times: 1 });
  const p = await deploymentAction.plan(ref, ctx);
  t.equal(p.refusal?.code, 'not_found', 'a 404 on the target is a refusal, not an error');
});

t.test('409 on the write: one fresh read, one more write, applied', async (t) => {
  const plan = await deploymentAction.plan(ref, ctx);
  log.length = 0;
  faults.push({ method: 'PATCH', path: DEP_PATH, answer: 409, reason: 'Conflict', times: 1 });
  const res = await deploymentAction.execute(plan, ctx);
  t.equal(res.applied, true, res.message);
  t.equal(res.attempts, 2);
  t.equal(count('PATCH', DEP_PATH), 2, 'two writes');
  t.equal(count('GET', DEP_PATH), 1, 'one fresh read of the Deployment in between');
  const d = await waitRevision('3');
  t.equal(image(d), 'web:v1');
});

t.test('409 every time: three attempts, then the conflict is reported', async (t) => {
  await cluster.request('PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/web`, { spec: { template: { spec: { containers: [{ name: 'app', image: 'web:v3' }] } } } });
  await waitRevision('4');
  const plan = await deploymentAction.plan(ref, ctx);
  log.length = 0;
  faults.push({ method: 'PATCH', path: DEP_PATH, answer: 409, reason: 'Conflict', times: 10 });
  const e = await caught(deploymentAction.execute(plan, ctx));
  t.equal(e.status, 409);
  t.equal(count('PATCH', DEP_PATH), 3, 'bounded: three attempts');
  faults.length = 0;
  t.equal(image(await dep()), 'web:v3');
});

t.test('an API server that does not answer: timeout, not retried', async (t) => {
  const plan = await deploymentAction.plan(ref, ctx);
  log.length = 0;
  faults.push({ method: 'PATCH', path: DEP_PATH, answer: 'hang', times: 1 });
  const e = await caught(deploymentAction.execute(plan, ctx));
  t.equal(e.status, 'timeout');
  t.match(e.message, /no answer within 1500 ms/);
  t.equal(count('PATCH', DEP_PATH), 1);
  // verification against a hanging server: unverified, with the reason
  faults.push({ method: 'GET', path: DEP_PATH, answer: 'hang', times: 5 });
  const v = await deploymentAction.verify(plan, ctx, { timeoutMs: 10_000, pollMs: 100 });
  t.equal(v.outcome, 'unverified');
  t.match(v.message, /timeout/);
  faults.length = 0;
});
