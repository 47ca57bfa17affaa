import t from 'tap';
import { createHelmAction, description, HELM_OUTPUT_MAX, helmDurationMs, spawnRunner, type HelmRunner } from '../../../src/actions/helm.js';
import { RELEASE_OBJECTS_READ, RELEASE_READS_AT_ONCE } from '../../../src/actions/helm-workloads.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { FakeKube } from '../../support/fake-kube.js';
import { OptionsError, parseOptions, writtenObjects, wroteNothing } from '../../../src/actions/index.js';
import { CAUSE, context } from './fixtures/objects.js';
import { outOfScope } from '../../../src/guards/scope.js';

const HISTORY = JSON.stringify([
  { revision: 1, updated: '2026-11-20T10:00:00Z', status: 'superseded', chart: 'shop-1.0.0', app_version: '1.0', description: 'Install complete' },
  { revision: 2, updated: '2026-11-23T09:00:00Z', status: 'deployed', chart: 'shop-1.1.0', app_version: '1.1', description: 'Upgrade complete' },
]);

function fake(responses: Record<string, { code?: number; stdout?: string; stderr?: string }>) {
  const calls: string[][] = [];
  const run: HelmRunner = async (argv) => {
    calls.push(argv);
    const r = responses[(argv[1] === 'get' ? argv[2] : argv[1]) as string] ?? { code: 1, stderr: 'unexpected' };
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
  t.same(f.calls[1], ['/opt/helm', 'history', '--namespace', 'shop', '--kubeconfig', '/etc/kc', '--max', '1', '-o', 'json', '--', 'shop'], 'the release read again right before');
  t.same(f.calls[2], plan.command);
});

/** A helm whose `history` answers each of `histories` in turn and whose other commands succeed; what it was asked in `calls`. */
function historiesInTurn(histories: string[]): { calls: string[][]; run: HelmRunner } {
  const calls: string[][] = [];
  const run: HelmRunner = async (argv) => {
    calls.push(argv);
    if (argv[1] === 'history') return { code: 0, stdout: histories.shift() ?? '', stderr: '' };
    return { code: 0, stdout: 'Rollback was a success! Happy Helming!', stderr: '' };
  };
  return { calls, run };
}

t.test('a release upgraded or uninstalled between plan and execute is not rolled back', async (t) => {
  const upgraded = JSON.stringify([{ revision: 3, updated: '2026-11-23T10:00:00Z', status: 'deployed', chart: 'shop-1.2.0', description: 'Upgrade complete' }]);
  const { calls, run } = historiesInTurn([HISTORY, upgraded]);
  const helm = createHelmAction({ run });
  const ctx = context(null);
  const plan = await helm.plan(ref, ctx);
  t.notOk(plan.refusal);
  t.equal(plan.fromRevision, 2);
  const res = await helm.execute(plan, ctx);
  t.equal(res.applied, false, 'not applied');
  t.equal(res.refusal?.code, 'changed_since_plan');
  t.equal(res.refusal?.message, 'release "shop" moved from revision 2 to 3 after the rollback was planned; not rolling it back automatically');
  t.notOk(calls.some((c) => c[1] === 'rollback'), 'helm rollback never ran');
  t.equal(ctx.fenceCalls, 0);

  const gone = fake({ history: { stdout: HISTORY } });
  const h2 = createHelmAction({ run: gone.run });
  const p2 = await h2.plan(ref, context(null));
  const h2b = createHelmAction({ run: fake({ history: { code: 1, stderr: 'Error: release: not found' } }).run });
  const r2 = await h2b.execute(p2, context(null));
  t.equal(r2.applied, false, 'not applied');
  t.equal(r2.refusal?.code, 'changed_since_plan');
  t.match(r2.refusal?.message, /release: not found; not rolling it back automatically/);
});

