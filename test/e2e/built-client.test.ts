// The built rollguard (tsc, then scripts/bundle-client-node.mjs, as `npm run build` and the image
// do) against a real control plane: its src/kube/client-node.ts is one bundled file, not the
// library's entry, and an alert through it rolls a Deployment back (reads, the patch, the watch of
// the rollout) exactly as the tests' tsx runs do with the library itself. The build goes to a
// directory of its own, so the checkout's dist/ is neither read nor written.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startCluster } from '../cluster/harness.js';
import { ADMIN_TOKEN, WEBHOOK_TOKEN } from '../support/app.js';
import { waitFor } from '../support/ports.js';
import { ROOT, startServe } from '../support/serve.js';

const NS = 'shop';
const REVISION = 'deployment.kubernetes.io/revision';
const MARK = '// rollguard: @kubernetes/client-node bundled by scripts/bundle-client-node.mjs';
const HOOK = join(ROOT, 'test/support/hooks/modules-loaded.mjs');

// the build: dist/ in a directory whose node_modules is the checkout's (its imports resolve there)
const dir = mkdtempSync(join(tmpdir(), 'rg-built-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
const dist = join(dir, 'dist');
const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`);
  return r;
};
run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json', '--outDir', dist]);
const bundle = join(dist, 'kube', 'client-node.js');
const before = readFileSync(bundle, 'utf8');
run(process.execPath, ['scripts/bundle-client-node.mjs', dist]);
const built = readFileSync(bundle, 'utf8');

const cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));

interface Obj {
  metadata: { generation: number; annotations?: Record<string, string> };
  spec: { replicas: number; template: { spec: { containers: { image: string }[] } } };
  status: { observedGeneration?: number; updatedReplicas?: number; availableReplicas?: number };
}
const get = (name: string) => cluster.request<Obj>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/${name}`);
const rolledOut = (d: Obj, rev: string) =>
  d.metadata.annotations?.[REVISION] === rev &&
  (d.status.observedGeneration ?? 0) >= d.metadata.generation &&
  d.status.updatedReplicas === d.spec.replicas &&
  d.status.availableReplicas === d.spec.replicas;

t.test('the build bundles the Kubernetes client into one file, once', async (t) => {
  t.match(before, /from '@kubernetes\/client-node'/, "tsc's output re-exports the library");
  t.ok(built.startsWith(MARK), 'the bundle replaced it');
  t.notMatch(built, /from ['"]@kubernetes\/client-node/, 'and imports nothing of the library');
  t.ok(built.length > 100_000, `it holds the library's code (${Math.round(built.length / 1024)} KiB)`);
  run(process.execPath, ['scripts/bundle-client-node.mjs', dist]);
  t.equal(readFileSync(bundle, 'utf8'), built, 'run again on the bundle, it leaves it as it is');
  const tscAgain = spawnSync(process.execPath, ['scripts/bundle-client-node.mjs', join(dir, 'nowhere')], { cwd: ROOT, encoding: 'utf8' });
  t.not(tscAgain.status, 0, 'no tsc output: it fails');
  t.match(tscAgain.stderr, /is missing \(run tsc -p tsconfig\.build\.json first\)/, 'saying what to run first');
});

t.test('an alert rolls a real Deployment back through the built client, which never loads the library', async (t) => {
  await cluster.kubectl(['create', 'namespace', NS], { check: true });
  const name = 'checkout';
  await cluster.request('POST', `/apis/apps/v1/namespaces/${NS}/deployments`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'demo:v1' }] } } },
  });
  await waitFor('revision 1', async () => rolledOut(await get(name), '1'), 60_000, 200);
  await cluster.request('PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/${name}`, { spec: { template: { spec: { containers: [{ name: 'app', image: 'demo:v2-bad' }] } } } });
  await waitFor('revision 2', async () => rolledOut(await get(name), '2'), 60_000, 200);

  const rules = join(dir, 'rules.yaml');
  writeFileSync(
    rules,
    `rules:
  - name: bad-deploy
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}", deployment: "{{ $labels.deployment }}" }, threshold: 0.05, for: 2m }
    priority: P0
    onPrometheusDown: act
`,
  );
  const loaded = join(dir, 'modules');
  writeFileSync(loaded, '');
  const s = await startServe(
    { WEBHOOK_TOKEN, ADMIN_TOKEN, KUBECONFIG: cluster.rollguardKubeconfig, DRY_RUN: 'false', RULES_PATH: rules, NODE_OPTIONS: `--import=${HOOK}`, MODULES_LOADED_OUT: loaded },
    [],
    { main: join(dist, 'main.js') },
  );
  t.teardown(() => s.proc.kill('SIGKILL'));
  const alert = {
    status: 'firing',
    labels: { alertname: 'HighErrorRate', namespace: NS, deployment: name },
    annotations: {},
    startsAt: new Date().toISOString(),
    endsAt: '0001-01-01T00:00:00Z',
    generatorURL: '',
    fingerprint: 'b0117c11e47',
  };
  const res = await fetch(`${s.url}/v1/alerts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` },
    body: JSON.stringify({ version: '4', groupKey: '{}:{}', truncatedAlerts: 0, status: 'firing', receiver: 'rollguard', groupLabels: {}, commonLabels: {}, commonAnnotations: {}, externalURL: '', alerts: [alert] }),
  });
  t.equal(res.status, 200, 'the alert is taken');

  const d = await waitFor('revision 3, the old template', async () => {
    const d = await get(name);
    return rolledOut(d, '3') ? d : undefined;
  }, 90_000, 200);
  t.equal(d.spec.template.spec.containers[0]!.image, 'demo:v1', 'the Deployment runs revision 1 again');
  const rec = await waitFor('the record closed', async () => {
    const r = await fetch(`${s.url}/v1/rollbacks?target=${encodeURIComponent(`Deployment/${NS}/${name}`)}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const body = (await r.json()) as { rollbacks: { state: string; plan?: { fromRevision?: number; toRevision?: number }; timeline: { step: string; message: string }[] }[] };
    const one = body.rollbacks[0];
    return one && one.state !== 'in_progress' && one.state !== 'deciding' ? one : undefined;
  }, 90_000, 250);
  t.equal(rec.state, 'unverified', 'closed (no Prometheus here to re-check the trigger)');
  t.match(rec.timeline.find((x) => x.step === 'rollout')?.message, /^succeeded/, 'the rollout, followed through the built client, completed');
  t.match(rec.plan, { fromRevision: 2, toRevision: 1 }, 'planned from the ReplicaSets it listed');

  s.proc.kill('SIGTERM');
  t.equal(await s.exited, 0, s.stderr());
  const urls = readFileSync(loaded, 'utf8').split('\n').filter(Boolean);
  t.ok(urls.some((u) => u.endsWith('/dist/kube/client-node.js')), `the bundle was loaded (${urls.length} modules)`);
  t.same(urls.filter((u) => u.includes('/node_modules/@kubernetes/client-node/')), [], 'nothing of the library itself');
});
