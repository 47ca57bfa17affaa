// Helm rollback through the built helm binary against the real control plane: install v1,
// upgrade to v2, roll back with rollguard's Helm action (argument array, --wait), check the
// release history and the Deployment it owns.
import t from 'tap';
import pino from 'pino';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, type Cluster } from '../cluster/harness.js';
import { createHelmAction } from '../../src/actions/helm.js';
import type { ActionContext } from '../../src/actions/action.js';
import type { KubeObject } from '../../src/kube/kube.js';

const NS = 'e2e-helm';
const CAUSE = 'rollguard: rule high-error-rate, alert HighErrorRate (fp 1234), rollback r-helm';

const cluster: Cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));

const chart = fs.mkdtempSync(path.join(os.tmpdir(), 'rollguard-chart-'));
t.teardown(() => fs.rmSync(chart, { recursive: true, force: true }));
fs.mkdirSync(path.join(chart, 'templates'));
fs.writeFileSync(path.join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: shop\nversion: 0.1.0\nappVersion: "1"\n');
fs.writeFileSync(path.join(chart, 'values.yaml'), 'image: shop:v1\n');
fs.writeFileSync(
  path.join(chart, 'templates', 'deployment.yaml'),
  `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 2
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - name: app
          image: {{ .Values.image }}
`,
);

const helm = (args: string[]) => cluster.run('helm', args, { timeoutMs: 180_000 });

t.test('helm rollback RELEASE --wait through the helm binary', async (t) => {
  await cluster.kubectl(['create', 'namespace', NS], { check: true });
  const i = await helm(['install', 'shop', chart, '-n', NS, '--wait', '--timeout', '2m']);
  t.equal(i.code, 0, `helm install: ${i.stderr}`);
  const u = await helm(['upgrade', 'shop', chart, '-n', NS, '--set', 'image=shop:v2', '--wait', '--timeout', '2m']);
  t.equal(u.code, 0, `helm upgrade: ${u.stderr}`);

  // helm keeps releases in Secrets, which rollguard's ServiceAccount may not read: admin here
  const action = createHelmAction({ helmBin: cluster.bin('helm'), kubeconfig: cluster.adminKubeconfig });
  const ctx: ActionContext = { kube: null, logger: pino({ level: 'silent' }), changeCause: CAUSE, checkFence: async () => {} };
  const plan = await action.plan({ kind: 'HelmRelease', namespace: NS, name: 'shop', options: { timeout: '2m' } }, ctx);
  t.notOk(plan.refusal, plan.refusal?.message ?? plan.summary);
  t.equal(plan.fromRevision, 2);
  t.equal(plan.toRevision, 1);
  t.same([plan.command?.[1], ...(plan.command?.slice(-3) ?? [])], ['rollback', '--', 'shop', '1'], 'the release and revision after --, as the built helm takes them');
  const exec = await action.execute(plan, ctx);
  t.equal(exec.applied, true, exec.message);
  const v = await action.verify(plan, ctx, { timeoutMs: 30_000, pollMs: 500, execution: exec });
  t.equal(v.outcome, 'succeeded', v.message);

  const d = await cluster.request<KubeObject>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/shop`);
  t.equal(d.spec.template.spec.containers[0].image, 'shop:v1', 'v1 is back');
  const h = await helm(['history', 'shop', '-n', NS, '-o', 'json']);
  const hist = JSON.parse(h.stdout) as { revision: number; status: string; description: string }[];
  const last = hist[hist.length - 1]!;
  t.equal(last.revision, 3);
  t.equal(last.status, 'deployed');
  t.equal(last.description, CAUSE, 'the rollback revision says which rule and alert');

  const missing = await action.plan({ kind: 'HelmRelease', namespace: NS, name: 'nope' }, ctx);
  t.equal(missing.refusal?.code, 'not_found', missing.refusal?.message ?? '');
});
