// Istio traffic shift back on plain objects: weights back to 100/0 at once or in steps, the
// refusals, the preconditions, and verification that the weights stayed.
import t from 'tap';
import { distribute, virtualServiceAction } from '../../../src/actions/istio.js';
import { OptionsError, parseOptions, writtenObjects } from '../../../src/actions/index.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { parseRuleFile } from '../../../src/rules/loader.js';
import { resolveTargets } from '../../../src/rules/targets.js';
import { FakeKube } from '../../support/fake-kube.js';
import { CAUSE, NS, context } from './fixtures/objects.js';

type Dest = { destination: { host: string; subset?: string }; weight?: number };
const VS = RESOURCES.virtualservices;

function vs(http: { name?: string; route: Dest[] }[], meta: Partial<KubeObject['metadata']> = {}): KubeObject {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'backend-api', namespace: NS, generation: 3, resourceVersion: '10', ...meta },
    spec: { hosts: ['backend-api'], http },
  };
}
const d = (subset: string | undefined, weight?: number): Dest => ({ destination: { host: 'backend-api', ...(subset ? { subset } : {}) }, ...(weight !== undefined ? { weight } : {}) });
const weights = (kube: FakeKube, route = 0) => (kube.peek(VS, NS, 'backend-api')!.spec.http[route].route as Dest[]).map((x) => x.weight);

/** The runbook's VirtualService: blue stable, green the new version taking 80 %. */
function cluster(http: { name?: string; route: Dest[] }[] = [{ name: 'primary', route: [d('blue', 20), d('green', 80)] }], meta: Partial<KubeObject['metadata']> = {}): FakeKube {
  const kube = new FakeKube();
  kube.add(VS, vs(http, meta));
  return kube;
}
const ref = { kind: 'VirtualService' as const, namespace: NS, name: 'backend-api', options: { stableSubset: 'blue', canarySubset: 'green' } };

t.test('at once: one JSON Patch with its preconditions, 100 on stable and 0 on the new subset', async (t) => {
  const kube = cluster();
  const ctx = context(kube);
  const plan = await virtualServiceAction.plan(ref, ctx);
  t.notOk(plan.refusal, plan.refusal?.message ?? '');
  t.equal(plan.summary, `shift virtualservice ${NS}/backend-api back to subset "blue" (route "primary" 20/80 -> 100 on "blue") at once`);
  t.equal(plan.writes!.length, 1);
  t.same(plan.writes![0]!.patch, [
    { op: 'test', path: '/metadata/uid', value: kube.peek(VS, NS, 'backend-api')!.metadata.uid },
    { op: 'test', path: '/metadata/generation', value: 3 },
    { op: 'test', path: '/spec/http/0/route/0/destination/subset', value: 'blue' },
    { op: 'test', path: '/spec/http/0/route/0/weight', value: 20 },
    { op: 'add', path: '/spec/http/0/route/0/weight', value: 100 },
    { op: 'test', path: '/spec/http/0/route/1/destination/subset', value: 'green' },
    { op: 'test', path: '/spec/http/0/route/1/weight', value: 80 },
    { op: 'add', path: '/spec/http/0/route/1/weight', value: 0 },
    { op: 'add', path: '/metadata/annotations', value: { 'kubernetes.io/change-cause': CAUSE } },
  ]);
  t.equal(plan.writes![0]!.precondition, 'json-test');
  t.same(writtenObjects(plan), [{ kind: 'VirtualService', namespace: NS, name: 'backend-api' }]);
  const res = await virtualServiceAction.execute(plan, ctx);
  t.equal(res.applied, true, res.message);
  t.equal(ctx.fenceCalls, 1, 'the fence is checked before the write');
  t.same(weights(kube), [100, 0]);
  t.equal(kube.peek(VS, NS, 'backend-api')!.metadata.annotations!['kubernetes.io/change-cause'], CAUSE);
  const v = await virtualServiceAction.verify(plan, ctx, { timeoutMs: 2000, pollMs: 5, execution: res });
  t.equal(v.outcome, 'succeeded', v.message);
  const again = await virtualServiceAction.plan(ref, ctx);
  t.same(again.refusal, { code: 'already_matches', message: 'virtualservice "backend-api" already sends all traffic of HTTP route "primary" to subset "blue"' });
});

