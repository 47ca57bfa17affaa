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
