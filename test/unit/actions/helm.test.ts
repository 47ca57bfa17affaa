import t from 'tap';
import { createHelmAction, helmDurationMs, spawnRunner, type HelmRunner } from '../../../src/actions/helm.js';
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
