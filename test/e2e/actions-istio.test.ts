// The Istio traffic shift back against the real control plane with Istio's VirtualService CRD
// (test/fixtures/crds/istio, its structural schema and CEL rules enforced by the API server),
// acting with rollguard's ServiceAccount and exactly the chart's RBAC: the write compared with
// the runbook's own `kubectl apply`, the gradual steps seen through a watch, the refusals, the
// JSON Patch preconditions answered by the real API server, and verification of the object.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import t from 'tap';
import pino from 'pino';
import { startCluster, type Cluster } from '../cluster/harness.js';
import { virtualServiceAction } from '../../src/actions/istio.js';
import type { ActionContext, TargetRef } from '../../src/actions/action.js';
import { ClientNodeKube } from '../../src/kube/client.js';
import type { KubeObject } from '../../src/kube/kube.js';
import { loadKubeConfig } from '../../src/kube/config.js';

const NS = 'e2e-istio';
const CAUSE = 'rollguard: rule high-error-rate, alert HighErrorRate (fp 51c0), rollback r-istio';
const SA = 'system:serviceaccount:rollguard-system:rollguard';

const cluster: Cluster = await startCluster({ argoCrds: false, istioCrds: true });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
t.comment(`control plane at ${cluster.server}, logs in ${cluster.logDir}`);

const kube = new ClientNodeKube((await loadKubeConfig({ mode: 'kubeconfig', path: cluster.rollguardKubeconfig }))!);
const ctx: ActionContext = { kube, logger: pino({ level: 'silent' }), changeCause: CAUSE, checkFence: async () => {} };

await cluster.kubectl(['create', 'namespace', NS], { check: true });

/** The runbook's VirtualService (networking.istio.io/v1beta1), with the weights given. */
function runbookVs(name: string, blue: number, green: number): string {
  return `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: ${name}
  namespace: ${NS}
spec:
  hosts:
  - backend-api
  http:
  - route:
    - destination:
        host: backend-api
        subset: blue
      weight: ${blue}
    - destination:
        host: backend-api
        subset: green
      weight: ${green}
`;
}
const apply = (yaml: string) => cluster.kubectl(['apply', '-f', '-'], { check: true, input: yaml });
const get = (name: string) => cluster.request<KubeObject>('GET', `/apis/networking.istio.io/v1/namespaces/${NS}/virtualservices/${name}`);
const weightsOf = (vs: KubeObject, route = 0) => (vs.spec.http[route].route as { weight?: number }[]).map((d) => d.weight);
const ref = (name: string, options: Extract<TargetRef, { kind: 'VirtualService' }>['options'] = {}): TargetRef => ({
  kind: 'VirtualService',
  namespace: NS,
  name,
  options: { stableSubset: 'blue', canarySubset: 'green', ...options },
});

t.test('the chart grants get and patch on virtualservices when VirtualService is enabled, nothing more', async (t) => {
  const can = async (verb: string, res = 'virtualservices.networking.istio.io') =>
    (await cluster.kubectl(['auth', 'can-i', verb, res, `--as=${SA}`, '-n', NS], { timeoutMs: 60_000 })).stdout.trim();
  t.equal(await can('get'), 'yes');
  t.equal(await can('patch'), 'yes');
  for (const verb of ['create', 'update', 'delete', 'list', 'watch']) t.equal(await can(verb), 'no', `no ${verb}`);
  t.equal(await can('patch', 'destinationrules.networking.istio.io'), 'no', 'no other Istio object');
});

