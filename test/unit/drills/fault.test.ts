import t from 'tap';
import { applyFault, CRASH_COMMAND, describeFault, faultedTemplate, FaultError, faultSchema, UNPULLABLE_TAG, withTag } from '../../../src/drills/fault.js';
import { templateHash } from '../../../src/drills/workload.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { FakeKube } from '../../support/fake-kube.js';
import { deployment, NS, podTemplate } from '../actions/fixtures/objects.js';

const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };
const twoContainers = () => {
  const tpl = podTemplate('web:v1');
  tpl.spec.containers.push({ name: 'proxy', image: 'envoy:1.30@sha256:abc', args: ['--x'], env: [{ name: 'MODE', value: 'a' }] } as never);
  return tpl;
};

t.test('withTag: a tag nobody pushes, whatever the reference', async (t) => {
  t.equal(withTag('web:v1', UNPULLABLE_TAG), 'web:rollguard-drill-unpullable');
  t.equal(withTag('registry.example:5000/team/web', 'x'), 'registry.example:5000/team/web:x', 'a registry port is not a tag');
  t.equal(withTag('ghcr.io/a/web:1.2@sha256:0123', 'x'), 'ghcr.io/a/web:x', 'the digest goes too');
});

t.test('faultedTemplate: image, crash, env change the named container only', async (t) => {
  const tpl = twoContainers();
  const before = structuredClone(tpl);
  const img = faultedTemplate(tpl, { kind: 'image', container: 'proxy' });
  t.equal(img.spec.containers[1].image, 'envoy:rollguard-drill-unpullable');
  t.equal(img.spec.containers[0].image, 'web:v1');
  const crash = faultedTemplate(tpl, { kind: 'crash', container: 'proxy' });
  t.same(crash.spec.containers[1].command, CRASH_COMMAND);
  t.equal(crash.spec.containers[1].args, undefined, 'no args left to the exiting command');
  const env = faultedTemplate(tpl, { kind: 'env', name: 'MODE', value: 'fail', container: 'proxy' });
  t.same(env.spec.containers[1].env, [{ name: 'MODE', value: 'fail' }], 'an existing variable is replaced, not doubled');
  const first = faultedTemplate(tpl, { kind: 'env', name: 'DEMO_ERRORS', value: 'on' });
  t.same(first.spec.containers[0].env, [{ name: 'DEMO_ERRORS', value: 'on' }], 'default: the first container');
  t.same(tpl, before, 'the template given is not changed');
  t.throws(() => faultedTemplate(tpl, { kind: 'crash', container: 'db' }), new FaultError('fault.container', 'no container "db" in the pod template (it has: web, proxy)'));
});

t.test('describeFault: what may be recorded, never an env value', async (t) => {
  const tpl = twoContainers();
  t.equal(describeFault({ kind: 'image' }, tpl), 'image of container web set to web:rollguard-drill-unpullable (a tag that cannot be pulled)');
  t.equal(describeFault({ kind: 'env', name: 'SECRET_SWITCH', value: 'hunter2' }, tpl), 'env SECRET_SWITCH set on container web (its value is not recorded)');
  t.notMatch(describeFault({ kind: 'env', name: 'S', value: 'hunter2' }, tpl), /hunter2/);
  const patch = faultSchema.parse({ kind: 'patch', patch: { spec: { template: { spec: { containers: [{ name: 'web', env: [{ name: 'A', value: 'hunter2' }] }] }, metadata: { labels: { x: 'y' } } } } } });
  t.equal(describeFault(patch, tpl), 'strategic-merge patch of spec.template.spec.containers, spec.template.metadata.labels');
});

t.test('faultSchema: each field named, and a patch touches spec.template only', async (t) => {
  const bad = (v: unknown) => faultSchema.safeParse(v).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  t.match(bad({ kind: 'env', name: '1BAD', value: 'x' }), /^name: expected an environment variable name/);
  t.match(bad({ kind: 'patch', patch: { spec: { replicas: 0, template: {} } } }), /patch.spec: Unrecognized key: "replicas"/);
  t.match(bad({ kind: 'patch', patch: { metadata: {}, spec: { template: {} } } }), /patch: Unrecognized key: "metadata"/);
  t.match(bad({ kind: 'reboot' }), /kind/);
  t.equal(bad({ kind: 'crash', container: 'web' }), undefined);
});

