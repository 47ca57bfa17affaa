// Migration rollback Jobs on the real control plane (the Go-built API server, the
// kube-controller-manager's Job controller, kwok nodes running the Jobs' pods through kwok's
// stages: pod-complete ends a Job's pod Succeeded; the chaos stage pod-container-running-failed
// ends one labelled for it Failed with the exit code and message its annotations give), as
// rollguard's ServiceAccount with the chart's RBAC and migrations.enabled (d3):
//  - the chart's rights for it, as `kubectl auth can-i` shows them;
//  - a revision annotated rollguard.io/schema-migration waits for approval; approved, the rule's
//    Job runs first, succeeds, and the Deployment is rolled back; the record holds the Job and its
//    outcome;
//  - a Job that fails stops the rollback: the Deployment stays where it is, the record and the
//    escalation carry the Job's name, its failed container and its last lines (kwok's nodes serve
//    no logs, so the termination message's lines);
//  - a Job someone else created under the Job's name while the rollback waited for approval (it
//    ran `true`, and completed) refuses the rollback at approval, naming it: never waited for.
import t from 'tap';
import type { Alert } from '../../src/alertmanager/alert.js';
import type { RollbackRecord } from '../../src/engine/record.js';
import { MemoryStore } from '../../src/store/memory.js';
import { applyChartRbac, deploymentSettled as settled, type DeploymentView as Dep, startCluster } from '../cluster/harness.js';
import { clusterEngine, firingNow } from '../support/engine.js';
import { migrationRules } from '../support/migrations.js';

const OK = 'mig-ok';
const FAIL = 'mig-fail';
const SQUAT = 'mig-squat';
const FAIL_LABEL = 'pod-container-running-failed.stage.kwok.x-k8s.io';

const cluster = await startCluster({ argoCrds: false });
t.teardown(() => cluster.stop({ keep: !t.passing() }));
const kubectl = (args: string[], input?: string) => cluster.kubectl(args, { check: true, ...(input ? { input } : {}) });

for (const ns of [OK, FAIL, SQUAT]) await kubectl(['create', 'namespace', ns]);
// migrations.enabled needs scope.namespaces: Roles in the two namespaces (the harness's default ClusterRole stays for the workloads)
await applyChartRbac(cluster, ['migrations.enabled=true', `scope.namespaces={${OK},${FAIL},${SQUAT}}`]);

// no Prometheus here: the rule acts without the trigger's confirmation (a P1 holds by default)
const { engine, notifier, notifications } = await clusterEngine({
  kubeconfig: cluster.rollguardKubeconfig,
  env: { DRY_RUN: 'false', LOCK_TTL: '10s', VERIFY_TIMEOUT: '60s', SCOPE_NAMESPACES: `${OK},${FAIL},${SQUAT}` },
  rulesText: migrationRules({ key: 'rollback.yaml', deadline: '90s', logLines: 5 }).replace('priority: P1', 'priority: P1\n    onPrometheusDown: act'),
  store: new MemoryStore(),
  owner: 'migrations-a',
});

interface Job {
  metadata: { name: string; uid?: string; labels?: Record<string, string> };
  status?: { conditions?: { type: string; status: string }[] };
}
const getDep = (ns: string, name: string) => cluster.request<Dep>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
const jobsIn = async (ns: string) => (await cluster.request<{ items: Job[] }>('GET', `/apis/batch/v1/namespaces/${ns}/jobs`)).items;
const applyObj = (o: unknown) => kubectl(['apply', '-f', '-'], JSON.stringify(o));