t.test('a release uninstalled with its history kept is not installed again by helm rollback', async (t) => {
  // helm uninstall --keep-history: the newest revision keeps its number, its status uninstalled
  const kept = (status: string) =>
    JSON.stringify([
      { revision: 1, updated: '2026-11-20T10:00:00Z', status: 'superseded', chart: 'shop-1.0.0', description: 'Install complete' },
      { revision: 2, updated: '2026-11-23T11:00:00Z', status, chart: 'shop-1.1.0', description: 'Uninstallation complete' },
    ]);
  for (const status of ['uninstalled', 'uninstalling']) {
    // between plan and execute
    const { calls, run } = historiesInTurn([HISTORY, kept(status)]);
    const helm = createHelmAction({ run });
    const ctx = context(null);
    const plan = await helm.plan(ref, ctx);
    t.notOk(plan.refusal);
    const res = await helm.execute(plan, ctx);
    t.equal(res.applied, false, `${status} since the plan: not applied`);
    t.equal(res.refusal?.code, 'changed_since_plan');
    t.match(res.refusal?.message, new RegExp(`is ${status} \\(its history kept`));
    t.notOk(calls.some((c) => c[1] === 'rollback'), 'helm rollback never ran');
    // already at the plan
    const p2 = await createHelmAction({ run: fake({ history: { stdout: kept(status) } }).run }).plan(ref, context(null));
    t.equal(p2.refusal?.code, 'not_found', `${status} when planned: refused`);
    t.match(p2.refusal?.message, /helm rollback would install it again/);
  }
});

t.test('a failed read of the release right before helm rollback says nothing was written', async (t) => {
  const histories: { code: number; stdout: string; stderr: string }[] = [
    { code: 0, stdout: HISTORY, stderr: '' },
    { code: 1, stdout: '', stderr: 'Error: Kubernetes cluster unreachable: the server has asked for the client to provide credentials' },
  ];
  const calls: string[][] = [];
  const run: HelmRunner = async (argv) => {
    calls.push(argv);
    if (argv[1] === 'history') return histories.shift()!;
    return { code: 0, stdout: 'Rollback was a success! Happy Helming!', stderr: '' };
  };
  const helm = createHelmAction({ run });
  const ctx = context(null);
  const plan = await helm.plan(ref, ctx);
  const err = await helm.execute(plan, ctx).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof Error, 'execute fails');
  t.match((err as Error).message, /^helm history exited 1: Error: Kubernetes cluster unreachable/);
  t.equal(wroteNothing(err), true, 'the error proves nothing was written (the cooldown is given back)');
  t.notOk(calls.some((c) => c[1] === 'rollback'), 'helm rollback never ran');
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


/** A Deployment of release shop/shop as Helm leaves it (its release annotations), generation 4. */
const shopDeployment = (name = 'shop', release = 'shop', ns = 'shop') => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: ns, generation: 4, annotations: { 'meta.helm.sh/release-name': release, 'meta.helm.sh/release-namespace': ns } },
  spec: {},
});
const MANIFEST = 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: shop\nstringData:\n  password: hunter2\n';
/** as helm-controller renders it: labelled as its HelmRelease's */
const FLUX_MANIFEST = 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n  labels:\n    helm.toolkit.fluxcd.io/name: shop\n    helm.toolkit.fluxcd.io/namespace: flux-system\n';
const META = (ns = 'shop') => ({ stdout: JSON.stringify({ name: 'shop', chart: 'shop', version: '1.1.0', namespace: ns, revision: 2, status: 'deployed' }) });

