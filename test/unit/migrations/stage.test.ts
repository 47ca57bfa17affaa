// The migration rollback Job on the engine's path, with the in-memory Kube standing in for the API
// server and the Job controller (the real ones: test/e2e/migrations.test.ts).
import t from 'tap';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import type { StoredRecord } from '../../../src/store/store.js';
import { RECORD_LABEL } from '../../../src/migrations/template.js';
import { metricValue } from '../../support/app.js';
import { firing, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { migrationRules } from '../../support/migrations.js';

const RULE = migrationRules({ key: 'rollback.yaml', deadline: '5s', logLines: 3 });

const TEMPLATE = `
apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      containers: [{ name: flyway, image: "flyway/flyway:11", args: [undo] }]
`;

type JobResult = 'complete' | 'fail' | 'hang';

/** A cluster with the template's ConfigMap, whose "Job controller" ends each created Job as told. */
function cluster(result: JobResult, template = TEMPLATE) {
  const kube = new FakeKube();
  kube.add(RESOURCES.configmaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'checkout-migrations', namespace: 'prod' }, data: { 'rollback.yaml': template } } as KubeObject);
  kube.onCreate = (rt, job, fake) => {
    if (rt.plural !== 'jobs' || result === 'hang') return;
    const podName = `${job.metadata.name}-x7k2p`;
    const failed = result === 'fail';
    fake.add(RESOURCES.pods, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: podName, namespace: 'prod', labels: { 'batch.kubernetes.io/controller-uid': job.metadata.uid!, [RECORD_LABEL]: job.metadata.labels![RECORD_LABEL]! } },
      spec: { containers: [{ name: 'flyway' }] },
      status: {
        phase: failed ? 'Failed' : 'Succeeded',
        containerStatuses: [{ name: 'flyway', state: { terminated: failed ? { exitCode: 1, reason: 'Error', message: 'ERROR: Unable to undo migration V42\nERROR: undo script missing for V42', finishedAt: new Date().toISOString() } : { exitCode: 0, reason: 'Completed' } } }],
      },
    });
    fake.put(RESOURCES.jobs, { ...job, status: { conditions: [failed ? { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' } : { type: 'Complete', status: 'True' }] } });
  };
  return kube;
}

function setup(result: JobResult, template?: string) {
  const kube = cluster(result, template);
  const e = testEngine({ kube, ruleText: RULE });
  e.action.annotations = { 'rollguard.io/schema-migration': 'true' };
  const created = () => kube.calls.filter((c) => c.verb === 'create' && c.resource === 'jobs' && !c.dryRun);
  return { ...e, kube, created };
}

/** Fires the alert (the record waits for approval), approves it and waits for the end: the record. */
async function fireAndApprove(e: ReturnType<typeof setup>) {
  await e.deliver(firing('HighErrorRate'));
  const rec = (await e.engine.records.list({}))[0]!;
  await e.engine.approve(rec.id, 'alice');
  await e.engine.idle();
  return (await e.engine.records.get(rec.id))!;
}

t.test('approved: the Job runs first, then the workload is rolled back; the record has the Job and its outcome', async (t) => {
  const e = setup('complete');
  let executedAtCreate = -1;
  const prior = e.kube.onCreate!;
  e.kube.onCreate = (rt, o, f) => {
    if (rt.plural === 'jobs') executedAtCreate = e.action.executed.length;
    prior(rt, o, f);
  };
  await e.deliver(firing('HighErrorRate'));
  let rec = (await e.engine.records.list({}))[0]!;
  t.equal(rec.state, 'pending_approval');
  t.match(rec.plan!.summary, /^first runs the migration rollback Job prod\/rollguard-migration-rb-\w+ \(from ConfigMap prod\/checkout-migrations key rollback.yaml, deadline 5s\); then Deployment prod\/checkout/);
  t.match(rec.guards.at(-1)!.reason, /once approved, the migration rollback Job prod\/rollguard-migration-rb-\w+ runs first/);
  t.equal(e.created().length, 0, 'nothing created before approval (the API server admitted it in a dry run)');
  t.equal(e.kube.calls.filter((c) => c.verb === 'create' && c.dryRun).length, 1);

  e.prometheus!.value = 0.001; // the service recovers once rolled back
  await e.engine.approve(rec.id, 'alice');
  await e.engine.idle();
  rec = (await e.engine.records.get(rec.id))!;
  t.equal(rec.state, 'succeeded', rec.outcome?.message ?? '');
  t.equal(e.created().length, 1);
  t.equal(executedAtCreate, 0, 'the Job was created before the workload write');
  t.equal(e.action.executed.length, 1);
  t.equal(rec.migration!.job, `rollguard-migration-${rec.id}`);
  t.equal(rec.migration!.state, 'succeeded');
  const job = e.kube.peek(RESOURCES.jobs, 'prod', rec.migration!.job)!;
  t.equal(job.metadata.labels![RECORD_LABEL], rec.id);
  t.equal((await e.kube.list(RESOURCES.jobs, 'prod', { labelSelector: `${RECORD_LABEL}=${rec.id}` })).length, 1);
  const steps = rec.timeline.filter((s) => s.step === 'migration_job').map((s) => s.message);
  t.match(steps, [/^created the migration rollback Job prod\/rollguard-migration-/, /^succeeded: Job prod\/rollguard-migration-\S+ completed; rolling back the workload/]);
});

t.test('a failed Job stops the rollback: workload untouched, failed, escalated with the Job name and its last lines', async (t) => {
  const e = setup('fail');
  const rec = await fireAndApprove(e);
  t.equal(rec.state, 'failed');
  t.equal(e.action.executed.length, 0, 'the workload is not rolled back');
  t.match(rec.outcome!.message, /^Job prod\/rollguard-migration-rb-\w+ failed \(BackoffLimitExceeded: Job has reached the specified backoff limit\): the workload was not rolled back$/);
  t.match(rec.migration, { state: 'failed', failed: { container: 'flyway', exitCode: 1, reason: 'Error' }, linesFrom: 'termination message', lines: ['ERROR: Unable to undo migration V42', 'ERROR: undo script missing for V42'] });
  t.equal(e.kube.calls.filter((c) => c.verb === 'podLog').length, 1, 'the log was asked for first');
  const reads = e.kube.calls.filter((c) => ['get', 'getMetadata', 'list', 'podLog'].includes(c.verb));
  t.ok(reads.some((c) => c.resource === 'jobs') && reads.some((c) => c.verb === 'podLog'), "the Job's and its pod's reads are among them");
  t.same([...new Set(reads.map((c) => c.precedence))], [1], "every read, the Job's, its pods' and its log included, in the P1 rule's lane");
  await e.notifications.flush();
  const n = e.notifier.sent.find((x) => x.kind === 'rollback_failed')!;
  t.match(n.title, /stopped: its migration rollback Job prod\/rollguard-migration-rb-\w+ failed: escalate/);
  t.match(n.lines.join('\n'), /pod rollguard-migration-\S+-x7k2p, container flyway: exit code 1 \(Error\)[\s\S]*termination message[\s\S]*ERROR: undo script missing for V42/);
  t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'migration_failed' }), 1);

  // with a log served, its last lines are taken
  const l = setup('fail');
  const prior = l.kube.onCreate!;
  l.kube.onCreate = (rt, o, f) => {
    prior(rt, o, f);
    if (rt.plural === 'jobs') f.logs.set(`prod/${o.metadata.name}-x7k2p`, 'Flyway 11\nUndoing V42\npassword=abc\nERROR: undo failed\n');
  };
  t.match((await fireAndApprove(l)).migration, { linesFrom: 'log', lines: ['Undoing V42', 'password=***', 'ERROR: undo failed'] });
});

