import t from 'tap';
import pino from 'pino';
import { deploymentAction } from '../../../src/actions/deployment.js';
import { statefulSetAction } from '../../../src/actions/statefulset.js';
import { fmtTime, lastChange } from '../../../src/config-deps/check.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { FakeKube } from '../../support/fake-kube.js';
import { NS, context, deployment, replicaSet } from '../actions/fixtures/objects.js';

const REV1_AT = '2026-11-20T10:00:00Z';

/** revision 1's template: a hashed ConfigMap by env, an edited-in-place ConfigMap by volume, a Secret by envFrom, an optional Secret */
function withConfig(o: KubeObject, cm: string): KubeObject {
  const spec = o.spec.template.spec;
  spec.containers[0].env = [{ name: 'MODE', valueFrom: { configMapKeyRef: { name: cm, key: 'mode' } } }];
  spec.containers[0].envFrom = [{ secretRef: { name: 'db-creds' } }, { secretRef: { name: 'maybe', optional: true } }];
  spec.volumes = [{ name: 'settings', configMap: { name: 'app-settings' } }];
  return o;
}

function configMap(name: string, createdAt: string, editedAt?: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace: NS,
      creationTimestamp: createdAt,
      managedFields: [
        { manager: 'kubectl-client-side-apply', operation: 'Update', time: createdAt },
        ...(editedAt ? [{ manager: 'kubectl-edit', operation: 'Update', time: editedAt }] : []),
      ],
    },
    data: { mode: 'fast' },
  };
}

function cluster(opts: { hashedExists?: boolean; editedAt?: string } = {}): FakeKube {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, withConfig(deployment('web:v2', 2), 'app-config-b8d41'));
  kube.add(RESOURCES.replicasets, withConfig(replicaSet('web-aa01', 'web:v1', 1, { createdAt: REV1_AT }), 'app-config-7f9c2'));
  kube.add(RESOURCES.replicasets, withConfig(replicaSet('web-bb02', 'web:v2', 2, { createdAt: '2026-11-23T09:00:00Z' }), 'app-config-b8d41'));
  if (opts.hashedExists !== false) kube.add(RESOURCES.configmaps, configMap('app-config-7f9c2', '2026-11-20T09:58:00Z'));
  kube.add(RESOURCES.configmaps, configMap('app-config-b8d41', '2026-11-23T08:59:00Z'));
  kube.add(RESOURCES.configmaps, configMap('app-settings', '2026-11-01T08:00:00Z', opts.editedAt));
  kube.add(RESOURCES.secrets, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-creds', namespace: NS, creationTimestamp: '2026-11-01T08:00:00Z' }, data: { password: 'aHVudGVyMg==' } });
  return kube;
}

const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };

t.test('a hashed ConfigMap the target revision needs is gone: refused in those words, nothing written', async (t) => {
  const kube = cluster({ hashedExists: false });
  const plan = await deploymentAction.plan(ref, context(kube));
  t.equal(plan.refusal?.code, 'missing_config');
  t.equal(plan.refusal?.message, 'revision 1 needs ConfigMap shop/app-config-7f9c2, which no longer exists; rolling back would leave its pods unable to start');
  t.equal(plan.toRevision, 1);
  t.equal(plan.fromRevision, 2);
  t.notOk(plan.writes, 'a refused plan carries no write');
  t.same(kube.patches(), []);
});

t.test('several missing objects are named in one sentence; optional ones are not needed', async (t) => {
  const kube = cluster({ hashedExists: false });
  kube.objects.delete(`secrets./${NS}/db-creds`);
  const plan = await deploymentAction.plan(ref, context(kube));
  t.equal(plan.refusal?.message, 'revision 1 needs ConfigMap shop/app-config-7f9c2 and Secret shop/db-creds, which no longer exist; rolling back would leave its pods unable to start');
  t.notMatch(plan.refusal?.message, /maybe/, 'the optional Secret "maybe" does not exist and is not needed');
});