t.test('with a cluster: the release\'s live workloads (helm get manifest), for the GitOps owner that installs it; execute notes their generations', async (t) => {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, shopDeployment());
  const f = fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: MANIFEST }, rollback: { stdout: 'Rollback was a success!' } });
  const helm = createHelmAction({ helmBin: '/opt/helm', kubeconfig: '/etc/kc', run: f.run });
  const plan = await helm.plan(ref, context(kube));
  t.notOk(plan.refusal);
  t.same(f.calls[1], ['/opt/helm', 'get', 'metadata', '--namespace', 'shop', '--kubeconfig', '/etc/kc', '-o', 'json', '--', 'shop'], 'where its objects go: helm get metadata');
  t.same(f.calls[2], ['/opt/helm', 'get', 'manifest', '--namespace', 'shop', '--kubeconfig', '/etc/kc', '--revision', '2', '--', 'shop'], 'the current revision\'s manifest, the release after --');
  t.same(plan.changes?.map((c) => [c.resource.kind, c.namespace, c.name, c.release]), [['Deployment', 'shop', 'shop', { namespace: 'shop', name: 'shop' }]]);
  t.equal(plan.changes?.[0]?.read?.metadata.generation, 4, 'read at plan time, so the GitOps stage does not read it again');
  t.notOk(plan.ownersUnchecked);
  t.notMatch(JSON.stringify(plan), /hunter2/, 'nothing of the manifest\'s Secret in the plan');
  t.same(writtenObjects(plan), [{ kind: 'HelmRelease', namespace: 'shop', name: 'shop' }, { kind: 'Deployment', namespace: 'shop', name: 'shop' }], 'what it writes: the release, and its workload (locks, scope and cooldowns see it)');
  kube.put(RESOURCES.deployments, { ...shopDeployment(), metadata: { ...shopDeployment().metadata, generation: 5 } });
  const res = await helm.execute(plan, context(kube));
  t.same(res.generations, { 'Deployment/shop/shop': 5 }, 'the generation helm rollback left each workload at (the drift check watches from it)');
  const noCluster = fake({ history: { stdout: HISTORY } });
  const offline = await createHelmAction({ run: noCluster.run }).plan(ref, context(null));
  t.equal(noCluster.calls.length, 1, 'without a cluster client nothing reads owners, so the manifest is not read');
  t.notOk(offline.changes);
  for (const o of [{ recovering: true }, { currentOnly: true }]) {
    const only = fake({ history: { stdout: HISTORY } });
    await createHelmAction({ run: only.run }).plan(ref, context(kube, o));
    t.equal(only.calls.length, 1, `nor for ${JSON.stringify(o)}: a recovery never looks for owners again; a trigger's baseline reads the current revision only`);
  }
});

t.test("an umbrella chart's dozens of workloads: every one read (a few at once) and written, so each is locked and kept in cooldown", async (t) => {
  const n = 40;
  const kube = new FakeKube();
  for (let i = 0; i < n; i++) kube.add(RESOURCES.deployments, shopDeployment(`svc-${i}`));
  let reading = 0;
  let most = 0;
  const get = kube.get.bind(kube);
  kube.get = async (...args) => {
    most = Math.max(most, ++reading);
    await new Promise((r) => setTimeout(r, 2));
    reading--;
    return get(...args);
  };
  const manifest = Array.from({ length: n }, (_, i) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-${i}\n`).join('---\n');
  const helm = createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: manifest }, rollback: { stdout: 'Rollback was a success!' } }).run });
  const plan = await helm.plan(ref, context(kube));
  t.same(plan.changes?.map((c) => c.name), Array.from({ length: n }, (_, i) => `svc-${i}`), "all of them, in the manifest's order (before: the first 10)");
  t.equal(writtenObjects(plan).length, n + 1, 'the release and each workload: locks, scope and cooldowns see every one');
  t.ok(most > 1 && most <= RELEASE_READS_AT_ONCE, `read a few at once, at most RELEASE_READS_AT_ONCE (${most})`);
  t.notMatch(plan.summary, /more than/);
  most = 0;
  const res = await helm.execute(plan, context(kube));
  t.equal(Object.keys(res.generations ?? {}).length, n, "each one's generation after the rollback (the drift check watches from it)");
  t.ok(most > 1 && most <= RELEASE_READS_AT_ONCE, `read a few at once there too (${most})`);
});

t.test('a manifest naming more workloads than are read: the plan says which are locked, and which not', async (t) => {
  const kube = new FakeKube();
  for (let i = 0; i < RELEASE_OBJECTS_READ + 3; i++) kube.add(RESOURCES.deployments, shopDeployment(`svc-${i}`, i === 0 ? 'other' : 'shop'));
  const manifest = Array.from({ length: RELEASE_OBJECTS_READ + 3 }, (_, i) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-${i}\n`).join('---\n');
  const plan = await createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: manifest } }).run }).plan(ref, context(kube));
  t.equal(plan.changes?.length, RELEASE_OBJECTS_READ - 1, "the first RELEASE_OBJECTS_READ, less one that is another release's");
  t.match(plan.summary, new RegExp(`; its manifest names more than ${RELEASE_OBJECTS_READ} Deployments, StatefulSets and DaemonSets: the ${RELEASE_OBJECTS_READ - 1} of the first ${RELEASE_OBJECTS_READ} that are live and the release's are locked, kept in cooldown and watched, the others not$`));
});