t.test('a Job that does not finish within the deadline stops the rollback as timed out', async (t) => {
  const e = setup('hang');
  const rec = await fireAndApprove(e);
  t.equal(rec.state, 'failed');
  t.equal(rec.migration!.state, 'timed_out');
  t.match(rec.outcome!.message, /did not finish within its deadline of 5s/);
  t.equal(e.action.executed.length, 0);
});

t.test('what is wrong is refused at plan time naming it; nothing is created', async (t) => {
  const cases: [string | null, RegExp][] = [
    [TEMPLATE.replace('image: "flyway/flyway:11"', 'image: ""'), /template in ConfigMap prod\/checkout-migrations key rollback.yaml is not valid: spec.template.spec.containers\[0\].image: expected the image/],
    [null, /migration.job.key: ConfigMap prod\/checkout-migrations has no key "rollback.yaml" \(it has "other.yaml"\)/],
  ];
  for (const [template, msg] of cases) {
    const e = setup('complete', template ?? TEMPLATE);
    if (template === null) e.kube.put(RESOURCES.configmaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'checkout-migrations', namespace: 'prod' }, data: { 'other.yaml': TEMPLATE } } as KubeObject);
    await e.deliver(firing('HighErrorRate'));
    const rec = (await e.engine.records.list({}))[0]!;
    t.equal(rec.state, 'refused');
    t.match(rec.outcome!.message, msg);
    t.equal(e.kube.calls.filter((c) => c.verb === 'create').length, 0);
  }
  const gone = setup('complete');
  gone.kube.objects.clear();
  await gone.deliver(firing('HighErrorRate'));
  t.match((await gone.engine.records.list({}))[0]!.outcome!.message, /migration.job.configMap names ConfigMap prod\/checkout-migrations key rollback.yaml, which does not exist/);
  const denied = setup('complete');
  denied.kube.failNext('create', new KubeApiError({ status: 422, reason: 'Invalid', message: 'Job.batch "x" is invalid: spec.template.spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes"', operation: 'POST' }));
  await denied.deliver(firing('HighErrorRate'));
  t.match((await denied.engine.records.list({}))[0]!.outcome!.message, /the API server refuses the Job built from ConfigMap prod\/checkout-migrations key rollback.yaml: .*imagePullPolicy/);
  // a revision without the annotation runs no Job
  const plain = setup('complete');
  plain.action.annotations = {};
  await plain.deliver(firing('HighErrorRate'));
  t.equal(plain.kube.calls.filter((c) => c.verb === 'create').length, 0);
  t.equal(plain.action.executed.length, 1);
});

