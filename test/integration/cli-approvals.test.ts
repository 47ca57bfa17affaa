// The on-call human's loop through the `rollguard` binary, against a real `rollguard serve` on the
// real test control plane: two alerts of a rule that requires approval leave two rollbacks
// pending; `rollbacks list --state pending_approval` and `status` show them; `rollbacks approve`
// rolls one Deployment back, `rollbacks reject` leaves the other as it is.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EXIT } from '../../src/cli/client.js';
import type { RollbackRecord } from '../../src/engine/record.js';
import { startCluster } from '../cluster/harness.js';
import { deployV1ThenV2, getDep, image } from '../reliability/cluster-support.js';
import { runCli } from '../support/cli.js';
import { waitFor } from '../support/ports.js';
import { startServe } from '../support/serve.js';

const WEBHOOK_TOKEN = 'approvals-webhook-token';
const ADMIN_TOKEN = 'approvals-admin-token';
const READ_TOKEN = 'approvals-read-token';
const NS = 'shop';

const cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
await cluster.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
await deployV1ThenV2(cluster, NS, 'cart');
await deployV1ThenV2(cluster, NS, 'checkout');

const rules = mkdtempSync(join(tmpdir(), 'rg-cli-approvals-'));
writeFileSync(
  join(rules, 'approval.yaml'),
  `rules:
  - name: slow-needs-approval
    match: ['alertname="SlowButAlive"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: custom, query: 'sum(up{namespace="{{ $labels.namespace }}"})', threshold: 0, for: 1m, step: 15s }
    priority: P1
    onPrometheusDown: act
    guards: { approval: { required: true } }
`,
);
const rg = await startServe({ WEBHOOK_TOKEN, ADMIN_TOKEN, READ_TOKEN, KUBECONFIG: cluster.rollguardKubeconfig, RULES_PATH: rules });
t.teardown(() => rg.proc.kill('SIGKILL'));
/** the read credential (READ_TOKEN) lists and shows; approving and rejecting need the admin token */
const reader = { ROLLGUARD_URL: rg.url, ROLLGUARD_TOKEN: READ_TOKEN };
const admin = { ROLLGUARD_URL: rg.url, ROLLGUARD_TOKEN: ADMIN_TOKEN };

const startsAt = new Date().toISOString(); // fired after the Deployments above were created
const alert = (deployment: string, fingerprint: string) => ({
  status: 'firing',
  labels: { alertname: 'SlowButAlive', namespace: NS, deployment },
  annotations: { summary: `${deployment} is slow` },
  startsAt,
  endsAt: '0001-01-01T00:00:00Z',
  generatorURL: 'http://prometheus.example/graph',
  fingerprint,
});
const posted = await fetch(`${rg.url}/v1/alerts`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${WEBHOOK_TOKEN}` },
  body: JSON.stringify({ version: '4', groupKey: '{}:{alertname="SlowButAlive"}', truncatedAlerts: 0, status: 'firing', receiver: 'rollguard', groupLabels: { alertname: 'SlowButAlive' }, commonLabels: {}, commonAnnotations: {}, externalURL: 'http://alertmanager.example', alerts: [alert('cart', 'aaaa000000000001'), alert('checkout', 'aaaa000000000002')] }),
});
if (posted.status !== 200) throw new Error(`the webhook answered ${posted.status}`);
const api = async <T>(path: string): Promise<T> => (await (await fetch(`${rg.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as T;
const pending = await waitFor('two rollbacks pending approval', async () => {
  const r = (await api<{ rollbacks: RollbackRecord[] }>('/v1/rollbacks?state=pending_approval')).rollbacks;
  return r.length === 2 && r;
}, 60_000, 200);
const cart = pending.find((r) => r.target === `Deployment/${NS}/cart`)!;
const checkout = pending.find((r) => r.target === `Deployment/${NS}/checkout`)!;

t.test('rollbacks list --state pending_approval and status show what waits for a human', async (t) => {
  const list = await runCli(['rollbacks', 'list', '--state', 'pending_approval'], reader);
  t.equal(list.code, 0, list.stderr);
  const lines = list.stdout.trimEnd().split('\n');
  t.equal(lines.length, 3);
  for (const r of [cart, checkout]) t.match(list.stdout, new RegExp(`^${r.id} +${r.target} +pending_approval \\(expires in (29|30)m\\) +slow-needs-approval +\\d+s$`, 'm'));
  const status = await runCli(['status'], reader);
  t.equal(status.code, 0, `the store answers; no Prometheus is configured, which is not a failure: ${status.stderr}`);
  t.match(status.stdout, /^Pending approvals: +2$/m);
  t.match(status.stdout, /^Prometheus: +not configured: PROMETHEUS_URL not set/m);
  t.match(status.stdout, /^Pending approval \(rollguard rollbacks approve\|reject ID\):\nID +TARGET +RULE +AGE +EXPIRES$/m);
  for (const r of [cart, checkout]) t.match(status.stdout, new RegExp(`^${r.id} +${r.target} +slow-needs-approval +\\d+s +in (29|30)m$`, 'm'));
});

t.test('rollbacks approve rolls the Deployment back; rollbacks reject leaves the other as it is', async (t) => {
  const withReadToken = await runCli(['rollbacks', 'approve', cart.id], reader);
  t.equal(withReadToken.code, EXIT.auth, 'the read token cannot approve');
  t.match(withReadToken.stderr, /this needs the admin token; a read token only reads/);
  t.equal((await api<RollbackRecord>(`/v1/rollbacks/${cart.id}`)).state, 'pending_approval', 'still pending');
  const approved = await runCli(['rollbacks', 'approve', cart.id, '--comment', 'v2 is bad', '--by', 'alice'], admin);
  t.equal(approved.code, 0, approved.stderr);
  t.equal(approved.stdout.trim(), `${cart.id} approved by alice: rolling back Deployment/${NS}/cart now (rollguard rollbacks get ${cart.id} follows it)`);
  const rejected = await runCli(['rollbacks', 'reject', checkout.id, '--comment', 'hotfix instead', '--by', 'bob', '-o', 'json'], admin);
  t.equal(rejected.code, 0, rejected.stderr);
  t.match(JSON.parse(rejected.stdout), { id: checkout.id, state: 'rejected', approval: { by: 'bob', decision: 'rejected', comment: 'hotfix instead' } });

  const done = await waitFor('the approved rollback to finish', async () => {
    const r = await api<RollbackRecord>(`/v1/rollbacks/${cart.id}`);
    return !['deciding', 'in_progress'].includes(r.state) && r;
  }, 120_000, 500);
  t.match(done, { approval: { by: 'alice', decision: 'approved', comment: 'v2 is bad' } });
  t.not(done.state, 'pending_approval');
  t.equal(image(await getDep(cluster, NS, 'cart')), 'cart:v1', 'cart rolled back to v1');
  t.equal(image(await getDep(cluster, NS, 'checkout')), 'checkout:v2-bad', 'checkout left as it is');

  const again = await runCli(['rollbacks', 'reject', checkout.id], admin);
  t.equal(again.code, EXIT.conflict);
  t.match(again.stderr, `rollguard rollbacks reject: rollback ${checkout.id} is rejected, not pending approval`);
  const get = await runCli(['rollbacks', 'get', cart.id], reader);
  t.equal(get.code, 0);
  t.match(get.stdout, /^Approval: +approved by alice \d+s ago: v2 is bad$/m);
});