// Found by review (2026-12-07): a failed read of one of a release's workloads left it out of the
// plan, silently: the rest were locked and kept in cooldown, it was not, and a Deployment rule's
// undo could put the bad revision back on it right after the Helm rollback.
const TWELVE = Array.from({ length: 12 }, (_, i) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-${i}\n`).join('---\n');
const twelveLive = () => {
  const kube = new FakeKube();
  for (let i = 0; i < 12; i++) kube.add(RESOURCES.deployments, shopDeployment(`svc-${i}`));
  return kube;
};
const failingRead = (name: string, err: KubeApiError) => (c: { name?: string }) => (c.name === name ? err : null);

t.test("a read of one of the release's workloads that may answer if tried again fails the plan (the engine decides it again), never leaves the workload unlocked", async (t) => {
  for (const err of [
    new KubeApiError({ status: 503, reason: 'ServiceUnavailable', message: 'etcd leader changed', operation: 'GET apps/v1 deployments shop/svc-7' }),
    new KubeApiError({ status: 'timeout', reason: 'Timeout', message: 'no turn to send it within 10000 ms', operation: 'GET apps/v1 deployments shop/svc-7' }),
  ]) {
    const kube = twelveLive();
    kube.failNext('get', failingRead('svc-7', err));
    const helm = createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: TWELVE } }).run });
    await t.rejects(helm.plan(ref, context(kube)), err, `${err.status}: the plan fails with the read's error`);
    t.ok(err.retriable);
  }
});

t.test("a workload the API server refuses to let rollguard read (403) is left out of the plan, and the summary names it", async (t) => {
  const kube = twelveLive();
  kube.failNext('get', failingRead('svc-7', new KubeApiError({ status: 403, reason: 'Forbidden', message: 'deployments.apps "svc-7" is forbidden', operation: 'GET apps/v1 deployments shop/svc-7' })));
  const plan = await createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: TWELVE } }).run }).plan(ref, context(kube));
  t.same(plan.changes?.map((c) => c.name), Array.from({ length: 12 }, (_, i) => `svc-${i}`).filter((n) => n !== 'svc-7'));
  t.match(plan.summary, /; 1 of the workloads its manifest names could not be read, so they are not locked, kept in cooldown or watched: Deployment\/shop\/svc-7 unreadable \(.*forbidden\)$/);
});

t.test('a release whose objects are in another namespace than its records (a HelmRelease\'s targetNamespace): refused, helm rollback would write them into the records\' namespace', async (t) => {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, shopDeployment('shop', 'shop', 'shop-apps'));
  const f = fake({ history: { stdout: HISTORY }, metadata: META('shop-apps'), manifest: { stdout: FLUX_MANIFEST } });
  const plan = await createHelmAction({ run: f.run }).plan(ref, context(kube));
  t.same(plan.refusal, {
    code: 'unsupported',
    message: 'Helm release "shop" keeps its objects in namespace shop-apps, apart from its records in shop (as a Flux HelmRelease with targetNamespace installs it): helm rollback --namespace shop would write the old revision\'s objects into shop; revert the bad commit in git instead',
  });
  t.notOk(f.calls.some((c) => c[2] === 'manifest'), 'nothing more read');
  const blank = await createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: { stdout: '{"name":"shop"}' }, manifest: { stdout: MANIFEST } }).run }).plan(ref, context(kube));
  t.notOk(blank.refusal, 'metadata without a namespace: the records\' own');
  await t.rejects(createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: { stdout: 'not json' } }).run }).plan(ref, context(kube)), /helm get metadata exited 0: unparsable metadata JSON: not json/);
  await t.rejects(createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: { code: 1, stderr: 'Error: unknown command "metadata" for "helm get"' } }).run }).plan(ref, context(kube)), /helm get metadata exited 1: Error: unknown command "metadata"/, 'a helm before 3.13: the plan fails, naming the command');
});