/** v2 carries a schema migration: its pod template says so. */
const deployment = (ns: string, image: string, migration: boolean) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'checkout', namespace: ns, labels: { app: 'checkout' } },
  spec: {
    replicas: 1,
    selector: { matchLabels: { app: 'checkout' } },
    template: {
      metadata: { labels: { app: 'checkout' }, ...(migration ? { annotations: { 'rollguard.io/schema-migration': 'true' } } : {}) },
      spec: { containers: [{ name: 'app', image }] },
    },
  },
});
async function deploy(ns: string, image: string, migration: boolean) {
  await applyObj(deployment(ns, image, migration));
  await cluster.poll(`${ns}/checkout at ${image}`, () => getDep(ns, 'checkout'), (d) => settled(d, image), 90_000);
}
/** The team's rollback Job template, kept in a ConfigMap beside the workload. */
function template(fail: boolean): string {
  const meta = fail
    ? `
    metadata:
      labels: { ${FAIL_LABEL}: "true" }
      annotations:
        ${FAIL_LABEL}/exit-code: "3"
        ${FAIL_LABEL}/reason: Error
        ${FAIL_LABEL}/message: ERROR undo script missing for V42`
    : '';
  return `apiVersion: batch/v1
kind: Job
spec:
  template:${meta}
    spec:
      containers: [{ name: flyway, image: "flyway/flyway:11", args: [undo] }]
`;
}
const alert = (ns: string): Alert => firingNow('HighErrorRate', 'checkout', { labels: { alertname: 'HighErrorRate', namespace: ns, deployment: 'checkout' } });

/** Fires the alert (the record waits for approval), approves it and waits for the end: the record. */
async function fireAndApprove(ns: string): Promise<RollbackRecord> {
  await engine.handle({ id: `ev-${ns}`, alert: alert(ns), deliveries: 1 });
  await engine.idle();
  const rec = (await engine.records.list({})).find((r) => r.target === `Deployment/${ns}/checkout`)!;
  t.equal(rec.state, 'pending_approval', `${ns}: waits for a human (revision 2 carries a schema migration)`);
  t.same(await jobsIn(ns), [], `${ns}: no Job before approval (the API server admitted it in a server dry run)`);
  t.equal((await engine.approve(rec.id, 'alice')).kind, 'ok', 'approved by alice');
  await engine.idle();
  await notifications.flush();
  return (await engine.records.get(rec.id))!;
}

t.test("the chart's rights with migrations.enabled, as kubectl auth can-i shows them", async (t) => {
  const SA = 'system:serviceaccount:rollguard-system:rollguard';
  const rows: [string, string, boolean][] = [
    ['create', 'jobs.batch', true],
    ['get', 'jobs.batch', true],
    ['list', 'jobs.batch', false],
    ['delete', 'jobs.batch', false],
    ['patch', 'jobs.batch', false],
    ['list', 'pods', true],
    ['get', 'pods/log', true],
    ['create', 'pods', false],
    ['delete', 'pods', false],
    ['get', 'configmaps', true],
    ['list', 'configmaps', false],
  ];
  const lines: string[] = [];
  for (const [verb, resource, want] of rows) {
    // a subresource is asked with --subresource (kubectl reads "pods/log" as the pod named "log")
    const [res, sub] = resource.split('/') as [string, string | undefined];
    const r = await cluster.kubectl(['auth', 'can-i', verb, res, ...(sub ? [`--subresource=${sub}`] : []), `--as=${SA}`, '-n', OK]);
    const got = r.stdout.trim() === 'yes';
    lines.push(`${got === want ? ' ' : '✗'} ${verb.padEnd(7)} ${resource.padEnd(12)} ${got ? 'yes' : 'no '} (want ${want ? 'yes' : 'no'})`);
    t.equal(got, want, `can-i ${verb} ${resource}`);
  }
  t.comment(`auth can-i as ${SA} -n ${OK} (migrations.enabled)\n${lines.join('\n')}`);
});

t.test('approved: the Job runs first and completes, then the Deployment is rolled back', async (t) => {
  await applyObj({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'checkout-migrations', namespace: OK }, data: { 'rollback.yaml': template(false) } });
  await deploy(OK, 'checkout:v1', false);
  await deploy(OK, 'checkout:v2', true);
  const rec = await fireAndApprove(OK);
  t.equal(rec.state, 'unverified', `${rec.outcome?.message} (no Prometheus here to re-check; the Job and the rollout were verified)`);
  t.match(rec.migration, { state: 'succeeded', namespace: OK, job: /^rollguard-migration-/ });
  const [job] = await jobsIn(OK);
  t.equal(job?.metadata.name, rec.migration!.job, 'the Job the record names');
  t.ok(job?.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True'), 'completed by the real Job controller (its pod by kwok)');
  t.equal(job?.metadata.labels?.['rollguard.io/record'], rec.id, 'labelled with its record, for people');
  t.equal(rec.migration!.uid, job?.metadata.uid, 'the record holds the uid the API server gave the Job rollguard created');
  await cluster.poll('checkout back at v1', () => getDep(OK, 'checkout'), (d) => settled(d, 'checkout:v1'), 60_000);
  const order = rec.timeline.map((s) => s.step);
  t.ok(order.lastIndexOf('migration_job') >= 0 && order.lastIndexOf('migration_job') < order.indexOf('executed'), `the Job before the write: ${order.join(' > ')}`);
});

