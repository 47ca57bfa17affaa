// A rollback's cooldowns start before its write and are written again, from the execution, when it
// ends: the target's and every other object's it wrote. An execution may end long after the write
// began (`helm rollback --wait` returns once the release is ready, up to 5m); before 2026-12-07 only
// the target's was written again, and a Helm release's workloads left their cooldown that much
// before the release did, open to a Deployment rule's undo.
import t from 'tap';
import { RESOURCES } from '../../../src/kube/kube.js';
import { readCooldown } from '../../../src/guards/cooldown.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { firing, recoversOnWrite, testEngine } from '../../support/engine.js';

t.test("every object a rollback wrote stays in cooldown from its execution, as long as the target", async (t) => {
  let clock = Date.now();
  const now = () => clock;
  const e = testEngine({ now, store: new MemoryStore(now) });
  recoversOnWrite(e);
  const plan = e.action.plan.bind(e.action);
  e.action.plan = async (ref) => ({ ...(await plan(ref)), changes: [{ resource: RESOURCES.deployments, namespace: 'prod', name: 'checkout-worker' }] });
  const execute = e.action.execute.bind(e.action);
  e.action.execute = async (p, ctx) => {
    const res = await execute(p, ctx);
    clock += 4 * 60_000; // the write, then a wait for the rollout, before the execution returns
    return res;
  };
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'succeeded', rec!.outcome?.message ?? '');
  const executedAt = rec!.times.executedAt!;
  const target = await readCooldown(e.store, 'Deployment/prod/checkout');
  const worker = await readCooldown(e.store, 'Deployment/prod/checkout-worker');
  t.match(target, { id: rec!.id, at: executedAt, outcome: 'succeeded' });
  t.match(worker, { id: rec!.id, at: executedAt }, "the other object's cooldown, from the execution too (before: from before the write)");
  t.equal(worker!.until, target!.until, 'it ends with the target\'s');
  t.equal(worker!.outcome, undefined, "the outcome is the target's alone (a step back reads it)");
});
