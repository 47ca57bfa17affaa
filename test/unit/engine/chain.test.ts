// A rule's ordered list of targets as a job in the store (src/engine/chain.ts): a target that does
// not roll back stops the chain, naming it; a next target written ahead by a replica that died is
// run by another on the first target's decision, never evaluated again.
import t, { type Test } from 'tap';
import { OPEN_STATES } from '../../../src/engine/record.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { StoreUnavailableError } from '../../../src/store/store.js';
import { CHAIN_RULES as RULES, firing, PerTargetDeploymentAction, recoversOnWrite, testEngine } from '../../support/engine.js';

const alert = (fp: string) => firing('ReleaseErrors', 'api', { fingerprint: fp, labels: { alertname: 'ReleaseErrors', namespace: 'prod' } });
const byName = async (e: ReturnType<typeof testEngine>) => Object.fromEntries((await e.engine.records.list({ limit: 10 })).map((r) => [r.ref.name, r]));

t.test('a target that does not roll back stops the chain: the rest are blocked, naming it', async (t) => {
  const action = new PerTargetDeploymentAction();
  const e = testEngine({ action, ruleText: RULES });
  // auth's plan refuses (its template already matches the previous revision)
  const plan = action.plan.bind(action);
  action.plan = async (ref) => {
    const p = await plan(ref);
    return ref.name === 'auth' ? { ...p, refusal: { code: 'already_matches', message: 'skipped rollback (current template already matches revision 1)' } } : p;
  };
  await e.deliver(alert('fp-stop'));
  const s = await byName(e);
  t.equal(s.api!.state, 'succeeded', s.api!.outcome?.message ?? '');
  t.equal(s.auth!.state, 'refused');
  t.equal(s.web!.state, 'blocked');
  t.match(s.web!.outcome!.message, new RegExp(`an earlier target of rule release-train did not roll back \\(${s.auth!.id}: refused\\); the ordered chain stops there`));
  t.same(action.executed.map((x) => x.ref.name), ['api']);
  t.same(s.web!.chain!.targets.map((l) => l.ref.name), ['api', 'auth', 'web'], 'every record of the chain names all its targets');
  t.equal(s.web!.chain!.index, 2);
});

t.test('a chain record written ahead by a replica that died is run by another on the same decision', async (t) => {
  // what a replica leaves when it dies right after writing the next target's record ahead: api
  // closed, auth written `deciding` and never started
  const first = testEngine({ action: new PerTargetDeploymentAction(), ruleText: RULES });
  await first.deliver(alert('fp-ahead'));
  const done = await byName(first);
  t.equal(done.auth!.state, 'succeeded');
  const store = new MemoryStore();
  await store.putRecord(done.api!);
  const { outcome: _o, plan: _p, lockToken: _l, ...rest } = done.auth!;
  await store.putRecord({
    ...rest,
    state: 'deciding',
    owner: 'dead',
    updatedAt: Date.now() - 120_000,
    guards: [],
    timeline: done.auth!.timeline.filter((x) => x.step === 'chain'),
    times: { decidedAt: done.auth!.times.decidedAt! },
  });

  const action = new PerTargetDeploymentAction();
  const live = testEngine({ store, action, ruleText: RULES, owner: 'live' });
  live.prometheus!.value = 0.001;
  await live.engine.tick();
  await live.engine.idle();
  const s = await byName(live);
  for (const n of ['auth', 'web']) t.equal(s[n]?.state, 'succeeded', `${n}: ${s[n]?.outcome?.message}`);
  t.same(action.executed.map((x) => x.ref.name), ['auth', 'web'], 'the rest of the chain, once each');
  t.notOk(s.auth!.timeline.some((x) => x.step === 'confirmed'), 'not evaluated again: the chain goes on on the first decision');
  t.match(s.auth!.decision!.reason, /the ordered chain goes on/);
  t.equal(s.web!.owner, 'live');
  t.ok(live.prometheus!.queries.length > 0, 'the trigger was re-checked after the last target');
});

// Found by review (2026-12-06): a chain's next record was claimed for 7 days and the claim never
// given up. Once the chain's records were pruned (a first look that changed nothing: the first
// target not confirmed, the rest blocked, gone after RECORD_RETENTION_NO_ACTION), a resend of the
// still-firing alert rolled the first target back on another replica, which found the next
// target claimed by the first replica and stopped the chain there, silently, with no record.
t.test('a resend after the chain\'s records were pruned goes on to every target, on another replica', async (t) => {
  let later = 0;
  const store = new MemoryStore(() => Date.now() + later);
  const a = testEngine({ store, action: new PerTargetDeploymentAction(), ruleText: RULES, owner: 'replica-a' });
  const b = testEngine({ store, action: new PerTargetDeploymentAction(), ruleText: RULES, owner: 'replica-b' });
  for (const r of [a, b]) await r.engine.heartbeat(); // both alive
  a.prometheus!.value = 0; // not confirmed: api not_confirmed, auth and web blocked
  const fired = alert('fp-pruned');
  await a.deliver(fired);
  t.same(Object.values(await byName(a)).map((r) => r.state).sort(), ['blocked', 'blocked', 'not_confirmed']);
  t.equal(await store.pruneRecords(Date.now() + 1, OPEN_STATES), 3, 'the three records pruned (RECORD_RETENTION_NO_ACTION)');
  later = 3 * 86_400_000; // the store's clock: three days on
  for (const r of [a, b]) await r.engine.heartbeat();
  b.prometheus!.value = 0.2; // still firing, and now the trigger holds
  await b.deliver(fired);
  t.same(b.action.executed.map((x) => x.ref.name), ['api', 'auth', 'web'], 'every target rolled back, in order, by replica-b');
  const s = await byName(b);
  for (const n of ['api', 'auth', 'web']) t.equal(s[n]?.owner, 'replica-b', `${n} recorded by replica-b`);
});