t.test('a current revision without live workloads of its own: the manifest of the revision gone back to', async (t) => {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, shopDeployment('shop-v1'));
  const calls: string[][] = [];
  const run: HelmRunner = async (argv) => {
    calls.push(argv);
    if (argv[1] === 'history') return { code: 0, stdout: HISTORY, stderr: '' };
    if (argv[2] === 'metadata') return { code: 0, ...META(), stderr: '' };
    const revision = argv[argv.indexOf('--revision') + 1];
    // revision 2 renamed its Deployment, and failed before creating it
    return { code: 0, stdout: FLUX_MANIFEST.replace('name: shop\n', revision === '2' ? 'name: shop-v2\n' : 'name: shop-v1\n'), stderr: '' };
  };
  const plan = await createHelmAction({ run }).plan(ref, context(kube));
  t.same(calls.filter((c) => c[2] === 'manifest').map((c) => c[c.indexOf('--revision') + 1]), ['2', '1']);
  t.same(plan.changes?.map((c) => c.name), ['shop-v1']);
  t.notOk(plan.ownersUnchecked, 'found in revision 1: nothing unchecked');
});

t.test('none live and the release\'s: unchecked only when the manifest labels them as a HelmRelease\'s', async (t) => {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, shopDeployment('shop', 'platform'));
  const deputy = await createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: FLUX_MANIFEST } }).run }).plan(ref, context(kube));
  t.notOk(deputy.changes, 'Deployment shop/shop is release platform\'s (a failed install of this one named it): its owner is not this release\'s');
  t.equal(deputy.ownersUnchecked, "Helm release shop/shop's manifest labels objects as a Flux HelmRelease's, but none of its workloads is live and the release's (Deployment/shop/shop another release's), so that HelmRelease cannot be checked", 'each object named once, though both revisions name it');
  const missing = await createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: FLUX_MANIFEST } }).run }).plan(ref, context(new FakeKube()));
  t.notOk(missing.refusal, 'the action does not refuse: the GitOps stage decides by the rule\'s policy');
  t.match(missing.ownersUnchecked, /\(Deployment\/shop\/shop missing\)/);
  const forbidden = new FakeKube();
  forbidden.failNext('get', new KubeApiError({ status: 403, reason: 'Forbidden', message: 'deployments.apps "shop" is forbidden', operation: 'get deployments shop/shop' }));
  const refused = await createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: FLUX_MANIFEST } }).run }).plan(ref, context(forbidden));
  t.match(refused.ownersUnchecked, /\(Deployment\/shop\/shop unreadable \(.*forbidden\), Deployment\/shop\/shop missing\)/, 'a refused read: unchecked, not a failed plan (and the revision gone back to read too)');
  const plain = await createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: MANIFEST } }).run }).plan(ref, context(new FakeKube()));
  t.notOk(plain.ownersUnchecked, 'a plain helm release (no HelmRelease labels in its manifest) whose Deployment was deleted: nothing to check, not refused');
  const cronOnly = 'apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: report\n  labels: {helm.toolkit.fluxcd.io/name: shop, helm.toolkit.fluxcd.io/namespace: flux-system}\n';
  const noWorkload = await createHelmAction({ run: fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { stdout: cronOnly } }).run }).plan(ref, context(new FakeKube()));
  t.match(noWorkload.ownersUnchecked, /labels objects as a Flux HelmRelease's, but none of its workloads is live and the release's \(it names no Deployment, StatefulSet or DaemonSet\)/, 'a HelmRelease\'s release of CronJobs only: unchecked, not gone on unseen');
});