/**
 * A record left in_progress mid-Job by a replica stopped while its Job runs (the approving replica
 * killed: simulated by stopping it mid-wait), and another replica `b` on the same store and cluster.
 */
async function leftMidJob() {
  const e = setup('hang');
  await e.deliver(firing('HighErrorRate'));
  const pending = (await e.engine.records.list({}))[0]!;
  await e.engine.approve(pending.id, 'alice');
  await new Promise((r) => setTimeout(r, 300));
  await e.engine.stop?.();
  await e.engine.idle();
  const left = (await e.engine.records.get(pending.id))!;
  const b = testEngine({ kube: e.kube, store: e.store, ruleText: RULE, owner: 'replica-b', action: e.action });
  b.prometheus!.value = 0.001;
  return { e, b, left };
}

t.test('a replica taking up a record left mid-Job finds the Job by its name and recorded uid, creates no second one, and goes on', async (t) => {
  const { e, b, left } = await leftMidJob();
  const pending = left;
  t.equal(left.state, 'in_progress', JSON.stringify(left.timeline.slice(-2)));
  t.equal(left.migration!.state, 'running');
  t.equal(e.created().length, 1);

  // the Job completes meanwhile
  const job = e.kube.peek(RESOURCES.jobs, 'prod', left.migration!.job)!;
  e.kube.put(RESOURCES.jobs, { ...job, status: { conditions: [{ type: 'Complete', status: 'True' }] } });
  await b.engine.tick();
  await b.engine.idle();
  const done = (await b.engine.records.get(pending.id))!;
  t.equal(done.state, 'succeeded', JSON.stringify(done.timeline.slice(-4)));
  t.equal(e.created().length, 1, 'no second Job');
  t.equal(e.action.executed.length, 1, 'the workload rolled back once');
  t.ok(done.timeline.some((s) => s.step === 'migration_job' && /^found this rollback's migration rollback Job/.test(s.message)));
  t.ok(done.timeline.some((s) => s.step === 'resumed'));
});

// Only the Job rollguard created counts. The record id (and so the Job's name and labels) is in the
// approval request, and anyone who may create Jobs in the namespace can make a Job that looks like
// rollguard's: a Job that ran something else must never stand for the migration rollback.

/** A Job that looks like rollguard's (its labels and annotations copied) but runs `true`, Complete already. */
function lookalike(name: string, recordId: string): KubeObject {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      namespace: 'prod',
      labels: { 'app.kubernetes.io/managed-by': 'rollguard', [RECORD_LABEL]: recordId, 'rollguard.io/purpose': 'migration-rollback' },
      annotations: { 'rollguard.io/target': 'Deployment/prod/checkout', 'rollguard.io/template': 'checkout-migrations/rollback.yaml' },
    },
    spec: { template: { spec: { containers: [{ name: 'x', image: 'busybox', command: ['true'] }] } } },
    status: { conditions: [{ type: 'Complete', status: 'True' }] },
  } as KubeObject;
}

