import t from 'tap';
import { createHelmAction, helmDurationMs, RELEASE_OBJECTS_READ, releaseWorkloads, spawnRunner, type HelmRunner } from '../../../src/actions/helm.js';
import { FakeKube } from '../../support/fake-kube.js';
import { OptionsError, parseOptions, writtenObjects } from '../../../src/actions/index.js';
import { CAUSE, context } from './fixtures/objects.js';

const HISTORY = JSON.stringify([
  { revision: 1, updated: '2026-11-20T10:00:00Z', status: 'superseded', chart: 'shop-1.0.0', app_version: '1.0', description: 'Install complete' },
  { revision: 2, updated: '2026-11-23T09:00:00Z', status: 'deployed', chart: 'shop-1.1.0', app_version: '1.1', description: 'Upgrade complete' },
]);

function fake(responses: Record<string, { code?: number; stdout?: string; stderr?: string }>) {
  const calls: string[][] = [];
  const run: HelmRunner = async (argv) => {
    calls.push(argv);
    const r = responses[argv[1] as string] ?? { code: 1, stderr: 'unexpected' };
    return { code: r.code ?? 0, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  };
  return { run, calls };
}

const ref = { kind: 'HelmRelease' as const, namespace: 'shop', name: 'shop' };

t.test('plan and execute: helm rollback RELEASE REVISION --wait, as an argument array', async (t) => {
  const f = fake({ history: { stdout: HISTORY }, rollback: { stdout: 'Rollback was a success! Happy Helming!' } });
  const helm = createHelmAction({ helmBin: '/opt/helm', kubeconfig: '/etc/kc', run: f.run });
  const ctx = context(null);
  const plan = await helm.plan(ref, ctx);
  t.notOk(plan.refusal);
  t.same(f.calls[0], ['/opt/helm', 'history', '--namespace', 'shop', '--kubeconfig', '/etc/kc', '--max', '256', '-o', 'json', '--', 'shop']);
  t.equal(plan.fromRevision, 2);
  t.equal(plan.toRevision, 1);
  t.equal(plan.current?.createdAt, Date.parse('2026-11-23T09:00:00Z'));
  t.equal(plan.current?.annotations['helm.sh/chart'], 'shop-1.1.0');
  t.same(plan.command, ['/opt/helm', 'rollback', '--namespace', 'shop', '--kubeconfig', '/etc/kc', '--wait', '--timeout', '5m0s', '--description', CAUSE, '--', 'shop', '1']);
  t.same(plan.release, { namespace: 'shop', name: 'shop' }, 'the plan names the release it rolls back');
  t.same(writtenObjects(plan), [{ kind: 'HelmRelease', namespace: 'shop', name: 'shop' }]);
  const res = await helm.execute(plan, ctx);
  t.equal(res.applied, true);
  t.equal(ctx.fenceCalls, 1);
  t.same(f.calls[1], plan.command);
});

t.test('release names: DNS-1123 (at most 53), always after --, never read as a flag', async (t) => {
  const f = fake({ history: { stdout: HISTORY } });
  const helm = createHelmAction({ helmBin: 'helm', run: f.run });
  const plan = await helm.plan({ ...ref, options: { release: 'shop.v2', timeout: '90s' } }, context(null, { dryRun: true }));
  t.same(plan.command!.slice(-8), ['--timeout', '90s', '--description', CAUSE, '--dry-run=server', '--', 'shop.v2', '1']);
  t.same(f.calls[0]!.slice(-2), ['--', 'shop.v2']);
  for (const bad of ['x; rm -rf /', '--kubeconfig=/tmp/evil', '-h', 'Shop', 'a'.repeat(54)]) {
    t.throws(() => parseOptions('HelmRelease', { release: bad }), new OptionsError('options.release', `options.release: expected a Helm release name (DNS-1123, at most 53), got ${JSON.stringify(bad)}`), bad);
    await t.rejects(helm.plan({ ...ref, options: { release: bad } }, context(null)), /Helm release name/, `the action refuses ${bad} too`);
  }
  t.throws(() => parseOptions('HelmRelease', { timeout: 'soon' }), new OptionsError('options.timeout', 'options.timeout: expected a helm duration such as 5m0s, 90s or 1h'));
  t.throws(() => parseOptions('HelmRelease', { releas: 'x' }), new OptionsError('options.releas', 'options.releas: not an option of HelmRelease (it takes release, timeout)'));
});

t.test('refusals', async (t) => {
  const nf = createHelmAction({ run: fake({ history: { code: 1, stderr: 'Error: release: not found' } }).run });
  t.same((await nf.plan(ref, context(null))).refusal, { code: 'not_found', message: 'helm release "shop" in shop: release: not found' });
  const one = createHelmAction({ run: fake({ history: { stdout: JSON.stringify([{ revision: 1, status: 'deployed' }]) } }).run });
  t.equal((await one.plan(ref, context(null))).refusal?.code, 'no_history');
  const h = createHelmAction({ run: fake({ history: { stdout: HISTORY } }).run });
  t.equal((await h.plan({ ...ref, toRevision: 7 }, context(null))).refusal?.code, 'revision_not_found');
  t.equal((await h.plan({ ...ref, toRevision: 2 }, context(null))).refusal?.code, 'already_matches');
  const broken = createHelmAction({ run: fake({ history: { code: 1, stderr: 'Error: Kubernetes cluster unreachable' } }).run });
  await t.rejects(broken.plan(ref, context(null)), /cluster unreachable/);
});

t.test('execute failure and verify', async (t) => {
  const f = fake({ history: { stdout: HISTORY }, rollback: { code: 1, stderr: 'Error: context deadline exceeded' } });
  const helm = createHelmAction({ run: f.run });
  const plan = await helm.plan(ref, context(null));
  await t.rejects(helm.execute(plan, context(null)), /exited 1: Error: context deadline exceeded/);
  const ok = createHelmAction({ run: fake({ status: { stdout: JSON.stringify({ version: 3, info: { status: 'deployed', description: 'Rollback to 1' } }) } }).run });
  t.equal((await ok.verify(plan, context(null), { timeoutMs: 10 })).outcome, 'succeeded');
  const bad = createHelmAction({ run: fake({ status: { stdout: JSON.stringify({ version: 3, info: { status: 'failed', description: 'timed out' } }) } }).run });
  t.equal((await bad.verify(plan, context(null), { timeoutMs: 10 })).outcome, 'failed');
  const stale = createHelmAction({ run: fake({ status: { stdout: JSON.stringify({ version: 2, info: { status: 'deployed' } }) } }).run });
  t.equal((await stale.verify(plan, context(null), { timeoutMs: 10, pollMs: 2 })).outcome, 'unverified');
});

t.test('spawnRunner runs without a shell and reports a missing binary clearly', async (t) => {
  const r = await spawnRunner(['/bin/echo', '$HOME;', '`id`'], { timeoutMs: 5000 });
  t.equal(r.stdout, '$HOME; `id`\n', 'no shell expansion');
  await t.rejects(spawnRunner(['/nonexistent/helm', 'version'], { timeoutMs: 5000 }), /set HELM_BIN/);
  t.equal(helmDurationMs('5m0s'), 300_000);
  t.equal(helmDurationMs('1h2m3s'), 3_723_000);
});

const MANIFEST = `---
# Source: shop/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  labels:
    helm.toolkit.fluxcd.io/name: shop
    helm.toolkit.fluxcd.io/namespace: flux-system
---
# Source: shop/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: shop
---
# Source: shop/templates/worker.yaml
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: shop-worker
  namespace: shop
---
# in another namespace: not read
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: kube-system
---
# a kind of the same name in another group: not a workload
apiVersion: example.com/v1
kind: Deployment
metadata:
  name: lookalike
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
`;

t.test('with a cluster: the release\'s workloads (helm get manifest), for the GitOps owner that installs it', async (t) => {
  const f = fake({ history: { stdout: HISTORY }, get: { stdout: MANIFEST } });
  const helm = createHelmAction({ helmBin: '/opt/helm', kubeconfig: '/etc/kc', run: f.run });
  const plan = await helm.plan(ref, context(new FakeKube()));
  t.notOk(plan.refusal);
  t.same(f.calls[1], ['/opt/helm', 'get', 'manifest', '--namespace', 'shop', '--kubeconfig', '/etc/kc', '--', 'shop'], 'the release\'s manifest, its name after --');
  t.same(
    plan.changes?.map((c) => `${c.resource.group}/${c.resource.kind}/${c.namespace}/${c.name}`),
    ['apps/Deployment/shop/shop', 'apps/StatefulSet/shop/shop-worker'],
    'its Deployments, StatefulSets and DaemonSets in the release\'s namespace, once each',
  );
  t.same(writtenObjects(plan), [{ kind: 'HelmRelease', namespace: 'shop', name: 'shop' }], 'what it writes is still the release');

  const noCluster = fake({ history: { stdout: HISTORY } });
  const offline = await createHelmAction({ run: noCluster.run }).plan(ref, context(null));
  t.equal(noCluster.calls.length, 1, 'without a cluster client nothing reads owners, so the manifest is not read');
  t.notOk(offline.changes);
});

t.test('the release\'s workloads: at most RELEASE_OBJECTS_READ read; a document that does not parse is skipped', async (t) => {
  const many = Array.from({ length: RELEASE_OBJECTS_READ + 5 }, (_, i) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d${i}\n`).join('---\n');
  const w = releaseWorkloads(`kind: [unclosed\n---\n${many}`, 'shop');
  t.equal(w.length, RELEASE_OBJECTS_READ);
  t.equal(w[0]?.name, 'd0', 'the broken first document skipped, the rest read in order');
  t.same(releaseWorkloads('', 'shop'), [], 'an empty manifest: none');
});

t.test('a manifest that cannot be read fails the plan, naming the command, never with what helm printed', async (t) => {
  const f = fake({ history: { stdout: HISTORY }, get: { code: 1, stderr: 'Error: Kubernetes cluster unreachable' } });
  await t.rejects(createHelmAction({ run: f.run }).plan(ref, context(new FakeKube())), /helm get manifest exited 1: Error: Kubernetes cluster unreachable/);
  // printed then failed, with nothing on stderr: the rendered objects (the chart's Secrets) stay out of the error, the log and the record
  const printed = fake({ history: { stdout: HISTORY }, get: { code: 1, stdout: 'apiVersion: v1\nkind: Secret\nstringData:\n  password: hunter2\n' } });
  const err = await createHelmAction({ run: printed.run }).plan(ref, context(new FakeKube())).catch((e: Error) => e);
  t.match(err, { message: /^helm get manifest exited 1:/ });
  t.notMatch((err as Error).message, /hunter2|Secret/);
});

t.test('the manifest\'s other documents are not parsed: a Secret that is not YAML, or a workload kind in its data, changes nothing', async (t) => {
  const manifest = `apiVersion: v1
kind: Secret
stringData: {unclosed: [
---
apiVersion: v1
kind: ConfigMap
data:
  nested: |
    kind: Deployment
    ---
    kind: StatefulSet
---
apiVersion: apps/v1
kind: "Deployment"
metadata: {name: web}
`;
  t.same(releaseWorkloads(manifest, 'shop').map((w) => `${w.resource.kind}/${w.name}`), ['Deployment/web']);
});