t.test('a manifest that cannot be read fails the plan, naming the command, never with what helm printed; one too large to read leaves the owner unchecked', async (t) => {
  const f = fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { code: 1, stderr: 'Error: Kubernetes cluster unreachable' } });
  await t.rejects(createHelmAction({ run: f.run }).plan(ref, context(new FakeKube())), /helm get manifest exited 1: Error: Kubernetes cluster unreachable/);
  // printed then failed, with nothing on stderr: the rendered objects (the chart's Secrets) stay out of the error, the log and the record
  const printed = fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { code: 1, stdout: MANIFEST } });
  const err = await createHelmAction({ run: printed.run }).plan(ref, context(new FakeKube())).catch((e: Error) => e);
  t.match(err, { message: /^helm get manifest exited 1:/ });
  t.notMatch((err as Error).message, /hunter2|Secret/);
  const huge = fake({ history: { stdout: HISTORY }, metadata: META(), manifest: { code: 1, stderr: `stopped: printed more than ${HELM_OUTPUT_MAX} characters on one stream` } });
  const plan = await createHelmAction({ run: huge.run }).plan(ref, context(new FakeKube()));
  t.match(plan.ownersUnchecked, /^Helm release shop\/shop's manifest of revision 2 is larger than helm output may be \(16777216 characters\), so whether a Flux HelmRelease installs it cannot be checked$/);
});

t.test('spawnRunner stops a command that prints more than HELM_OUTPUT_MAX, and drops what it printed', async (t) => {
  const r = await spawnRunner([process.execPath, '-e', `process.stdout.write('x'.repeat(${HELM_OUTPUT_MAX + 1024}))`], { timeoutMs: 20_000 });
  t.equal(r.code, 1);
  t.equal(r.stdout, '');
  t.match(r.stderr, /^stopped: printed more than 16777216 characters on one stream$/);
  const ok = await spawnRunner([process.execPath, '-e', "process.stdout.write('y'.repeat(1024))"], { timeoutMs: 20_000 });
  t.equal(ok.stdout.length, 1024, 'below it, all of it');
});

t.test("a change cause longer than the description keeps its start and its end, where an alert's names the rollback (a recovery looks for the id there)", async (t) => {
  const long = `rollguard: rule ${'r'.repeat(128)}, alert ${'A'.repeat(100)} (fingerprint 0123456789abcdef), rollback rb-0123456789abcdef0123`;
  const d = description(long);
  t.equal(d.length, 256);
  t.ok(d.startsWith('rollguard: rule rrr'));
  t.ok(d.endsWith('rollback rb-0123456789abcdef0123'), d);
  t.equal(description(CAUSE), CAUSE, 'a short one as it is');
  const plan = await createHelmAction({ run: fake({ history: { stdout: HISTORY } }).run }).plan(ref, context(null, { changeCause: long }));
  t.equal(plan.command?.[plan.command.indexOf('--description') + 1], d);
});

