// A Canary rollback makes two writes: the canary Deployment to 0 (with the change cause), then the
// stable one up by the canary's replicas (8 -> 10). Its replica dying between them left, until
// 2026-12-07, a recovery that planned from scratch: the canary at 0, the stable target 8 + 0 = 8,
// "already matches", verified and closed succeeded with the stable Deployment never scaled. The
// recovery now goes on with the stable count the first plan chose, which the record keeps
// (WriteSummary.replicas), and does not scale over a stable Deployment scaled since.
import t, { type Test } from 'tap';
import { canaryAction } from '../../../src/actions/canary.js';
import { summarisePlan } from '../../../src/engine/change.js';
import { changeCause } from '../../../src/engine/messages.js';
import type { RollbackRecord } from '../../../src/engine/record.js';
import { readCooldown, writeCooldowns } from '../../../src/guards/cooldown.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { FakePrometheus, testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { context } from '../actions/fixtures/objects.js';

const NS = 'shop';
const REF = { kind: 'Canary' as const, namespace: NS, name: 'backend-api' };

function dep(name: string, track: string, replicas: number): KubeObject {
  const labels = { app: 'backend-api', track };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: NS, generation: 1, uid: `uid-${name}` },
    spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: `${name}:1` }] } } },
    status: { observedGeneration: 1, replicas, updatedReplicas: replicas, availableReplicas: replicas },
  };
}

/** canary 2, stable 8; a Deployment's status follows its spec at once (the fake has no controller). */
function cluster(): FakeKube {
  const kube = new FakeKube();
  kube.add(RESOURCES.deployments, dep('backend-api-canary', 'canary', 2));
  kube.add(RESOURCES.deployments, dep('backend-api-stable', 'stable', 8));
  kube.onPatch = (rt, obj, fake) => {
    if (rt !== RESOURCES.deployments) return;
    const r = obj.spec.replicas as number;
    fake.put(rt, { ...obj, status: { observedGeneration: obj.metadata.generation, replicas: r, updatedReplicas: r, availableReplicas: r } });
  };
  return kube;
}

const replicasOf = (kube: FakeKube, name: string) => kube.peek(RESOURCES.deployments, NS, name)!.spec.replicas as number;
const scale = (kube: FakeKube, name: string, replicas: number) => {
  const d = kube.peek(RESOURCES.deployments, NS, name)!;
  d.spec.replicas = replicas;
  d.status = { observedGeneration: d.metadata.generation, replicas, updatedReplicas: replicas, availableReplicas: replicas };
  kube.put(RESOURCES.deployments, d);
};

/**
 * A Canary rollback in progress whose replica (replica-dead) planned it, recorded the plan as
 * rollback() does (summarisePlan) at its write-ahead, then made `landed` of its writes and died.
 * The recovering replica (replica-b) runs on the same store and cluster.
 */
async function cutOff(t: Test, kube: FakeKube, landed: number, env: Record<string, string> = {}) {
  const prometheus = new FakePrometheus();
  prometheus.value = 0.001;
  const b = testEngine({ kube, prometheus, actions: { Canary: canaryAction }, owner: 'replica-b', env: { VERIFY_TIMEOUT: '2s', ...env } });
  const now = Date.now();
  const rec: RollbackRecord = {
    id: 'rb-canary-cut',
    target: `Canary/${NS}/backend-api`,
    state: 'in_progress',
    owner: 'replica-dead',
    lockToken: 1,
    createdAt: now,
    updatedAt: now,
    ref: REF,
    source: 'manual',
    requestedBy: 'oncall',
    reason: 'bad canary',
    guards: [],
    dryRun: false,
    times: { startedAt: now },
    timeline: [],
  };
  const ctx = context(kube, { changeCause: changeCause(rec) });
  const first = await canaryAction.plan(REF, ctx);
  t.same(first.writes!.map((w) => w.description), ['scale canary backend-api-canary from 2 to 0', 'scale stable backend-api-stable from 8 to 10']);
  rec.plan = summarisePlan(first);
  await b.store.putRecord(JSON.parse(JSON.stringify(rec)) as never);
  if (landed > 0) {
    // execute() starts the cooldowns before the first write
    await writeCooldowns(b.store, rec.target, first, { id: rec.id, at: now, until: now + 3_600_000 }, now);
    const res = await canaryAction.execute({ ...first, writes: first.writes!.slice(0, landed) }, ctx);
    t.equal(res.applied, true, res.message);
  }
  return { ...b, rec };
}

const lines = (r: RollbackRecord) => r.timeline.map((s) => `${s.step}: ${s.message}`).join('\n');

t.test('cut off after the canary write: the recovery scales the stable Deployment to the count the first plan chose, and closes succeeded', async (t) => {
  const kube = cluster();
  const { engine, rec } = await cutOff(t, kube, 1);
  t.equal(replicasOf(kube, 'backend-api-canary'), 0, 'the canary write landed');
  t.equal(replicasOf(kube, 'backend-api-stable'), 8, 'the stable one did not');
  await engine.tick();
  await engine.idle();
  const after = (await engine.records.get(rec.id))!;
  t.equal(replicasOf(kube, 'backend-api-stable'), 10, 'stable + canary as first planned (8 + 2), not 8 + 0');
  t.equal(after.state, 'succeeded', lines(after));
  t.ok(after.timeline.some((s) => s.step === 'recovery'), 'taken up by the recovery');
  t.ok(
    after.timeline.some((s) => s.step === 'resumed' && /go on: scale stable backend-api-stable from 8 to 10/.test(s.message)),
    `a step says it went on:\n${lines(after)}`,
  );
  t.ok(after.times.executedAt, 'recorded as executed once the rest was written');
  t.same(
    kube.patches().map((c) => [c.name, (c.body as { spec: { replicas: number } }).spec.replicas]),
    [['backend-api-canary', 0], ['backend-api-stable', 10]],
    'the canary written once (by the first replica), the stable once (by the recovery)',
  );
});

