import { MIGRATION_ANNOTATION } from '../../src/actions/action.js';
import { RESOURCES, type KubeObject } from '../../src/kube/kube.js';
import { firing, testEngine } from './engine.js';
import type { FakeKube } from './fake-kube.js';

// The rule the migration rollback Job tests share (test/unit/migrations/stage.test.ts,
// test/e2e/migrations.test.ts): HighErrorRate on a Deployment named by the alert's labels, P1,
// whose `migration:` names ConfigMap checkout-migrations.
export function migrationRules(opts: { key: string; deadline: string; logLines: number }): string {
  return `
rules:
  - name: checkout-errors
    match: ['alertname="HighErrorRate"']
    target: { kind: Deployment, namespace: "{{ $labels.namespace }}", name: "{{ $labels.deployment }}" }
    trigger: { kind: error_rate, selector: { namespace: "{{ $labels.namespace }}" }, threshold: 0.05, for: 2m, step: 15s }
    priority: P1
    migration:
      job: { configMap: checkout-migrations, key: ${opts.key} }
      deadline: ${opts.deadline}
      logLines: ${opts.logLines}
`;
}

/** The migration rollback Job template the unit tests' ConfigMap checkout-migrations holds (key rollback.yaml). */
export const ROLLBACK_JOB_TEMPLATE = 'apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    spec:\n      containers: [{ name: flyway, image: "flyway/flyway:11", args: [undo] }]\n';

/**
 * A rollback of prod/checkout with a migration rollback Job (migrationRules with key rollback.yaml),
 * approved on replica A, which then goes away while the Job runs (the fake cluster never completes
 * it): `left` is its record as A left it, on A's store and `kube`, for another replica to take up.
 */
export async function leftMidMigration(kube: FakeKube, ruleText: string, env: Record<string, string> = {}) {
  kube.add(RESOURCES.configmaps, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'checkout-migrations', namespace: 'prod' }, data: { 'rollback.yaml': ROLLBACK_JOB_TEMPLATE } } as KubeObject);
  const a = testEngine({ kube, ruleText, env });
  a.action.annotations = { [MIGRATION_ANNOTATION]: 'true' };
  await a.deliver(firing('HighErrorRate'));
  const pending = (await a.engine.records.list({}))[0]!;
  await a.engine.approve(pending.id, 'alice');
  await new Promise((r) => setTimeout(r, 300));
  await a.engine.stop?.(); // replica A goes away while the migration Job runs
  await a.engine.idle();
  return { a, left: (await a.engine.records.get(pending.id))! };
}