/** A fake helm whose `get manifest` answers each revision's own manifest. */
function fakeByRevision(manifests: Record<string, string>) {
  const base = fake({ history: { stdout: HISTORY }, metadata: META(), rollback: { stdout: 'Rollback was a success!' } });
  const run: HelmRunner = async (argv, opts) => {
    if (argv[1] === 'get' && argv[2] === 'manifest') {
      base.calls.push(argv);
      return { code: 0, stdout: manifests[argv[argv.indexOf('--revision') + 1]!] ?? '', stderr: '' };
    }
    return base.run(argv, opts);
  };
  return { run, calls: base.calls };
}
const workloadDoc = (name: string, ns?: string) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${name}\n${ns !== undefined ? `  namespace: ${ns}\n` : ''}`;
// as the engine gives it (src/engine/context.ts), over the default deny list
const scoped = (kube: FakeKube) =>
  context(kube, { outOfScope: (o) => outOfScope({ SCOPE_NAMESPACES: [], SCOPE_DENY_NAMESPACES: ['kube-system'], SCOPE_DENY_TARGETS: ['Deployment/shop/*-db'] }, `${o.kind}/${o.namespace}/${o.name}`, o.namespace) });

t.test("a manifest naming a workload outside scope: the plan refuses before reading anything, since helm rollback would write it (or create it, unseen by the scope guard)", async (t) => {
  for (const [what, manifests, named] of [
    // the current revision's: helm rollback deletes it, or writes it when the revision gone back to names it too
    ['the current revision names it', { '2': `${workloadDoc('shop')}---\n${workloadDoc('agent', 'kube-system')}`, '1': workloadDoc('shop') }, /revision 2's manifest names outside rollguard's scope: Deployment\/kube-system\/agent: namespace kube-system is denied \(SCOPE_DENY_NAMESPACES\)/],
    // the revision gone back to's, not live (so no read could have found it): helm would create it
    ['only the revision gone back to names it', { '2': workloadDoc('shop'), '1': `${workloadDoc('shop')}---\n${workloadDoc('agent', 'kube-system')}` }, /revision 1's manifest names outside rollguard's scope: Deployment\/kube-system\/agent/],
    ['a denied target in the release\'s own namespace', { '2': `${workloadDoc('shop')}---\n${workloadDoc('orders-db')}`, '1': workloadDoc('shop') }, /Deployment\/shop\/orders-db: target Deployment\/shop\/orders-db is denied by Deployment\/shop\/\*-db \(SCOPE_DENY_TARGETS\)/],
  ] as const) {
    const kube = new FakeKube();
    kube.add(RESOURCES.deployments, shopDeployment());
    kube.add(RESOURCES.deployments, shopDeployment('agent', 'shop', 'kube-system'));
    const f = fakeByRevision(manifests);
    const plan = await createHelmAction({ run: f.run }).plan(ref, scoped(kube));
    t.equal(plan.refusal?.code, 'out_of_scope', what);
    t.match(plan.refusal?.message, /^helm rollback shop 1 in shop would write what /, what);
    t.match(plan.refusal?.message, named, what);
    t.same(kube.calls, [], `${what}: nothing read from the cluster, in scope or not`);
    t.notOk(f.calls.some((c) => c[1] === 'rollback'), what);
  }
  // in scope throughout: planned as before, the revision gone back to's manifest read for its scope too
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, shopDeployment());
  const f = fakeByRevision({ '2': workloadDoc('shop'), '1': workloadDoc('shop') });
  const plan = await createHelmAction({ run: f.run }).plan(ref, scoped(kube));
  t.notOk(plan.refusal);
  t.same(plan.changes?.map((c) => `${c.namespace}/${c.name}`), ['shop/shop']);
  t.same(f.calls.filter((c) => c[2] === 'manifest').map((c) => c[c.indexOf('--revision') + 1]), ['2', '1'], "both revisions' manifests read");
});

t.test("a manifest holding a document that may name a workload but cannot be read: the plan refuses, since what helm would write cannot be checked", async (t) => {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, shopDeployment());
  const f = fakeByRevision({ '2': workloadDoc('shop'), '1': `${workloadDoc('shop')}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: [payments]}\n` });
  const plan = await createHelmAction({ run: f.run }).plan(ref, scoped(kube));
  t.equal(plan.refusal?.code, 'out_of_scope');
  t.match(plan.refusal?.message, /^helm rollback shop 1 in shop cannot check what revision 1's manifest writes against the scope settings: it holds documents that may name a Deployment, StatefulSet or DaemonSet but cannot be read here \(document 2 \(a Deployment whose name or namespace is not text\)\); fix the chart's YAML, or roll back by hand$/);
  t.same(kube.calls, [], 'nothing read from the cluster');
});