t.test('a Job labelled with the record id under another name is not taken: rollguard creates and runs its own', async (t) => {
  const e = setup('complete');
  await e.deliver(firing('HighErrorRate'));
  const pending = (await e.engine.records.list({}))[0]!;
  e.kube.add(RESOURCES.jobs, lookalike('noop', pending.id));
  e.prometheus!.value = 0.001;
  await e.engine.approve(pending.id, 'alice');
  await e.engine.idle();
  const rec = (await e.engine.records.get(pending.id))!;
  t.equal(e.created().length, 1, "rollguard's own Job is created");
  t.equal(rec.migration!.job, `rollguard-migration-${rec.id}`);
  t.equal(rec.migration!.uid, e.kube.peek(RESOURCES.jobs, 'prod', rec.migration!.job)!.metadata.uid, 'the record holds the uid of the Job rollguard created');
  t.equal(rec.state, 'succeeded', rec.outcome?.message ?? '');
  t.equal(e.action.executed.length, 1);
});

t.test("a Job someone made under the Job's name before approval refuses the rollback at plan time, naming it; nothing is created or rolled back", async (t) => {
  const e = setup('complete');
  await e.deliver(firing('HighErrorRate'));
  const pending = (await e.engine.records.list({}))[0]!;
  const squat = e.kube.add(RESOURCES.jobs, lookalike(`rollguard-migration-${pending.id}`, pending.id));
  e.prometheus!.value = 0.001;
  await e.engine.approve(pending.id, 'alice');
  await e.engine.idle();
  const rec = (await e.engine.records.get(pending.id))!;
  t.equal(rec.state, 'refused', rec.outcome?.message ?? '');
  t.match(rec.outcome!.message, new RegExp(`a Job prod/rollguard-migration-${rec.id} \\(uid ${squat.metadata.uid}, created [^)]*, labelled managed-by rollguard\\) exists already, which this rollback did not create: rollguard runs only the Job it creates`));
  t.equal(e.created().length, 0);
  t.equal(e.action.executed.length, 0, 'the workload is not rolled back');
  await e.notifications.flush();
  t.ok(e.notifier.sent.some((n) => n.kind === 'rollback_refused' && n.lines.join('\n').includes(`rollguard-migration-${rec.id}`)), 'the refusal names the Job');
});

