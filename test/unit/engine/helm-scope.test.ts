// A Helm release whose manifest names a workload outside the scope settings, through the engine
// with the real Helm action over a scripted helm. Before 2026-12-07 the release's workloads were
// read wherever the manifest put them (a GET in kube-system), and one that was not live was not
// among the objects the scope guard saw: `helm rollback` would then have created it in a denied
// namespace with rollguard's credentials.
import t from 'tap';
import { createHelmAction, type HelmRunner } from '../../../src/actions/helm.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { firing, HELM_RULES, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';

const HISTORY = JSON.stringify([
  { revision: 1, updated: '2026-12-07T09:00:00Z', status: 'superseded', chart: 'shop-1.0.0', description: 'Install complete' },
  { revision: 2, updated: '2026-12-07T10:00:00Z', status: 'deployed', chart: 'shop-1.1.0', description: 'Upgrade complete' },
]);
const doc = (name: string, ns?: string) => `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${name}\n${ns ? `  namespace: ${ns}\n` : ''}`;

function helm(manifests: Record<string, string>) {
  const calls: string[][] = [];
  const run: HelmRunner = async (argv) => {
    calls.push(argv);
    if (argv[1] === 'history') return { code: 0, stdout: HISTORY, stderr: '' };
    if (argv[1] === 'get' && argv[2] === 'metadata') return { code: 0, stdout: JSON.stringify({ name: 'shop', namespace: 'shop' }), stderr: '' };
    if (argv[1] === 'get' && argv[2] === 'manifest') return { code: 0, stdout: manifests[argv[argv.indexOf('--revision') + 1]!] ?? '', stderr: '' };
    return { code: 1, stdout: '', stderr: `unexpected: ${argv.join(' ')}` };
  };
  return { run, calls };
}

t.test('the revision gone back to names a Deployment in kube-system (denied by default), not live: refused, naming the setting; nothing read there, helm rollback not run', async (t) => {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'shop', namespace: 'shop', generation: 2, annotations: { 'meta.helm.sh/release-name': 'shop', 'meta.helm.sh/release-namespace': 'shop' } }, spec: {} });
  const h = helm({ '2': doc('shop'), '1': `${doc('shop')}---\n${doc('node-agent', 'kube-system')}` });
  const e = testEngine({ kube, ruleText: HELM_RULES, actions: { HelmRelease: createHelmAction({ run: h.run }) } });
  e.prometheus!.value = 0.2;
  const alert = firing('ReleaseErrors');
  alert.labels = { alertname: 'ReleaseErrors', namespace: 'shop', release: 'shop' };
  await e.deliver(alert);
  const [rec] = await e.engine.records.list({});
  t.equal(rec?.state, 'refused');
  t.match(rec?.outcome?.message, /helm rollback shop 1 in shop would write what revision 1's manifest names outside rollguard's scope: Deployment\/kube-system\/node-agent: namespace kube-system is denied \(SCOPE_DENY_NAMESPACES\)/);
  t.notOk(h.calls.some((c) => c[1] === 'rollback'), 'helm rollback never ran');
  t.same(kube.calls.filter((c) => c.namespace === 'kube-system'), [], 'nothing read in kube-system');
  t.match(JSON.stringify(e.notifier.sent), /kube-system is denied/, 'the humans are told why');
});