t.test('cut off after the canary write, the stable Deployment scaled since: not scaled over, the record interrupted saying what to do', async (t) => {
  const kube = cluster();
  const b = await cutOff(t, kube, 1);
  const { engine, rec } = b;
  scale(kube, 'backend-api-stable', 12); // an HPA, or a person
  await engine.tick();
  await engine.idle();
  const after = (await engine.records.get(rec.id))!;
  t.equal(replicasOf(kube, 'backend-api-stable'), 12, 'the new count kept');
  t.not(after.state, 'succeeded', lines(after));
  t.equal(after.state, 'interrupted');
  t.equal(
    after.outcome?.message,
    'the replica running this rollback died mid-way; canary "backend-api-canary" was scaled to 0 by this rollback before its replica died; stable deployment "backend-api-stable" was scaled from 8 to 12 since (an HPA or a person): not scaled over to 10; scale "backend-api-stable" by hand if it needs the canary\'s capacity; not executed again; escalated',
  );
  t.same(kube.patches().map((c) => c.name), ['backend-api-canary'], 'nothing written by the recovery');
  const page = b.notifier.sent.find((n) => n.kind === 'rollback_interrupted');
  t.match(page?.lines.join('\n'), /did not go on: canary "backend-api-canary" was scaled to 0 by this rollback .*scaled from 8 to 12 since .*scale "backend-api-stable" by hand/, 'the page says what was found and what to do');
  for (const key of [rec.target, `Deployment/${NS}/backend-api-stable`]) {
    t.equal((await readCooldown(b.store, key))?.id, rec.id, `${key}: the cooldown stays (the canary write landed)`);
  }
});

t.test('cut off after the canary write, the recovering replica in dry run, paused or with the namespace out of scope: nothing written, the record interrupted naming why', async (t) => {
  const cases: [string, Record<string, string>, RegExp, boolean][] = [
    ['DRY_RUN', { DRY_RUN: 'true' }, /not gone on: DRY_RUN is on;/, false],
    ['SCOPE_DENY_NAMESPACES', { SCOPE_DENY_NAMESPACES: 'sh*' }, /not gone on: Canary\/shop\/backend-api is out of scope: namespace shop is denied by sh\* \(SCOPE_DENY_NAMESPACES\)/, false],
    ['SCOPE_DENY_TARGETS', { SCOPE_DENY_TARGETS: 'Deployment/shop/*-stable' }, /not gone on: Deployment\/shop\/backend-api-stable is out of scope: .*SCOPE_DENY_TARGETS/, false],
    ['paused', {}, /not gone on: rollguard is paused \(by oncall: incident 7; POST \/v1\/resume\)/, true],
  ];
  for (const [name, env, message, pause] of cases) {
    const kube = cluster();
    const b = await cutOff(t, kube, 1, env);
    if (pause) await b.store.setValue('control:paused', JSON.stringify({ by: 'oncall', at: Date.now(), reason: 'incident 7' }));
    await b.engine.tick();
    await b.engine.idle();
    const after = (await b.engine.records.get(b.rec.id))!;
    t.equal(replicasOf(kube, 'backend-api-stable'), 8, `${name}: the stable Deployment not written`);
    t.same(kube.patches().map((c) => c.name), ['backend-api-canary'], `${name}: only the first replica's write`);
    t.equal(after.state, 'interrupted', `${name}: interrupted`);
    t.match(after.outcome?.message, message, `${name}: says why, naming the setting`);
  }
});

t.test('cut off after both writes: applied, verified and closed succeeded, nothing written again', async (t) => {
  const kube = cluster();
  const { engine, rec } = await cutOff(t, kube, 2);
  await engine.tick();
  await engine.idle();
  const after = (await engine.records.get(rec.id))!;
  t.equal(after.state, 'succeeded', lines(after));
  t.notOk(after.timeline.some((s) => s.step === 'resumed'), 'nothing to go on with');
  t.equal(replicasOf(kube, 'backend-api-stable'), 10);
  t.equal(kube.patches().length, 2, 'the two writes of the first replica only');
});

t.test('cut off before any write: interrupted as before, nothing written', async (t) => {
  const kube = cluster();
  const { engine, rec } = await cutOff(t, kube, 0);
  await engine.tick();
  await engine.idle();
  const after = (await engine.records.get(rec.id))!;
  t.equal(after.state, 'interrupted', lines(after));
  t.match(after.outcome?.message, /died before it was applied/);
  t.equal(kube.patches().length, 0);
  t.equal(replicasOf(kube, 'backend-api-canary'), 2);
  t.equal(replicasOf(kube, 'backend-api-stable'), 8);
});
