// A rollback under gitops: suspend whose replica died after it suspended the owner and before its
// last write (here: while its migration Job ran) is taken up by another replica, which goes on with
// it (scheduler recovery -> execute(..., resumed = true) -> suspendBeforeWrite). The owner is not
// suspended a second time: the record keeps the value from before rollguard, and resume puts it back.
import t from 'tap';
import { SUSPENDED_BEFORE, SUSPENDED_BY } from '../../../src/gitops/suspend.js';
import { OWNER_RESOURCES, type Owner } from '../../../src/gitops/types.js';
import { RESOURCES } from '../../../src/kube/kube.js';
import { testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { leftMidMigration, migrationRules } from '../../support/migrations.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ENV = { LOCK_TTL: '1s' };
const RULE = migrationRules({ key: 'rollback.yaml', deadline: '5s', logLines: 3 });
const KS: Owner = {
  tool: 'Flux', kind: 'Kustomization', namespace: 'flux-system', name: 'apps', via: 'labels kustomize.toolkit.fluxcd.io/name and /namespace',
  found: true, sync: 'reconciled every 5m, drift corrected on each run', correctsDrift: true, paused: false, settleMs: 0, objects: ['Deployment/prod/checkout'],
};

/**
 * Saves `left` with `gitops` as replica A's last write left it, waits past LOCK_TTL, and lets replica
 * B go on with it (its migration Job completed); returns B and the record as B left it.
 */
async function goOn(kube: FakeKube, { a, left }: Awaited<ReturnType<typeof leftMidMigration>>, gitops: NonNullable<typeof left.gitops>) {
  left.gitops = gitops;
  await a.store.putRecord(left);
  await sleep(1100); // past LOCK_TTL
  const b = testEngine({ kube, store: a.store, ruleText: RULE, owner: 'replica-b', action: a.action, env: ENV });
  b.prometheus!.value = 0.001;
  const job = kube.peek(RESOURCES.jobs, 'prod', left.migration!.job)!;
  kube.put(RESOURCES.jobs, { ...job, status: { conditions: [{ type: 'Complete', status: 'True' }] } });
  await b.engine.tick();
  await b.engine.idle();
  return { b, done: (await b.engine.records.get(left.id))! };
}

t.test('a recovery going on with a rollback does not suspend its owner again; resume-gitops then unsuspends it', async (t) => {
  const kube = new FakeKube();
  // as replica A left it: suspended by rollguard (spec.suspend was unset before)
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', suspend: true } });
  const mid = await leftMidMigration(kube, RULE, ENV);
  const pending = mid.left;
  t.equal(pending.state, 'in_progress', JSON.stringify(pending.timeline.slice(-2)));
  // what A's suspendBeforeWrite saved (the fake action's plan writes nothing GitOps-owned itself)
  const { b, done } = await goOn(kube, mid, { policy: 'suspend', owners: [KS], suspended: [{ kind: 'Kustomization', namespace: 'flux-system', name: 'apps', field: '/spec/suspend', set: true, at: Date.now() }] });
  t.equal(done.state, 'succeeded', JSON.stringify(done.timeline.slice(-4)));
  t.ok(done.timeline.some((s) => s.step === 'resumed'), 'replica B went on with the rollback');
  t.same(done.gitops?.suspended?.map((s) => [s.name, s.before]), [['apps', undefined]], 'the value before rollguard kept, not its own spec.suspend: true');
  t.same(kube.patches().filter((c) => c.resource === 'kustomizations'), [], 'the Kustomization not written again');
  const r = await b.engine.resumeGitOps(pending.id, 'alice');
  t.equal(r.kind, 'ok', 'resume-gitops finds the suspension to put back');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, undefined, 'resumed: spec.suspend removed, as before rollguard');
});

t.test('a replica that died between suspending the owner and saving the record: the one going on with the rollback tells the suspension as its own by its annotations, and resume-gitops puts it back', async (t) => {
  const kube = new FakeKube();
  const mid = await leftMidMigration(kube, RULE, ENV);
  const pending = mid.left;
  t.equal(pending.state, 'in_progress', JSON.stringify(pending.timeline.slice(-2)));
  // replica A's suspension write landed (spec.suspend was unset before), and it stopped before saving the record
  kube.add(OWNER_RESOURCES.Kustomization, {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization',
    metadata: { name: 'apps', namespace: 'flux-system', annotations: { [SUSPENDED_BY]: pending.id, [SUSPENDED_BEFORE]: 'unset' } },
    spec: { interval: '5m', suspend: true },
  });
  const { b, done } = await goOn(kube, mid, { policy: 'suspend', owners: [KS] });
  t.equal(done.state, 'succeeded', JSON.stringify(done.timeline.slice(-4)));
  t.same(done.gitops?.suspended?.map((s) => [s.name, s.set, s.before]), [['apps', true, undefined]], "the suspension held by the record, with the value before from the owner's annotation");
  t.notOk(done.timeline.some((s) => /already paused/.test(s.message)), 'not taken for a pause by someone else');
  t.ok(done.timeline.some((s) => s.step === 'gitops' && /suspended by this rollback already/.test(s.message)), 'said in the timeline');
  t.same(kube.patches().filter((c) => c.resource === 'kustomizations'), [], 'the Kustomization not written again');
  const r = await b.engine.resumeGitOps(pending.id, 'alice');
  t.equal(r.kind, 'ok', r.kind === 'conflict' ? r.message : 'resume-gitops finds the suspension to put back');
  const ks = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
  t.equal(ks.spec.suspend, undefined, 'resumed: spec.suspend removed, as before rollguard');
  t.same(ks.metadata.annotations ?? {}, {}, "rollguard's annotations removed in the same write");
});

t.test("annotations naming another rollback, or a value before the field does not take, are someone else's pause: left alone", async (t) => {
  for (const [by, before] of [['rb-other', 'unset'], ['SELF', '"yes"']] as const) {
    const kube = new FakeKube();
    const mid = await leftMidMigration(kube, RULE, ENV);
    kube.add(OWNER_RESOURCES.Kustomization, {
      apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization',
      metadata: { name: 'apps', namespace: 'flux-system', annotations: { [SUSPENDED_BY]: by === 'SELF' ? mid.left.id : by, [SUSPENDED_BEFORE]: before } },
      spec: { interval: '5m', suspend: true },
    });
    const { done } = await goOn(kube, mid, { policy: 'suspend', owners: [KS] });
    t.same(done.gitops?.suspended ?? [], [], `${by === 'SELF' ? 'this rollback with a value before of "yes"' : 'another rollback'}: no suspension held`);
    t.ok(done.timeline.some((s) => /already paused/.test(s.message)), 'said found paused, left alone');
    t.same(kube.patches().filter((c) => c.resource === 'kustomizations'), [], 'the Kustomization not written');
  }
});