t.test('gradually: equal steps with the pause before each but the first, each step observed', async (t) => {
  const kube = cluster();
  const seen: unknown[] = [];
  kube.onPatch = (_rt, obj) => seen.push((obj.spec.http[0].route as Dest[]).map((x) => x.weight));
  const ctx = context(kube);
  const plan = await virtualServiceAction.plan({ ...ref, options: { ...ref.options, steps: 4, pause: '5ms' } }, ctx);
  t.match(plan.summary, /20\/80 -> 100 on "blue"\) in 4 steps, 5ms apart$/);
  t.same(plan.writes!.map((w) => w.pauseBeforeMs), [undefined, 5, 5, 5]);
  t.same(plan.writes!.map((w) => w.description), [
    'step 1/4: route "primary" blue/green = 40/60',
    'step 2/4: route "primary" blue/green = 60/40',
    'step 3/4: route "primary" blue/green = 80/20',
    'step 4/4: route "primary" blue/green = 100/0',
  ]);
  // each step after the first tests the object's uid and the weights the step before it left
  t.same((plan.writes![2]!.patch as { op: string; path: string; value: unknown }[]).filter((o) => o.op === 'test'), [
    { op: 'test', path: '/metadata/uid', value: kube.peek(VS, NS, 'backend-api')!.metadata.uid },
    { op: 'test', path: '/spec/http/0/route/0/destination/subset', value: 'blue' },
    { op: 'test', path: '/spec/http/0/route/0/weight', value: 60 },
    { op: 'test', path: '/spec/http/0/route/1/destination/subset', value: 'green' },
    { op: 'test', path: '/spec/http/0/route/1/weight', value: 40 },
  ]);
  const res = await virtualServiceAction.execute(plan, ctx);
  t.equal(res.applied, true);
  t.same(seen, [[40, 60], [60, 40], [80, 20], [100, 0]], 'every step reached the object, in order');
  t.equal(ctx.fenceCalls, 4, 'the fence before every step');

  // a server dry run persists nothing: every step tests what plan() read, and no pause is taken
  const dry = cluster();
  const dctx = context(dry, { dryRun: true });
  const dplan = await virtualServiceAction.plan({ ...ref, options: { ...ref.options, steps: 3, pause: '10m' } }, dctx);
  t.ok(dplan.writes!.every((w) => (w.patch as { op: string; path: string; value: unknown }[]).some((o) => o.path === '/spec/http/0/route/1/weight' && o.op === 'test' && o.value === 80)));
  const dres = await virtualServiceAction.execute(dplan, dctx);
  t.equal(dres.applied, false);
  t.same(dry.patches().map((p) => p.dryRun), [true, true, true], 'every step admitted by a server dry run');
  t.same(weights(dry), [20, 80], 'nothing changed');
});

t.test('someone changes the weights between two steps: the step fails its test, a fresh plan goes on from there', async (t) => {
  const kube = cluster();
  let n = 0;
  kube.onPatch = (rt, obj, fake) => {
    if (++n !== 1) return;
    // right after our first step, something puts 30 % back on green
    obj.spec.http[0].route[0].weight = 70;
    obj.spec.http[0].route[1].weight = 30;
    fake.put(rt, obj);
  };
  const ctx = context(kube);
  const plan = await virtualServiceAction.plan({ ...ref, options: { ...ref.options, steps: 2, pause: '1ms' } }, ctx);
  const res = await virtualServiceAction.execute(plan, ctx);
  t.equal(res.applied, true, res.message);
  t.equal(res.attempts, 2, 're-planned once');
  t.same(weights(kube), [100, 0]);
  t.match(res.replanned?.writes?.map((w) => w.description), ['step 1/2: route "primary" blue/green = 85/15', 'step 2/2: route "primary" blue/green = 100/0']);
});