t.test('everything present and unchanged since revision 1: the plan is the plain undo, no drift', async (t) => {
  const plan = await deploymentAction.plan(ref, context(cluster()));
  t.notOk(plan.refusal);
  t.notOk(plan.configDrift);
  t.equal(plan.writes?.length, 1);
});

t.test('a ConfigMap edited in place after revision 1 was created is drift, named with its time', async (t) => {
  const plan = await deploymentAction.plan(ref, context(cluster({ editedAt: '2026-11-20T14:02:31Z' })));
  t.notOk(plan.refusal, 'drift does not refuse: the rule decides');
  t.equal(plan.writes?.length, 1);
  t.same(plan.configDrift?.map((d) => d.message), [
    'ConfigMap shop/app-settings changed at 14:02 UTC, after revision 1 was created: the old code will run with the new configuration',
  ]);
  t.equal(plan.configDrift?.[0]?.changedAt, Date.parse('2026-11-20T14:02:31Z'));
});

t.test('an edit before the revision was created is no drift; a later day is written with its date', async (t) => {
  t.notOk((await deploymentAction.plan(ref, context(cluster({ editedAt: '2026-11-20T09:59:00Z' })))).configDrift);
  const later = await deploymentAction.plan(ref, context(cluster({ editedAt: '2026-11-22T07:05:00Z' })));
  t.match(later.configDrift?.[0]?.message, /^ConfigMap shop\/app-settings changed at 2026-11-22 07:05 UTC, after revision 1/);
});

t.test('ConfigMaps and Secrets are read as metadata only, never with a GET of the object', async (t) => {
  const kube = cluster();
  await deploymentAction.plan(ref, context(kube));
  const config = kube.calls.filter((c) => c.resource === 'configmaps' || c.resource === 'secrets');
  t.same(config.map((c) => `${c.verb} ${c.resource} ${c.name}`).sort(), [
    'getMetadata configmaps app-config-7f9c2',
    'getMetadata configmaps app-settings',
    'getMetadata secrets db-creds',
    'getMetadata secrets maybe',
  ]);
});

t.test('an object that cannot be read is listed as drift that could not be ruled out', async (t) => {
  const kube = cluster();
  kube.failNext('getMetadata', (c) =>
    c.resource === 'secrets' && c.name === 'db-creds' ? new KubeApiError({ status: 403, reason: 'Forbidden', message: 'secrets "db-creds" is forbidden', operation: 'GET' }) : null,
  );
  const plan = await deploymentAction.plan(ref, context(kube));
  t.notOk(plan.refusal);
  t.match(plan.configDrift?.[0]?.message, /^Secret shop\/db-creds, used by revision 1, could not be checked \(.*forbidden.*\): it may have changed since$/);
});

t.test('CONFIG_CHECK_SECRETS off: no Secret is read, each is drift not checked naming the setting, no warning; ConfigMaps still checked', async (t) => {
  const kube = cluster({ editedAt: '2026-11-20T14:02:31Z' });
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
  const plan = await deploymentAction.plan(ref, context(kube, { checkSecrets: false, logger }));
  t.same(kube.calls.filter((c) => c.resource === 'secrets'), [], 'no API call on secrets at all');
  t.same(kube.calls.filter((c) => c.resource === 'configmaps').map((c) => `${c.verb} ${c.name}`).sort(), ['getMetadata app-config-7f9c2', 'getMetadata app-settings'], 'the ConfigMaps are read (metadata)');
  t.notOk(plan.refusal, 'not refused: the rule decides');
  t.equal(plan.writes?.length, 1);
  t.same(plan.configDrift?.map((d) => d.message), [
    'Secret shop/db-creds, used by revision 1, not checked: CONFIG_CHECK_SECRETS is off (chart: actions.checkSecrets): it may have changed since',
    'Secret shop/maybe, used by revision 1, not checked: CONFIG_CHECK_SECRETS is off (chart: actions.checkSecrets): it may have changed since',
    'ConfigMap shop/app-settings changed at 14:02 UTC, after revision 1 was created: the old code will run with the new configuration',
  ], "in the template's order");
  t.notOk(plan.configDrift?.some((d) => d.kind === 'Secret' && d.changedAt !== undefined), 'no change time: it was not read');
  t.same(warnings, [], 'configured, not a failure: no log line');

  // a Secret that is gone is not noticed (not read), so no refusal names it; a missing ConfigMap still refuses
  const gone = cluster({ hashedExists: false });
  gone.objects.delete(`secrets./${NS}/db-creds`);
  const refusedPlan = await deploymentAction.plan(ref, context(gone, { checkSecrets: false }));
  t.equal(refusedPlan.refusal?.message, 'revision 1 needs ConfigMap shop/app-config-7f9c2, which no longer exists; rolling back would leave its pods unable to start');
});