t.test('applyFault: a dry run first, then one write with the change-cause; a fault that changes nothing is refused', async (t) => {
  const kube = new FakeKube();
  const obj = kube.add(RESOURCES.deployments, deployment('web:v1', 1));
  const written = await applyFault(kube, ref, obj, { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, 'rollguard drill dr-1: env DEMO_ERRORS');
  const patches = kube.calls.filter((c) => c.verb === 'patch');
  t.same(patches.map((c) => [c.patchType, !!c.dryRun]), [['json', true], ['json', false]], 'a server-side dry run, then the write');
  t.same((patches[1]!.body as Array<{ op: string; path: string }>)[0], { op: 'test', path: '/metadata/generation', value: 1 }, 'a deploy since the read fails the write');
  t.equal(written.metadata.annotations!['kubernetes.io/change-cause'], 'rollguard drill dr-1: env DEMO_ERRORS');
  t.equal(written.metadata.generation, 2, 'a new generation: the controller makes a new revision');

  const again = kube.peek(RESOURCES.deployments, NS, 'web')!;
  await t.rejects(applyFault(kube, ref, again, { kind: 'env', name: 'DEMO_ERRORS', value: 'on' }, 'c'), { field: 'fault', message: /the fault leaves the pod template of Deployment shop\/web as it is \(no new revision to roll back\); nothing was changed/ });
  t.equal(kube.calls.filter((c) => c.verb === 'patch' && !c.dryRun).length, 1, 'nothing more written');
});

t.test('applyFault: patch goes as a strategic-merge patch with the resourceVersion; a refusal of the API server names it', async (t) => {
  const kube = new FakeKube();
  const obj = kube.add(RESOURCES.deployments, deployment('web:v1', 1));
  const fault = faultSchema.parse({ kind: 'patch', patch: { spec: { template: { metadata: { labels: { drill: 'on' } } } } } });
  const written = await applyFault(kube, ref, obj, fault, 'cc');
  const w = kube.calls.filter((c) => c.verb === 'patch' && !c.dryRun)[0]!;
  t.equal(w.patchType, 'strategic');
  t.same((w.body as { metadata: unknown }).metadata, { resourceVersion: obj.metadata.resourceVersion, annotations: { 'kubernetes.io/change-cause': 'cc' } });
  t.equal(written.spec.template.metadata.labels.drill, 'on');
  t.not(templateHash('Deployment', written.spec.template), templateHash('Deployment', obj.spec.template));

  kube.failNext('patch', new KubeApiError({ status: 422, reason: 'Invalid', message: 'Deployment.apps "web" is invalid: spec.template.spec.containers[0].image: Required value', operation: 'PATCH' }));
  const now = kube.peek(RESOURCES.deployments, NS, 'web')!;
  await t.rejects(applyFault(kube, ref, now, { kind: 'image', image: 'x:y' }, 'cc'), {
    field: 'fault',
    message: /^fault: the API server refused the fault \(422\): .*spec.template.spec.containers\[0\].image: Required value; nothing was changed$/,
  });
});

t.test('templateHash: equal exactly when kubectl calls the templates equal', async (t) => {
  const a = podTemplate('web:v1', {}, 'aaa');
  const b = podTemplate('web:v1', { volumes: [] }, 'bbb');
  t.equal(templateHash('Deployment', a), templateHash('Deployment', b), 'the pod-template-hash label and empty fields do not count');
  t.not(templateHash('StatefulSet', a), templateHash('StatefulSet', b), 'a StatefulSet template keeps every label');
  t.not(templateHash('Deployment', a), templateHash('Deployment', podTemplate('web:v2')));
  t.match(templateHash('Deployment', a), /^sha256:[0-9a-f]{32}$/);
});