t.test('at once: the weights the runbook applies, with the change cause; verified on the object', async (t) => {
  // rollguard's object and its twin, which the runbook's own kubectl apply rolls back
  await apply(runbookVs('backend-api', 0, 100));
  await apply(runbookVs('backend-api-twin', 0, 100));
  const plan = await virtualServiceAction.plan(ref('backend-api'), ctx);
  t.notOk(plan.refusal, plan.refusal?.message ?? plan.summary);
  t.equal(plan.writes![0]!.resource.version, 'v1', 'read and written through networking.istio.io/v1');
  const exec = await virtualServiceAction.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  const v = await virtualServiceAction.verify(plan, ctx, { timeoutMs: 30_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);
  t.match(v.message, /sends all traffic to the stable subset; weights held for \d+ ms/);

  await apply(runbookVs('backend-api-twin', 100, 0));
  const [ours, twin] = await Promise.all([get('backend-api'), get('backend-api-twin')]);
  t.same(ours.spec, twin.spec, "the same spec as the runbook's kubectl apply");
  t.same(weightsOf(ours), [100, 0]);
  t.equal(ours.metadata.annotations?.['kubernetes.io/change-cause'], CAUSE);
  t.equal(ours.metadata.generation, 2, 'one write');

  const again = await virtualServiceAction.plan(ref('backend-api'), ctx);
  t.same(again.refusal, { code: 'already_matches', message: 'virtualservice "backend-api" already sends all traffic of HTTP route #0 to subset "blue"' });
});

/** Every weight the object holds, in order, through a watch (a watch delivers each change of one object). */
function watchWeights(name: string) {
  const seen: string[] = [];
  const child = spawn(
    cluster.bin('kubectl'),
    [`--kubeconfig=${cluster.adminKubeconfig}`, '-n', NS, 'get', 'virtualservice', name, '--watch', '-o', 'jsonpath={.metadata.generation} {.spec.http[0].route[*].weight}{"\\n"}'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const first = new Promise<void>((resolve) => {
    createInterface({ input: child.stdout }).on('line', (l) => {
      seen.push(l.trim());
      resolve();
    });
  });
  return { seen, first, stop: () => child.kill('SIGTERM') };
}

t.test('gradually: three steps a pause apart, each one seen on the object, then verified', async (t) => {
  await apply(runbookVs('gradual', 10, 90));
  const w = watchWeights('gradual');
  t.teardown(w.stop);
  await w.first;
  const plan = await virtualServiceAction.plan(ref('gradual', { steps: 3, pause: '1s' }), ctx);
  t.same(plan.writes!.map((x) => x.description), [
    'step 1/3: route #0 blue/green = 40/60',
    'step 2/3: route #0 blue/green = 70/30',
    'step 3/3: route #0 blue/green = 100/0',
  ]);
  const exec = await virtualServiceAction.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  t.equal(exec.attempts, 1);
  const v = await virtualServiceAction.verify(plan, ctx, { timeoutMs: 30_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);
  await cluster.poll('the watch saw the last step', async () => w.seen.length, (n) => n >= 4, 30_000);
  t.same(w.seen, ['1 10 90', '2 40 60', '3 70 30', '4 100 0'], 'each step is one generation, in order');
});

t.test('the real API server enforces the preconditions: a change in between re-plans from a fresh read', async (t) => {
  await apply(runbookVs('raced', 20, 80));
  const plan = await virtualServiceAction.plan(ref('raced'), ctx);
  // someone shifts more traffic to green after plan() read the object
  await apply(runbookVs('raced', 5, 95));
  const exec = await virtualServiceAction.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  t.equal(exec.attempts, 2, 'the failed JSON Patch test (422) re-planned once');
  t.match(exec.replanned?.summary, /5\/95 -> 100 on "blue"/);
  t.same(weightsOf(await get('raced')), [100, 0]);
});

t.test('verification fails when the weights are put back', async (t) => {
  await apply(runbookVs('reverted', 0, 100));
  const plan = await virtualServiceAction.plan(ref('reverted'), ctx);
  const exec = await virtualServiceAction.execute(plan, ctx);
  t.equal(exec.applied, true);
  // what a GitOps reconciler or a progressive-delivery controller would do
  await apply(runbookVs('reverted', 0, 100));
  const v = await virtualServiceAction.verify(plan, ctx, { timeoutMs: 30_000, pollMs: 250, execution: exec });
  t.equal(v.outcome, 'failed');
  t.match(v.message, /did not stay: \/spec\/http\/0\/route\/0\/weight is 0, not 100/);
});

t.test('a server dry run: every step admitted, nothing changed', async (t) => {
  await apply(runbookVs('dry', 30, 70));
  const dctx = { ...ctx, dryRun: true };
  const plan = await virtualServiceAction.plan(ref('dry', { steps: 2, pause: '10m' }), dctx);
  const exec = await virtualServiceAction.execute(plan, dctx);
  t.equal(exec.applied, false);
  t.match(exec.message, /^\(server dry run\)/);
  const vs = await get('dry');
  t.same(weightsOf(vs), [30, 70]);
  t.equal(vs.metadata.generation, 1);
});

t.test('refusals on real objects', async (t) => {
  t.same((await virtualServiceAction.plan(ref('nope'), ctx)).refusal, { code: 'not_found', message: 'virtualservices.networking.istio.io "nope" not found' });
  await apply(runbookVs('other-subsets', 50, 50).replace(/subset: blue/, 'subset: v1').replace(/subset: green/, 'subset: v2'));
  t.same((await virtualServiceAction.plan(ref('other-subsets'), ctx)).refusal, {
    code: 'unsupported',
    message: 'virtualservice "other-subsets" has no HTTP route with both subsets "blue" and "green" (route #0: v1, v2)',
  });
  await apply(runbookVs('no-stable', 50, 50).replace(/subset: blue/, 'subset: v1'));
  t.same((await virtualServiceAction.plan(ref('no-stable', { routeIndex: 0 }), ctx)).refusal, {
    code: 'unsupported',
    message: 'the stable subset "blue" is missing in HTTP route #0 of virtualservice "no-stable" (its subsets: v1, green)',
  });
  await apply(runbookVs('done', 100, 0));
  t.equal((await virtualServiceAction.plan(ref('done'), ctx)).refusal?.code, 'already_matches');
  t.equal((await get('done')).metadata.generation, 1, 'a refused plan wrote nothing');
});
