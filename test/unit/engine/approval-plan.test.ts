import t from 'tap';
import type { RollbackPlan, TargetRef } from '../../../src/actions/action.js';
import { clearPause, writePause } from '../../../src/guards/pause.js';
import { FakeDeploymentAction, firing, testEngine } from '../../support/engine.js';

/** A Deployment double whose current revision can move on (a new release) between two plans. */
class MovingDeployment extends FakeDeploymentAction {
  revision = 2;
  override async plan(ref: TargetRef): Promise<RollbackPlan> {
    const p = await super.plan(ref);
    const to = ref.toRevision ?? this.revision - 1;
    return { ...p, fromRevision: this.revision, toRevision: to, current: { ...p.current!, revision: this.revision }, summary: `Deployment ${ref.namespace}/${ref.name}: revision ${this.revision} -> ${to}` };
  }
}

async function pendingApproval(revision = 2) {
  const action = new MovingDeployment();
  action.revision = revision;
  const e = testEngine({ action });
  await e.deliver(firing('HighLatency'));
  const rec = (await e.engine.records.list({}))[0]!;
  if (rec.state !== 'pending_approval') throw new Error(`expected pending_approval, got ${rec.state}`);
  return { e, action, id: rec.id };
}

t.test('an approval runs the rollback the human was asked about', async (t) => {
  const { e, action, id } = await pendingApproval();
  t.equal((await e.engine.approve(id, 'alice')).kind, 'ok');
  await e.engine.idle();
  t.equal(action.executed.length, 1, 'rolled back');
  const rec = (await e.engine.records.get(id))!;
  t.equal(rec.plan?.fromRevision, 2);
  t.equal(rec.plan?.toRevision, 1);
  t.match(rec.guards.find((g) => g.guard === 'approval')?.reason, /^approved by alice/);
});

t.test('a release deployed after the approval was asked: the approval does not roll the new one back; it is asked again', async (t) => {
  const { e, action, id } = await pendingApproval();
  const asked = e.notifier.sent.filter((n) => n.kind === 'approval_requested').length;
  // the human was asked about revision 2 -> 1; revision 3 (a fix forward) is deployed meanwhile
  action.revision = 3;
  t.equal((await e.engine.approve(id, 'alice')).kind, 'ok');
  await e.engine.idle();
  t.equal(action.executed.length, 0, 'nothing rolled back on an approval given for another revision');
  let rec = (await e.engine.records.get(id))!;
  t.equal(rec.state, 'pending_approval', 'asked again');
  t.notOk(rec.approval, 'the approval given for the other plan is not kept as the answer');
  const verdict = rec.guards.find((g) => g.guard === 'approval')!;
  t.equal(verdict.result, 'wait');
  t.match(verdict.reason, 'alice approved revision 2 -> 1; the rollback is now revision 3 -> 2 (changed since the request): approval needed again');
  t.ok(rec.timeline.some((s) => s.step === 'approved'), 'the approval stays in the timeline');
  t.equal(e.notifier.sent.filter((n) => n.kind === 'approval_requested').length, asked + 1, 'the new plan is put to a human');

  // approved again, for what the human now sees: it runs
  t.equal((await e.engine.approve(id, 'bob')).kind, 'ok');
  await e.engine.idle();
  t.equal(action.executed.length, 1);
  rec = (await e.engine.records.get(id))!;
  t.equal(rec.plan?.fromRevision, 3);
  t.equal(rec.approval?.by, 'bob');
});

t.test('a revision to go back to that changed since the approval was asked (a step back chosen again): asked again', async (t) => {
  const { e, action, id } = await pendingApproval(5);
  // the same release (5), but the revision to go back to is 3 now, not the 4 the human was asked about
  const plan = action.plan.bind(action);
  action.plan = async (ref) => ({ ...(await plan(ref)), toRevision: 3 });
  t.equal((await e.engine.approve(id, 'alice')).kind, 'ok');
  await e.engine.idle();
  t.equal(action.executed.length, 0);
  const rec = (await e.engine.records.get(id))!;
  t.equal(rec.state, 'pending_approval');
  t.match(rec.guards.find((g) => g.guard === 'approval')?.reason, 'alice approved revision 5 -> 4; the rollback is now revision 5 -> 3');
});

t.test('an approval while rollguard is paused is refused, naming the pause: the request stays pending, and is approved after the resume', async (t) => {
  const { e, action, id } = await pendingApproval();
  await writePause(e.store, { by: 'carol', at: Date.now(), reason: 'incident review' });
  const res = await e.engine.approve(id, 'alice');
  t.equal(res.kind, 'conflict');
  t.match(res.kind === 'conflict' ? res.paused : undefined, 'rollguard is paused (by carol: incident review)');
  await e.engine.idle();
  t.equal(action.executed.length, 0);
  let rec = (await e.engine.records.get(id))!;
  t.equal(rec.state, 'pending_approval', 'still waiting for an answer: not closed blocked by the pause');
  t.notOk(rec.approval);
  await clearPause(e.store);
  t.equal((await e.engine.approve(id, 'alice')).kind, 'ok');
  await e.engine.idle();
  t.equal(action.executed.length, 1);
  rec = (await e.engine.records.get(id))!;
  t.equal(rec.approval?.by, 'alice');
});

t.test('a rejection while rollguard is paused is taken (it writes nothing to the cluster)', async (t) => {
  const { e, id } = await pendingApproval();
  await writePause(e.store, { by: 'carol', at: Date.now() });
  t.equal((await e.engine.reject(id, 'bob')).kind, 'ok');
  t.equal((await e.engine.records.get(id))!.state, 'rejected');
});