t.test("a Job made under the Job's name between the plan and the create stops the rollback, escalated, naming it", async (t) => {
  const e = setup('complete');
  await e.deliver(firing('HighErrorRate'));
  const pending = (await e.engine.records.list({}))[0]!;
  e.kube.failNext('create', (c) => {
    if (c.resource === 'jobs' && !c.dryRun) e.kube.add(RESOURCES.jobs, lookalike(c.name!, pending.id));
    return null;
  });
  await e.engine.approve(pending.id, 'alice');
  await e.engine.idle();
  const rec = (await e.engine.records.get(pending.id))!;
  t.equal(rec.state, 'failed', rec.outcome?.message ?? '');
  t.match(rec.outcome!.message, /^a Job prod\/rollguard-migration-\S+ was created by someone else before rollguard could create its migration rollback Job under that name \(uid [^)]*\); it is not waited for, and the workload was not rolled back$/);
  t.equal(rec.migration!.state, 'not_ours');
  t.equal(e.action.executed.length, 0);
  await e.notifications.flush();
  const n = e.notifier.sent.find((x) => x.kind === 'rollback_failed')!;
  t.match(n.title, /Job prod\/rollguard-migration-\S+ is not a migration rollback Job rollguard can show it created: escalate/);
  t.equal(await metricValue(e.metrics, 'rollguard_escalations_total', { reason: 'migration_job_not_ours' }), 1);
});

t.test('a Job deleted while it runs and replaced under its name by one that completes does not count', async (t) => {
  const e = setup('hang');
  await e.deliver(firing('HighErrorRate'));
  const pending = (await e.engine.records.list({}))[0]!;
  e.kube.onCreate = (rt, job, fake) => {
    if (rt.plural === 'jobs') setTimeout(() => fake.put(RESOURCES.jobs, { ...lookalike(job.metadata.name, pending.id), metadata: { ...lookalike(job.metadata.name, pending.id).metadata, uid: 'someone-elses' } }), 100);
  };
  e.prometheus!.value = 0.001;
  await e.engine.approve(pending.id, 'alice');
  await e.engine.idle();
  const rec = (await e.engine.records.get(pending.id))!;
  t.equal(rec.state, 'failed', rec.outcome?.message ?? '');
  t.match(rec.outcome!.message, /is no longer the one rollguard created \(uid [-0-9a-f]+\): it was deleted while it ran and another put in its place \(uid someone-elses/);
  t.match(rec.migration, { state: 'not_ours', foreign: { uid: 'someone-elses' } });
  t.equal(e.action.executed.length, 0, 'the workload is not rolled back');
});

t.test('a replica taking up a record left mid-Job goes on only with the Job of the recorded uid', async (t) => {

  // replaced under its name by a Job that completed
  const r = await leftMidJob();
  t.equal(r.left.state, 'in_progress');
  r.e.kube.put(RESOURCES.jobs, { ...lookalike(r.left.migration!.job, r.left.id), metadata: { ...lookalike(r.left.migration!.job, r.left.id).metadata, uid: 'someone-elses' } });
  await r.b.engine.tick();
  await r.b.engine.idle();
  let done = (await r.b.engine.records.get(r.left.id))!;
  t.equal(done.state, 'failed', JSON.stringify(done.timeline.slice(-3)));
  t.match(done.outcome!.message, new RegExp(`is not the one rollguard created \\(uid ${r.left.migration!.uid}\\): it was deleted and another put in its place \\(uid someone-elses`));
  t.equal(r.e.action.executed.length, 0, 'the workload is not rolled back');

  // a record holding no uid (its replica died before recording it, or written before 2026-12-07): whatever Job is there, it is not waited for
  const o = await leftMidJob();
  const { uid: _uid, ...older } = o.left.migration!;
  await o.e.store.putRecord({ ...o.left, migration: older } as unknown as StoredRecord);
  const job = o.e.kube.peek(RESOURCES.jobs, 'prod', o.left.migration!.job)!;
  o.e.kube.put(RESOURCES.jobs, { ...job, status: { conditions: [{ type: 'Complete', status: 'True' }] } });
  await o.b.engine.tick();
  await o.b.engine.idle();
  done = (await o.b.engine.records.get(o.left.id))!;
  t.equal(done.state, 'interrupted', JSON.stringify(done.timeline.slice(-3)));
  t.match(done.outcome!.message, /exists, but this record holds no uid for it: rollguard cannot tell whether it is the Job it created/);
  t.equal(o.e.action.executed.length, 0, 'the workload is not rolled back');
  await o.b.notifications.flush();
  t.ok(o.b.notifier.sent.some((n) => n.kind === 'rollback_interrupted' && n.title.includes(o.left.migration!.job)), 'the escalation names the Job');
});
