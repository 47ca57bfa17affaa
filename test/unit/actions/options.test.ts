// Each rollback kind owns its options schema: the manual API validates `options` with it (a 400
// naming the field, nothing changes), and every plan names every object it writes.
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { rollbacksRoutes } from '../../../src/http/rollbacks.js';
import { createActions, KINDS, OptionsError, parseOptions, targetKinds, writtenObjects } from '../../../src/actions/index.js';
import { canaryAction } from '../../../src/actions/canary.js';
import { blueGreenAction } from '../../../src/actions/blue-green.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { FakeKube } from '../../support/fake-kube.js';
import { ADMIN_TOKEN } from '../../support/app.js';
import { testEngine } from '../../support/engine.js';
import { NS, context } from './fixtures/objects.js';

t.test('the registry: one definition per kind, the kind list and the actions follow from it', async (t) => {
  t.same(targetKinds, KINDS.map((k) => k.kind));
  t.equal(new Set(targetKinds).size, targetKinds.length, 'no kind twice');
  const actions = createActions();
  t.same(Object.keys(actions), targetKinds);
  for (const k of KINDS) {
    t.equal(actions[k.kind].kind, k.kind, `${k.kind}'s action says its kind`);
    // every rule param maps onto options its own schema accepts
    // (routeIndex is left out: VirtualService takes route or routeIndex, not both)
    const values: Record<string, string> = { steps: '2', pause: '30s', mode: 'undo' };
    const sample = Object.fromEntries(Object.keys(k.params).filter((p) => p !== 'routeIndex').map((p) => [p, values[p] ?? 'x']));
    const opts = k.fromParams('web', sample);
    t.ok(k.options.safeParse(opts).success, `${k.kind}: ${JSON.stringify(sample)} -> ${JSON.stringify(opts)}`);
  }
});

t.test('parseOptions: the kind schema, an error naming the field', async (t) => {
  t.same(parseOptions('Canary', { stable: 'api-stable', stableReplicas: 4 }), { stable: 'api-stable', stableReplicas: 4 });
  t.equal(parseOptions('Deployment', undefined), undefined);
  t.same(parseOptions('BlueGreen', { colours: ['blue', 'green'], to: 'blue' }), { colours: ['blue', 'green'], to: 'blue' });
  const cases: [Parameters<typeof parseOptions>[0], unknown, string, RegExp][] = [
    ['Canary', { stable: 'Kube-System/../x' }, 'options.stable', /DNS-1123 subdomain/],
    ['Canary', { stableReplicas: -1 }, 'options.stableReplicas', /options\.stableReplicas: /],
    ['Canary', { stableReplicas: '3' }, 'options.stableReplicas', /expected number/],
    ['BlueGreen', { service: '1api' }, 'options.service', /DNS-1035/],
    ['BlueGreen', { colours: ['blue'] }, 'options.colours', /options\.colours/],
    ['BlueGreen', { colour: 'blue' }, 'options.colour', /not an option of BlueGreen \(it takes service, selectorKey, to, colours\)/],
    ['Rollout', { mode: 'abort-undo' }, 'options.mode', /options\.mode: /],
    ['Deployment', { anything: 1 }, 'options.anything', /not an option of Deployment \(it takes none\)/],
  ];
  for (const [kind, options, field, msg] of cases) {
    t.throws(() => parseOptions(kind, options), OptionsError);
    try {
      parseOptions(kind, options);
    } catch (e) {
      t.equal((e as OptionsError).field, field, `${kind} ${JSON.stringify(options)}`);
      t.match((e as OptionsError).message, msg);
    }
  }
});

t.test('POST /v1/rollbacks: options through the kind schema, 400 naming the field, nothing recorded', async (t) => {
  const e = testEngine({ env: { ADMIN_TOKEN } });
  const app = buildApp({ config: e.config, store: e.store, metrics: e.metrics, logger: false, routes: [rollbacksRoutes(e.engine)] });
  const post = (body: object) =>
    app.inject({ method: 'POST', url: '/v1/rollbacks', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload: body });
  const bad = await post({ kind: 'Canary', namespace: 'prod', name: 'api', reason: 'bad canary', options: { stable: 'kube-system/coredns' } });
  t.equal(bad.statusCode, 400);
  t.match(bad.json(), { error: 'bad_request', message: /^body\.options\.stable: expected a DNS-1123 subdomain/ });
  const unknown = await post({ kind: 'Canary', namespace: 'prod', name: 'api', reason: 'bad canary', options: { stabel: 'api-stable' } });
  t.equal(unknown.statusCode, 400);
  t.match(unknown.json().message, /body\.options\.stabel: not an option of Canary/);
  t.same((await app.inject('/v1/rollbacks')).json().rollbacks, [], 'nothing recorded');
  const ok = await post({ kind: 'BlueGreen', namespace: 'prod', name: 'api', reason: 'switch back', options: { colours: ['a', 'b'], to: 'a' } });
  t.equal(ok.statusCode, 202, ok.body);
  t.same(ok.json().ref.options, { colours: ['a', 'b'], to: 'a' }, 'the validated options go into the record');
  await e.engine.idle();
});

function dep(name: string, replicas: number, labels: Record<string, string>): KubeObject {
  return {
    metadata: { name, namespace: NS, generation: 1, uid: `uid-${name}` },
    spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: `${name}:1` }] } } },
    status: { observedGeneration: 1, replicas, updatedReplicas: replicas, availableReplicas: replicas },
  };
}

t.test('writtenObjects: every object a plan writes, not only the named target', async (t) => {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, dep('api-canary', 2, { app: 'api', track: 'canary' }));
  kube.add(RESOURCES.deployments, dep('payments', 8, { app: 'api', track: 'stable' }));
  const canary = await canaryAction.plan({ kind: 'Canary', namespace: NS, name: 'api', options: { canary: 'api-canary', stable: 'payments' } }, context(kube));
  t.same(writtenObjects(canary), [
    { kind: 'Deployment', namespace: NS, name: 'api-canary' },
    { kind: 'Deployment', namespace: NS, name: 'payments' },
  ], 'the stable Deployment is named, whatever it is called');

  kube.add(RESOURCES.services, { metadata: { name: 'storefront', namespace: NS }, spec: { selector: { app: 'api', track: 'canary' } } });
  const bg = await blueGreenAction.plan({ kind: 'BlueGreen', namespace: NS, name: 'api', options: { service: 'storefront', selectorKey: 'track', to: 'stable' } }, context(kube));
  t.notOk(bg.refusal, bg.refusal?.message ?? 'planned');
  t.same(writtenObjects(bg), [{ kind: 'Service', namespace: NS, name: 'storefront' }], 'the Service, not the app name');
  t.same(writtenObjects({ ...bg, writes: [...bg.writes!, ...bg.writes!] }), writtenObjects(bg), 'each object once');
  t.same(writtenObjects({ ...bg, writes: undefined, refusal: { code: 'not_found', message: 'x' } }), [], 'a refused plan writes nothing');
});