// Found by review (2026-12-07): the next target's record is written ahead of the current one's
// close. When that close failed (the store), the scheduler took the next record up at once, before
// the current target was decided again: on a dry run's failed close it ran the later targets
// first; once a dry run's next record carried its dry-run, the first target rolled back live and
// the later ones stayed dry runs. A later target now waits for the one before it to close, and
// goes on as it closed.
async function closeFailsOnce(t: Test, redecided: (e: ReturnType<typeof testEngine>, action: PerTargetDeploymentAction) => void) {
  let skew = 0;
  const clock = () => Date.now() + skew;
  const action = new PerTargetDeploymentAction();
  const dry = RULES.replace('    priority: P0\n', '    priority: P0\n    guards: { dryRun: true }\n');
  t.not(dry, RULES);
  const e = testEngine({ ruleText: dry, action, now: clock, store: new MemoryStore(clock) });
  recoversOnWrite(e);
  const put = e.store.putRecord.bind(e.store);
  let failed = false;
  e.store.putRecord = async (r, o) => {
    if (!failed && r.state === 'dry_run' && r.target === 'Deployment/prod/api') {
      failed = true;
      throw new StoreUnavailableError('injected: the close of the first target');
    }
    return put(r, o);
  };
  await t.rejects(e.deliver(alert('fp-close-fails')), StoreUnavailableError);
  const mid = await byName(e);
  t.same([mid.api?.state, mid.auth?.state, mid.auth?.dryRun], ['deciding', 'deciding', true], 'the next record written ahead, as a dry run; the first not closed');
  redecided(e, action);
  for (let i = 0; i < 8; i++) {
    skew += 60_000;
    await e.engine.tick();
    await e.engine.idle();
  }
  return { e, action, s: await byName(e) };
}

t.test("a dry run's close that fails after its next target was written ahead, decided again live: the chain goes on live, in its order", async (t) => {
  const { action, s } = await closeFailsOnce(t, (e) => e.reload(RULES));
  for (const n of ['api', 'auth', 'web']) t.equal(s[n]?.state, 'succeeded', `${n}: ${s[n]?.outcome?.message}`);
  t.same(action.executed.map((x) => x.ref.name), ['api', 'auth', 'web'], 'each target after the one before it');
  t.equal(s.auth!.dryRun, false, 'a live rollback, as the target before it ended');
});

t.test("the same, the first target refused when decided again: the later targets are blocked, naming it, and none rolled back", async (t) => {
  const { action, s } = await closeFailsOnce(t, (e, a) => {
    e.reload(RULES);
    const plan = a.plan.bind(a);
    a.plan = async (ref) => {
      const p = await plan(ref);
      return ref.name === 'api' ? { ...p, refusal: { code: 'already_matches', message: 'skipped rollback (current template already matches revision 1)' } } : p;
    };
  });
  t.equal(s.api!.state, 'refused', s.api!.outcome?.message ?? '');
  t.equal(s.auth!.state, 'blocked');
  t.match(s.auth!.outcome!.message, new RegExp(`an earlier target of rule release-train did not roll back \\(${s.api!.id}: refused\\); the ordered chain stops there`));
  t.equal(s.web!.state, 'blocked');
  t.match(s.web!.outcome!.message, new RegExp(`\\(${s.auth!.id}: blocked\\); the ordered chain stops there`));
  t.same(action.executed, []);
});

t.test('a chain record written ahead whose target before it is no longer recorded is blocked, not rolled back on a guess', async (t) => {
  // auth written ahead `deciding` by a replica that died; api's record gone since (a record that
  // changed nothing, dropped first by a store's cap or its retention)
  const first = testEngine({ action: new PerTargetDeploymentAction(), ruleText: RULES });
  await first.deliver(alert('fp-gone'));
  const done = await byName(first);
  const store = new MemoryStore();
  const { outcome: _o, plan: _p, lockToken: _l, ...rest } = done.auth!;
  await store.putRecord({ ...rest, state: 'deciding', owner: 'dead', updatedAt: Date.now() - 120_000, guards: [], timeline: [], times: { decidedAt: done.auth!.times.decidedAt! } });

  const action = new PerTargetDeploymentAction();
  const live = testEngine({ store, action, ruleText: RULES, owner: 'live' });
  await live.engine.tick();
  await live.engine.idle();
  const s = await byName(live);
  t.equal(s.auth!.state, 'blocked');
  t.match(s.auth!.outcome!.message, new RegExp(`the record of the target before it \\(${done.api!.id}\\) is gone, so how it ended is not known; the ordered chain of rule release-train stops there`));
  t.equal(s.web!.state, 'blocked');
  t.match(s.web!.outcome!.message, new RegExp(`\\(${s.auth!.id}: blocked\\); the ordered chain stops there`));
  t.same(action.executed, []);
});