t.test('refusals, each saying what is wrong', async (t) => {
  const plan = (kube: FakeKube, options: object = ref.options) => virtualServiceAction.plan({ ...ref, options }, context(kube));
  t.same((await plan(new FakeKube())).refusal, { code: 'not_found', message: 'virtualservices.networking.istio.io "backend-api" not found' });
  t.same((await plan(cluster([{ route: [d('v1', 50), d('v2', 50)] }]))).refusal, {
    code: 'unsupported',
    message: 'virtualservice "backend-api" has no HTTP route with both subsets "blue" and "green" (route #0: v1, v2)',
  });
  t.same((await plan(cluster([{ route: [d('v1', 50), d('green', 50)] }]))).refusal, {
    code: 'unsupported',
    message: 'the stable subset "blue" is missing in HTTP route #0 of virtualservice "backend-api", which sends to "green" (its subsets: v1, green)',
  });
  const two = cluster([{ name: 'mobile', route: [d('green', 100)] }, { name: 'primary', route: [d('blue', 20), d('green', 80)] }]);
  t.same((await plan(two, { ...ref.options, route: 'mobile' })).refusal?.message, 'the stable subset "blue" is missing in HTTP route "mobile" of virtualservice "backend-api" (its subsets: green)');
  t.same((await plan(two, { ...ref.options, route: 'web' })).refusal, { code: 'not_found', message: 'virtualservice "backend-api" has no HTTP route named "web" (its routes: "mobile", "primary")' });
  t.same((await plan(two, { ...ref.options, routeIndex: 2 })).refusal?.message, 'virtualservice "backend-api" has 2 HTTP route(s); there is no route at index 2');
  t.notOk((await plan(two, { ...ref.options, routeIndex: 1 })).refusal, 'routeIndex 1 is the primary route');
  t.same((await plan(cluster([{ route: [d('blue', 100), d('green', 0)] }]))).refusal?.code, 'already_matches');
  const owned = cluster(undefined, { ownerReferences: [{ apiVersion: 'flagger.app/v1beta1', kind: 'Canary', name: 'backend-api', uid: 'u', controller: true }] });
  t.same((await plan(owned)).refusal, {
    code: 'unsupported',
    message: 'virtualservice "backend-api" is managed by Canary "backend-api" (its controller sets the weights back): roll that back instead',
  });
  t.equal((await virtualServiceAction.plan(ref, context(null))).refusal?.code, 'no_cluster');
});

t.test('several routes, a third destination and unset weights: weights sum to 100, the rest keeps its proportions', async (t) => {
  t.same(distribute([20, 60, 20], 0, 60), [60, 30, 10]);
  t.same(distribute([0, 100 / 3, 200 / 3], 0, 50), [50, 17, 33], 'largest remainder');
  t.same(distribute([10, 90], 0, 100), [100, 0]);
  const kube = cluster([
    { name: 'canary-header', route: [d('green', 100)] },
    { name: 'primary', route: [d('blue'), d('green'), { destination: { host: 'backend-api-mirror' } }] },
    { name: 'other', route: [d('blue', 1), d('green', 3)] },
  ]);
  const ctx = context(kube);
  const plan = await virtualServiceAction.plan({ ...ref, options: { ...ref.options, steps: 2, pause: '1ms' } }, ctx);
  t.notOk(plan.refusal, plan.refusal?.message ?? '');
  t.same(plan.writes!.map((w) => w.description), [
    'step 1/2: route "primary" blue/green/- = 67/17/16; route "other" blue/green = 63/37',
    'step 2/2: route "primary" blue/green/- = 100/0/0; route "other" blue/green = 100/0',
  ]);
  t.ok((plan.writes![0]!.patch as { path: string; value: unknown }[]).some((o) => o.path === '/spec/http/1/route/2/destination/host' && o.value === 'backend-api-mirror'), 'a destination without a subset is pinned by its host');
  await virtualServiceAction.execute(plan, ctx);
  t.same(weights(kube, 1), [100, 0, 0]);
  t.same(weights(kube, 2), [100, 0]);
  t.same(weights(kube, 0), [100], 'a route without the stable subset is left alone');
});