t.test('CONFIG_CHECK_SECRETS off with configDrift: restore and Secret snapshots: a Secret is not restored, naming the setting', async (t) => {
  const kube = cluster();
  const plan = await deploymentAction.plan(ref, context(kube, { checkSecrets: false, configRestore: { secrets: true } }));
  t.same(kube.calls.filter((c) => c.resource === 'secrets'), [], 'no API call on secrets');
  t.same(plan.configDrift?.map((d) => [d.name, d.notRestored]), [
    ['db-creds', 'it was not checked: CONFIG_CHECK_SECRETS is off (chart: actions.checkSecrets)'],
    ['maybe', 'it was not checked: CONFIG_CHECK_SECRETS is off (chart: actions.checkSecrets)'],
  ]);
});

t.test('StatefulSet: the ControllerRevision template is checked the same way', async (t) => {
  const kube = new FakeKube();
  const UID = '22222222-2222-2222-2222-222222222222';
  const tpl = (cm: string, image: string) => ({ metadata: { labels: { app: 'db' } }, spec: { containers: [{ name: 'db', image, envFrom: [{ configMapRef: { name: cm } }] }] } });
  kube.add(RESOURCES.statefulsets, { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'db', namespace: NS, uid: UID }, spec: { selector: { matchLabels: { app: 'db' } }, template: tpl('db-config-2', 'db:v2') } });
  for (const [n, cm, image] of [[1, 'db-config-1', 'db:v1'], [2, 'db-config-2', 'db:v2']] as const) {
    kube.add(RESOURCES.controllerrevisions, {
      apiVersion: 'apps/v1',
      kind: 'ControllerRevision',
      metadata: { name: `db-r${n}`, namespace: NS, labels: { app: 'db' }, creationTimestamp: `2026-11-2${n}T08:00:00Z`, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db', uid: UID, controller: true }] },
      revision: n,
      data: { spec: { template: { ...tpl(cm, image), $patch: 'replace' } } },
    } as KubeObject);
  }
  const plan = await statefulSetAction.plan({ kind: 'StatefulSet', namespace: NS, name: 'db' }, context(kube));
  t.equal(plan.refusal?.message, 'revision 1 needs ConfigMap shop/db-config-1, which no longer exists; rolling back would leave its pods unable to start');
  kube.add(RESOURCES.configmaps, configMap('db-config-1', '2026-11-21T07:00:00Z'));
  const ok = await statefulSetAction.plan({ kind: 'StatefulSet', namespace: NS, name: 'db' }, context(kube));
  t.notOk(ok.refusal);
  t.equal(ok.writes?.length, 1);
});

t.test('lastChange: the newest managedFields time, else the creation', async (t) => {
  t.equal(lastChange({ name: 'x', creationTimestamp: '2026-01-01T00:00:00Z' }), Date.parse('2026-01-01T00:00:00Z'));
  t.equal(
    lastChange({ name: 'x', creationTimestamp: '2026-01-01T00:00:00Z', managedFields: [{ time: '2026-01-03T00:00:00Z' }, { time: '2026-01-02T00:00:00Z' }, {}] }),
    Date.parse('2026-01-03T00:00:00Z'),
  );
  t.equal(fmtTime(Date.parse('2026-01-03T14:02:59Z'), Date.parse('2026-01-03T01:00:00Z')), '14:02 UTC');
  t.equal(fmtTime(Date.parse('2026-01-03T14:02:59Z')), '2026-01-03 14:02 UTC');
});
