// A rule removed or renamed by a reload while one of its rollbacks is in flight. Nothing is rolled
// back on its behalf once it is gone, as a held or scheduled re-check of it already closed
// `expired`: an approval given afterwards, an ordered chain's next target, a record taken up after
// a replica died. Before, these ran on the default guards (no dry-run, the default cooldown,
// configDrift warn, no approval), whatever the rule had said. And a rollback whose rule went away
// during its rollout was closed `succeeded` as a "manual rollback" with no trigger to re-check.
import t from 'tap';
import { CHAIN_RULES, FakeDeploymentAction, RULES, firing, recoversOnWrite, testEngine } from '../../support/engine.js';
import type { Action } from '../../../src/actions/action.js';
import { lockName, rollbackHolder } from '../../../src/guards/lock.js';

/** RULES with the approval rule renamed and tried out in dry-run (as a team would rework it). */
const RENAMED = RULES.replace('  - name: latency-p1\n', '  - name: latency-p1-v2\n').replace(
  'guards: { approval: { required: true, expiresAfter: 10m } }',
  'guards: { dryRun: true, approval: { required: true, expiresAfter: 10m } }',
);

t.test('an approval given after its rule was renamed rolls nothing back: refused, the record closed expired, naming the rule', async (t) => {
  t.not(RENAMED, RULES);
  const e = testEngine();
  await e.deliver(firing('HighLatency'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'pending_approval');
  e.reload(RENAMED);
  const res = await e.engine.approve(rec!.id, 'oncall');
  await e.engine.idle();
  t.equal(e.action.executed.length, 0, 'nothing rolled back');
  t.equal(res.kind, 'conflict');
  const after = (await e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'expired');
  t.match(after.outcome?.message, /^rule latency-p1 is no longer loaded/);
});

t.test("an ordered chain whose rule a reload removed after its first target: the next target is not rolled back on the default guards", async (t) => {
  const e = testEngine({ ruleText: CHAIN_RULES });
  recoversOnWrite(e);
  const put = e.store.putRecord.bind(e.store);
  e.store.putRecord = async (r) => {
    const out = await put(r);
    if (r.state === 'succeeded' && r.target === 'Deployment/prod/api') e.reload(RULES);
    return out;
  };
  await e.deliver(firing('ReleaseErrors', 'api'));
  await e.engine.idle();
  const recs = await e.engine.records.list({});
  const states = Object.fromEntries(recs.map((r) => [r.target, r.state]));
  t.same(e.action.executed.map((x) => x.ref.name), ['api'], 'only the first target, rolled back while its rule was loaded');
  t.equal(states['Deployment/prod/auth'], 'expired');
  t.equal(states['Deployment/prod/web'], 'blocked');
  t.match(recs.find((r) => r.target === 'Deployment/prod/auth')!.outcome?.message, /^rule release-train is no longer loaded/);
});

t.test('a record of a removed rule left deciding, approved, by a replica that died: taken up, closed expired, nothing rolled back', async (t) => {
  const e = testEngine();
  await e.deliver(firing('HighLatency'));
  const [rec] = await e.engine.records.list({});
  // approved on a replica that died before it ran the guards
  const stored = (await e.engine.records.get(rec!.id))!;
  stored.state = 'deciding';
  stored.owner = 'replica-gone';
  stored.approval = { by: 'oncall', at: Date.now(), decision: 'approved' };
  stored.updatedAt = Date.now() - 3_600_000;
  delete stored.dueAt;
  await e.store.putRecord(stored);
  e.reload(RENAMED);
  await e.engine.tick();
  await e.engine.idle();
  t.equal(e.action.executed.length, 0, 'nothing rolled back');
  const after = (await e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'expired', after.outcome?.message ?? '');
  t.match(after.outcome?.message, /^rule latency-p1 is no longer loaded/);
});

t.test('a rollback whose rule was renamed during its rollout is not closed succeeded as a manual one: unverified, saying why', async (t) => {
  const e = testEngine();
  const execute = e.action.execute.bind(e.action);
  e.action.execute = async (p, c) => {
    const r = await execute(p, c);
    e.reload(RULES.replace('  - name: error-rate\n', '  - name: error-rate-v2\n'));
    return r;
  };
  e.prometheus!.value = 0.2;
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(e.action.executed.length, 1);
  t.equal(rec!.state, 'unverified', rec!.outcome?.message ?? '');
  t.match(rec!.outcome?.message, /rule error-rate is no longer loaded/);
  t.notMatch(rec!.outcome?.message, /manual/);
});

t.test('a manual rollback still closes succeeded with no trigger to re-check', async (t) => {
  const e = testEngine();
  await e.engine.manual({ ref: { kind: 'Deployment', namespace: 'prod', name: 'checkout' }, reason: 'bad deploy', requestedBy: 'ops' });
  await e.engine.idle();
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded', rec!.outcome?.message ?? '');
});

/** RULES with held-when-down's target changed to a fixed Deployment (a bad commit's target fixed). */
const RETARGETED = RULES.replace(
  /(  - name: held-when-down\n    match: \['alertname="SlowBurn"'\]\n)    target: \{[^\n]*\}\n/,
  '$1    target: { kind: Deployment, namespace: prod, name: payments }\n',
);

t.test('a held rollback whose rule a reload re-targeted is not rolled back on its old target at its re-check', async (t) => {
  t.not(RETARGETED, RULES);
  const { e, rec } = await heldThen(RETARGETED, RULES);
  t.equal(rec.state, 'held', rec.outcome?.message ?? '');
  await e.engine.tick();
  await e.engine.idle();
  t.equal(e.action.executed.length, 0, 'checkout not rolled back');
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(after.state, 'expired', after.outcome?.message ?? '');
  t.match(after.outcome?.message, /^rule held-when-down as reloaded no longer targets Deployment prod\/checkout for this alert \(now Deployment prod\/payments\)/);
});

t.test('a held rollback whose rule a reload left as it was is still rolled back at its re-check', async (t) => {
  const { e, rec } = await heldThen(RULES, RULES);
  t.equal(rec.state, 'held');
  await e.engine.tick();
  await e.engine.idle();
  t.equal(e.action.executed.length, 1);
  t.equal((await e.engine.records.get(rec.id))!.state, 'succeeded');
});

/** held-when-down with its rollback pinned to a revision (kubectl's --to-revision as a rule param). */
const pinned = (rev: number) =>
  RULES.replace(
    /(  - name: held-when-down\n    match: \['alertname="SlowBurn"'\]\n    target: \{[^\n]*)\}\n/,
    `$1, params: { toRevision: "${rev}" } }\n`,
  );

/** A held record of held-when-down (SlowBurn on checkout), due now once the rules are `next`. */
async function heldThen(next: string, rules = pinned(3)) {
  const e = testEngine({ ruleText: rules });
  recoversOnWrite(e);
  e.prometheus!.down = true;
  await e.deliver(firing('SlowBurn'));
  const [rec] = await e.engine.records.list({});
  e.reload(next);
  e.prometheus!.down = false;
  const stored = (await e.engine.records.get(rec!.id))!;
  stored.dueAt = Date.now() - 1;
  await e.store.putRecord(stored);
  return { e, rec: stored };
}

/** held-when-down pinned to `rev`, with approval required: a SlowBurn alert's record waits for approval. */
async function pendingPinned(rev: number) {
  const rules = pinned(rev).replace('  - name: held-when-down\n', '  - name: held-when-down\n    guards: { approval: { required: true, expiresAfter: 10m } }\n');
  const e = testEngine({ ruleText: rules });
  e.prometheus!.value = 0.2;
  await e.deliver(firing('SlowBurn'));
  const [rec] = await e.engine.records.list({});
  return { e, rec: rec!, rules };
}

/** Reloads `rules`, then approves `rec`: the approval's answer, and the record once the engine is idle. */
async function approvedAfterReload(e: ReturnType<typeof testEngine>, rec: { id: string }, rules: string) {
  e.reload(rules);
  const res = await e.engine.approve(rec.id, 'oncall');
  await e.engine.idle();
  return { res, after: (await e.engine.records.get(rec.id))! };
}

t.test('a held rollback whose rule a reload re-pinned to another revision rolls back to the revision the rule names now, not the one it named', async (t) => {
  t.not(pinned(3), RULES);
  const { e, rec } = await heldThen(pinned(4));
  t.equal(rec.state, 'held');
  t.equal(rec.ref.toRevision, 3);
  await e.engine.tick();
  await e.engine.idle();
  t.same(e.action.executed.map((x) => x.ref.toRevision), [4], 'rolled back to revision 4');
  const after = (await e.engine.records.get(rec.id))!;
  t.equal(after.state, 'succeeded', after.outcome?.message ?? '');
  t.ok(after.timeline.some((s) => s.step === 'retargeted' && /toRevision=4/.test(s.message)), 'the timeline says the rule now rolls it back otherwise');
});

t.test('a rollback pinned to a revision by its rule, sent back by the lock guard, still rolls back to that revision at its re-check', async (t) => {
  const e = testEngine({ ruleText: pinned(3) });
  recoversOnWrite(e);
  await e.store.putRecord({ id: 'rb-deciding', target: 'Deployment/prod/checkout', state: 'deciding', createdAt: 1, owner: 'replica-b', updatedAt: Date.now() });
  const lock = (await e.store.acquireLock(lockName('Deployment/prod/checkout'), rollbackHolder('replica-b', 'rb-deciding'), 60_000))!;
  e.prometheus!.value = 0.2;
  await e.deliver(firing('SlowBurn'));
  const rec = (await e.engine.records.list({})).find((r) => r.id !== 'rb-deciding')!;
  t.equal(rec.state, 'scheduled', rec.outcome?.message ?? '');
  await e.store.putRecord({ id: 'rb-deciding', target: 'Deployment/prod/checkout', state: 'blocked', createdAt: 1, owner: 'replica-b', updatedAt: Date.now() });
  await e.store.releaseLock(lock);
  const stored = (await e.engine.records.get(rec.id))!;
  stored.dueAt = Date.now() - 1;
  await e.store.putRecord(stored);
  await e.engine.tick();
  await e.engine.idle();
  t.same(e.action.executed.map((x) => x.ref.toRevision), [3], "rolled back to the rule's revision 3, not to the previous one");
  const after = (await e.engine.records.get(rec.id))!;
  t.notOk(
    after.timeline.some((s) => s.step === 'retargeted'),
    `no reload changed the rule, and the timeline says none did (${after.timeline.map((s) => s.step).join(', ')})`,
  );
});

t.test('an approval asked for one revision, its rule re-pinned to another by a reload: nothing rolled back, closed expired, saying what the rule names now', async (t) => {
  const { e, rec, rules: approval } = await pendingPinned(3);
  t.equal(rec.state, 'pending_approval', rec.outcome?.message ?? '');
  const { res, after } = await approvedAfterReload(e, rec, approval.replace('toRevision: "3"', 'toRevision: "4"'));
  t.equal(res.kind, 'conflict');
  t.equal(e.action.executed.length, 0, 'not rolled back to revision 3, which was approved, nor to 4, which was not');
  t.equal(after.state, 'expired');
  t.match(after.outcome?.message, /^rule held-when-down as reloaded rolls back Deployment prod\/checkout otherwise for this alert \(now Deployment prod\/checkout \(toRevision=4\), was Deployment prod\/checkout \(toRevision=3\)\)/);
});

t.test("a held Canary rollback whose rule a reload gave another stable Deployment is decided with it, not closed expired for good", async (t) => {
  const canary = (stable: string) =>
    RULES.replace(
      /(  - name: held-when-down\n    match: \['alertname="SlowBurn"'\]\n)    target: \{[^\n]*\}\n/,
      `$1    target: { kind: Canary, namespace: prod, name: "{{ $labels.deployment }}", params: { stable: ${stable} } }\n`,
    );
  // the Deployment double stands for the Canary action: the engine hands it the target as resolved
  const fake = new FakeDeploymentAction();
  const e = testEngine({ ruleText: canary('api-old'), action: fake, actions: { Canary: fake as unknown as Action } });
  recoversOnWrite(e);
  e.prometheus!.down = true;
  await e.deliver(firing('SlowBurn', 'api-canary'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'held', rec!.outcome?.message ?? '');
  t.same(rec!.ref.options, { canary: 'api-canary', stable: 'api-old' });
  e.reload(canary('api-stable'));
  e.prometheus!.down = false;
  rec!.dueAt = Date.now() - 1;
  await e.store.putRecord(rec!);
  await e.engine.tick();
  await e.engine.idle();
  const after = (await e.engine.records.get(rec!.id))!;
  t.equal(after.state, 'succeeded', after.outcome?.message ?? '');
  t.same(fake.executed.map((x) => x.ref.options), [{ canary: 'api-canary', stable: 'api-stable' }], 'rolled back with the stable Deployment the rule names now');
});

t.test('a held rollback whose rule a reload unpinned (its revision was the bad one) rolls back to the previous revision, the timeline saying so', async (t) => {
  const { e, rec } = await heldThen(RULES);
  t.equal(rec.ref.toRevision, 3);
  await e.engine.tick();
  await e.engine.idle();
  t.same(e.action.executed.map((x) => x.ref.toRevision), [undefined], 'rolled back to the previous revision, not to 3');
  const after = (await e.engine.records.get(rec.id))!;
  t.ok(after.timeline.some((s) => s.step === 'retargeted' && /was Deployment prod\/checkout \(toRevision=3\)/.test(s.message)), 'the timeline says the rule now rolls it back otherwise');
});

t.test('an approval asked for a revision its rule pinned, the pin taken off by a reload: nothing rolled back, closed expired', async (t) => {
  const { e, rec, rules: approval } = await pendingPinned(3);
  t.equal(rec.state, 'pending_approval', rec.outcome?.message ?? '');
  const unpinned = approval.replace(', params: { toRevision: "3" }', '');
  t.not(unpinned, approval);
  const { res, after } = await approvedAfterReload(e, rec, unpinned);
  t.equal(res.kind, 'conflict');
  t.equal(e.action.executed.length, 0, 'not rolled back to revision 3, which the rule no longer names');
  t.equal(after.state, 'expired');
  t.match(after.outcome?.message, /now Deployment prod\/checkout, was Deployment prod\/checkout \(toRevision=3\)/);
});

t.test("an approval asked for a step back, its rule reloaded unchanged: approved, it steps back to the revision it named", async (t) => {
  const target = 'Deployment/prod/checkout';
  const rules = RULES.replace('  - name: held-when-down\n', '  - name: held-when-down\n    guards: { approval: { required: true, expiresAfter: 10m }, allowStepBack: true, maxStepBack: 2 }\n');
  t.not(rules, RULES);
  const e = testEngine({ ruleText: rules });
  recoversOnWrite(e);
  // the last rollback restored revision 5 and did not recover
  await e.store.putRecord({ id: 'rb-prev', target, state: 'failed', createdAt: 1, plan: { toRevision: 5 } } as never);
  await e.store.setValue(`cooldown:${target}`, JSON.stringify({ id: 'rb-prev', at: Date.now() - 60_000, until: Date.now() + 3_600_000, outcome: 'failed' }), { ttlMs: 3_600_000 });
  e.prometheus!.value = 0.2;
  await e.deliver(firing('SlowBurn'));
  const rec = (await e.engine.records.list({})).find((r) => r.id !== 'rb-prev')!;
  t.equal(rec.state, 'pending_approval', rec.outcome?.message ?? '');
  t.equal(rec.ref.toRevision, 4, 'a step back to revision 4');
  const { res } = await approvedAfterReload(e, rec, rules + '\n');
  t.equal(res.kind, 'ok');
  t.same(e.action.executed.map((x) => x.ref.toRevision), [4], 'stepped back to revision 4');
});

t.test('an approval asked for a revision its rule pinned after an earlier step back to it, the pin taken off by a reload: nothing rolled back, closed expired', async (t) => {
  const { e, rec, rules: approval } = await pendingPinned(4);
  t.equal(rec.state, 'pending_approval', rec.outcome?.message ?? '');
  t.equal(rec.ref.toRevision, 4);
  // its history before: a step back to 4 sent back by the lock guard, then a reload pinning 4 taken at the re-check
  const at = rec.timeline[0]!.at;
  rec.timeline.unshift(
    { at, step: 'step_back', message: 'rb-prev restored revision 5 and did not recover: stepping back to revision 4', data: { toRevision: 4 } },
    { at, step: 'retargeted', message: 'rule held-when-down as reloaded rolls back Deployment/prod/checkout as Deployment prod/checkout (toRevision=4) (was Deployment prod/checkout): decided on that' },
  );
  await e.store.putRecord(rec);
  const unpinned = approval.replace(', params: { toRevision: "4" }', '');
  t.not(unpinned, approval);
  const { res, after } = await approvedAfterReload(e, rec, unpinned);
  t.equal(res.kind, 'conflict');
  t.equal(e.action.executed.length, 0, 'not rolled back to revision 4, which the rule pinned and no longer names');
  t.equal(after.state, 'expired');
});