t.test('a Job that fails stops the rollback: nothing rolled back, the escalation has its name and last lines', async (t) => {
  await applyObj({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'checkout-migrations', namespace: FAIL }, data: { 'rollback.yaml': template(true) } });
  await deploy(FAIL, 'checkout:v1', false);
  await deploy(FAIL, 'checkout:v2', true);
  const rec = await fireAndApprove(FAIL);
  t.equal(rec.state, 'failed');
  t.match(rec.outcome?.message, new RegExp(`^Job ${FAIL}/rollguard-migration-\\S+ failed \\(BackoffLimitExceeded: .*\\): the workload was not rolled back$`));
  t.match(rec.migration, {
    state: 'failed',
    failed: { container: 'flyway', exitCode: 3, reason: 'Error' },
    linesFrom: 'termination message',
    lines: ['ERROR undo script missing for V42'],
  });
  const d = await getDep(FAIL, 'checkout');
  t.equal(d.spec.template.spec.containers[0]!.image, 'checkout:v2', 'the Deployment was not touched');
  t.notOk(rec.timeline.some((s) => s.step === 'executed'), 'no workload write');
  const n = notifier.sent.find((x) => x.title.includes(`Deployment/${FAIL}/checkout`) && /migration rollback Job .* failed: escalate/.test(x.title));
  t.ok(n, 'escalated');
  t.match(n?.lines.join('\n'), /container flyway: exit code 3 \(Error\)[\s\S]*ERROR undo script missing for V42/);
});

t.test("a Job someone else made under the Job's name before approval: refused at approval, naming it; never waited for", async (t) => {
  await applyObj({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'checkout-migrations', namespace: SQUAT }, data: { 'rollback.yaml': template(false) } });
  await deploy(SQUAT, 'checkout:v1', false);
  await deploy(SQUAT, 'checkout:v2', true);
  await engine.handle({ id: `ev-${SQUAT}`, alert: alert(SQUAT), deliveries: 1 });
  await engine.idle();
  const pending = (await engine.records.list({})).find((r) => r.target === `Deployment/${SQUAT}/checkout`)!;
  t.equal(pending.state, 'pending_approval');
  // whoever may create Jobs in the namespace reads the record id from the approval request
  const name = `rollguard-migration-${pending.id}`;
  await applyObj({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: SQUAT, labels: { 'app.kubernetes.io/managed-by': 'rollguard', 'rollguard.io/record': pending.id, 'rollguard.io/purpose': 'migration-rollback' } },
    spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'x', image: 'busybox', command: ['true'] }] } } },
  });
  await cluster.poll(`${SQUAT}/${name} completed`, async () => (await jobsIn(SQUAT))[0], (j) => !!j?.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True'), 60_000);
  t.equal((await engine.approve(pending.id, 'alice')).kind, 'ok');
  await engine.idle();
  const rec = (await engine.records.get(pending.id))!;
  t.equal(rec.state, 'refused', rec.outcome?.message ?? '');
  t.match(rec.outcome?.message, new RegExp(`a Job ${SQUAT}/${name} \\(uid [-0-9a-f]+, created [^)]*, labelled managed-by rollguard\\) exists already, which this rollback did not create`));
  t.equal((await jobsIn(SQUAT)).length, 1, 'no Job created by rollguard');
  t.equal((await getDep(SQUAT, 'checkout')).spec.template.spec.containers[0]!.image, 'checkout:v2', 'the Deployment was not rolled back');
});
