import t from 'tap';
import { buildJob, jobName, parseTemplate, RECORD_LABEL, TemplateError } from '../../../src/migrations/template.js';
import { migrationRuleSchema } from '../../../src/migrations/rule.js';

const FLYWAY = `
apiVersion: batch/v1
kind: Job
metadata:
  labels: { team: payments }
spec:
  template:
    spec:
      containers:
        - name: flyway
          image: flyway/flyway:11
          args: [undo]
          env: [{ name: FLYWAY_URL, valueFrom: { secretKeyRef: { name: db, key: url } } }]
`;

const ctx = { recordId: 'rb-0123456789abcdef0123', target: 'Deployment/shop/checkout', namespace: 'shop', fromRevision: 3, toRevision: 2, deadlineMs: 600_000, ttlAfterFinishedMs: 86_400_000, source: 'checkout-migrations/rollback.yaml' };

/** The field a template error names, or 'accepted'. */
function fieldOf(text: string): string {
  try {
    parseTemplate(text);
    return 'accepted';
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    return err.field;
  }
}

t.test('a Job manifest becomes the Job rollguard creates: name and labels tied to the record, no owner, deadline, TTL, env', async (t) => {
  const job = buildJob(parseTemplate(FLYWAY), ctx);
  t.equal(job.metadata.name, 'rollguard-migration-rb-0123456789abcdef0123');
  t.equal(job.metadata.name, jobName(ctx.recordId));
  t.equal(job.metadata.namespace, 'shop');
  t.same(job.metadata.labels, { team: 'payments', 'app.kubernetes.io/managed-by': 'rollguard', [RECORD_LABEL]: ctx.recordId, 'rollguard.io/purpose': 'migration-rollback' });
  t.equal(job.metadata.annotations!['rollguard.io/target'], 'Deployment/shop/checkout');
  t.notOk(job.metadata.ownerReferences, 'ownerless');
  t.equal(job.spec.activeDeadlineSeconds, 600);
  t.equal(job.spec.ttlSecondsAfterFinished, 86400);
  t.equal(job.spec.backoffLimit, 0, 'a failed undo is not retried unless the template says so');
  t.equal(job.spec.template.spec.restartPolicy, 'Never');
  t.equal(job.spec.template.metadata.labels[RECORD_LABEL], ctx.recordId, 'its pods carry the record label too');
  t.same(
    job.spec.template.spec.containers[0].env.map((e: { name: string }) => e.name),
    ['FLYWAY_URL', 'ROLLGUARD_RECORD', 'ROLLGUARD_TARGET', 'ROLLGUARD_FROM_REVISION', 'ROLLGUARD_TO_REVISION'],
  );
  t.same(job.spec.template.spec.containers[0].args, ['undo']);
});

t.test('a bare Job spec is taken too; the template keeps what it sets within the rule', async (t) => {
  const job = buildJob(
    parseTemplate(`
template:
  metadata: { annotations: { sidecar.istio.io/inject: "false" } }
  spec:
    restartPolicy: OnFailure
    containers: [{ name: liquibase, image: "liquibase/liquibase:4", args: [rollbackCount, "1"], env: [{ name: ROLLGUARD_TARGET, value: mine }] }]
backoffLimit: 2
activeDeadlineSeconds: 120
ttlSecondsAfterFinished: 60
`),
    ctx,
  );
  t.equal(job.spec.backoffLimit, 2);
  t.equal(job.spec.activeDeadlineSeconds, 120, 'shorter than the rule deadline: kept');
  t.equal(job.spec.ttlSecondsAfterFinished, 60);
  t.equal(job.spec.template.spec.restartPolicy, 'OnFailure');
  t.equal(job.spec.template.metadata.annotations['sidecar.istio.io/inject'], 'false');
  const env = job.spec.template.spec.containers[0].env as { name: string; value: string }[];
  t.same(env.filter((e) => e.name === 'ROLLGUARD_TARGET'), [{ name: 'ROLLGUARD_TARGET', value: 'mine' }], "the template's own value wins");
  const longer = buildJob(parseTemplate(FLYWAY.replace('spec:\n  template:', 'spec:\n  activeDeadlineSeconds: 7200\n  template:')), ctx);
  t.equal(longer.spec.activeDeadlineSeconds, 600, 'never longer than the rule deadline: Kubernetes stops what rollguard stopped waiting for');
});