t.test('verify: the weights must stay; a reconciler putting them back fails it', async (t) => {
  const kube = cluster();
  const ctx = context(kube);
  const plan = await virtualServiceAction.plan(ref, ctx);
  await virtualServiceAction.execute(plan, ctx);
  const obj = kube.peek(VS, NS, 'backend-api')!;
  obj.spec.http[0].route[1].weight = 80;
  obj.spec.http[0].route[0].weight = 20;
  kube.put(VS, obj);
  const v = await virtualServiceAction.verify(plan, ctx, { timeoutMs: 1000, pollMs: 5 });
  t.equal(v.outcome, 'failed');
  t.match(v.message, /did not stay: \/spec\/http\/0\/route\/0\/weight is 20, not 100; \/spec\/http\/0\/route\/1\/weight is 80, not 0/);

  const k2 = cluster();
  const c2 = context(k2);
  const p2 = await virtualServiceAction.plan(ref, c2);
  await virtualServiceAction.execute(p2, c2);
  const o2 = k2.peek(VS, NS, 'backend-api')!;
  o2.status = { observedGeneration: 3 };
  k2.put(VS, o2);
  const waiting = await virtualServiceAction.verify(p2, c2, { timeoutMs: 30, pollMs: 5 });
  t.equal(waiting.outcome, 'unverified', 'istiod reports status but has not observed our generation');
  t.match(waiting.message, /istiod has observed generation 3, not 4 yet/);
  o2.status = { observedGeneration: 4 };
  k2.put(VS, o2);
  // the hold is half the window (1 s here), so a check lands between the hold and the deadline however slow the machine is
  t.equal((await virtualServiceAction.verify(p2, c2, { timeoutMs: 2000, pollMs: 5 })).outcome, 'succeeded');
});

t.test('networking.istio.io/v1beta1 where v1 is not served', async (t) => {
  const kube = cluster();
  let first = true;
  kube.failNext('get', () => {
    if (!first) return null;
    first = false;
    return new KubeApiError({ status: 404, reason: 'NotFound', message: 'the server could not find the requested resource', operation: 'GET' });
  });
  const plan = await virtualServiceAction.plan(ref, context(kube));
  t.notOk(plan.refusal, plan.refusal?.message ?? '');
  t.equal(plan.writes![0]!.resource.version, 'v1beta1', 'written through the version that answered');
});

t.test('options: the kind schema, and rule params mapped onto it', async (t) => {
  t.same(parseOptions('VirtualService', { stableSubset: 'v1', canarySubset: 'v2', route: 'primary', steps: 3, pause: '1m' }), { stableSubset: 'v1', canarySubset: 'v2', route: 'primary', steps: 3, pause: '1m' });
  for (const [options, field] of [
    [{ route: 'a', routeIndex: 0 }, 'options.routeIndex'],
    [{ pause: '11m' }, 'options.pause'],
    [{ pause: 'soon' }, 'options.pause'],
    [{ steps: 0 }, 'options.steps'],
    [{ steps: 21 }, 'options.steps'],
    [{ stableSubset: 'Blue_1' }, 'options.stableSubset'],
    [{ route: 'a b' }, 'options.route'],
    [{ weight: 100 }, 'options.weight'],
  ] as const) {
    t.throws(() => parseOptions('VirtualService', options), OptionsError);
    try {
      parseOptions('VirtualService', options);
    } catch (e) {
      t.equal((e as OptionsError).field, field, JSON.stringify(options));
    }
  }
  const r = parseRuleFile('t.yaml', `rules:
  - name: t
    match: { alertname: A }
    target:
      kind: VirtualService
      namespace: "{{ $labels.namespace }}"
      name: "{{ $labels.service }}"
      params: { stableSubset: blue, canarySubset: green, steps: "4", pause: 30s, routeIndex: "0" }
    trigger: { kind: deployment_failed, for: 5m }
    priority: P1
`);
  t.same(r.errors, []);
  t.same(resolveTargets(r.rules[0]!.targets, { namespace: 'nexus-platform', service: 'backend-api' }), [
    { kind: 'VirtualService', namespace: 'nexus-platform', name: 'backend-api', options: { stableSubset: 'blue', canarySubset: 'green', routeIndex: 0, steps: 4, pause: '30s' } },
  ]);
  const bad = parseRuleFile('t.yaml', 'rules:\n  - name: t\n    match: { alertname: A }\n    target: { kind: VirtualService, namespace: shop, name: x, params: { steps: "0", pause: "11m", weight: "5" } }\n    trigger: { kind: deployment_failed, for: 5m }\n    priority: P1\n');
  t.same(bad.errors.map((e) => e.field), ['rules[0].target.params.steps', 'rules[0].target.params.pause', 'rules[0].target.params.weight']);
  t.match(bad.errors[0]!.message, /expected a whole number from 1 to 20, got "0"/);
  t.match(bad.errors[2]!.message, /unknown param for VirtualService \(expected one of stableSubset, canarySubset, route, routeIndex, steps, pause\)/);
});