t.test('what is wrong with a template is refused naming the field', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['not: [yaml', '', /not valid YAML/],
    ['- a list', '', /expected a Job/],
    [FLYWAY.replace('kind: Job', 'kind: CronJob'), 'kind', /expected Job/],
    [FLYWAY.replace('apiVersion: batch/v1', 'apiVersion: batch/v1beta1'), 'apiVersion', /batch\/v1/],
    [FLYWAY.replace('  labels: { team: payments }', '  name: undo'), 'metadata.name', /set by rollguard/],
    [FLYWAY.replace('  labels: { team: payments }', '  namespace: other'), 'metadata.namespace', /target's namespace/],
    [FLYWAY.replace('spec:\n  template:', 'sepc:\n  template:'), 'spec', /expected/],
    [FLYWAY.replace('image: flyway/flyway:11', 'image: ""'), 'spec.template.spec.containers[0].image', /image of the rollback tool/],
    [FLYWAY.replace('name: flyway', 'name: Flyway_Undo'), 'spec.template.spec.containers[0].name', /DNS-1123 label/],
    [FLYWAY.replace('      containers:', '      restartPolicy: Always\n      containers:'), 'spec.template.spec.restartPolicy', /Never.*OnFailure/],
    [FLYWAY.replace('spec:\n  template:', 'spec:\n  parallelism: 2\n  template:'), 'spec.parallelism', /runs once/],
    [FLYWAY.replace('spec:\n  template:', 'spec:\n  suspend: true\n  template:'), 'spec.suspend', /never run/],
    [FLYWAY.replace('spec:\n  template:', 'spec:\n  selector: { matchLabels: { a: b } }\n  template:'), 'spec.selector', /set by rollguard/],
    [FLYWAY.replace('spec:\n  template:', 'spec:\n  backoffLimit: -1\n  template:'), 'spec.backoffLimit', /./],
    ['template: { spec: { containers: [] } }', 'spec.template.spec.containers', /at least one container/],
  ];
  for (const [text, field, msg] of cases) {
    t.equal(fieldOf(text), field, `${JSON.stringify(text.slice(0, 40))}… names ${field || 'the document'}`);
    t.throws(() => parseTemplate(text), msg);
  }
  t.equal(fieldOf('template:\n  spec:\n    containers: [{ name: undo, image: "x" }]'), 'accepted');
  // a missing required key's path too
  t.equal(fieldOf(FLYWAY.replace('          image: flyway/flyway:11\n', '')), 'spec.template.spec.containers[0].image');
});

t.test("the rule's migration setting: defaults, and refusals naming the field", async (t) => {
  const ok = migrationRuleSchema.parse({ job: { configMap: 'checkout-migrations', key: 'rollback.yaml' } });
  t.same(ok, { job: { configMap: 'checkout-migrations', key: 'rollback.yaml' }, deadline: 600_000, logLines: 20, ttlAfterFinished: 86_400_000 });
  t.equal(migrationRuleSchema.parse({ job: { configMap: 'm', key: 'k' }, deadline: '30m' }).deadline, 1_800_000);
  const bad = (v: unknown) => {
    const r = migrationRuleSchema.safeParse(v);
    return r.success ? 'accepted' : r.error.issues[0]!.path.join('.');
  };
  t.equal(bad({ job: { configMap: 'Bad_Name', key: 'k' } }), 'job.configMap');
  t.equal(bad({ job: { configMap: 'm', key: 'a/b' } }), 'job.key');
  t.equal(bad({ job: { configMap: 'm', key: 'k' }, deadline: '2h' }), 'deadline');
  t.equal(bad({ job: { configMap: 'm', key: 'k' }, deadline: 'soon' }), 'deadline');
  t.equal(bad({ job: { configMap: 'm', key: 'k' }, logLines: 0 }), 'logLines');
  t.equal(bad({ job: { configMap: 'm' } }), 'job.key');
  t.equal(bad({ job: { configMap: 'm', key: 'k' }, template: 'x' }), '');
});
