// The recovery check after a rollback judges only samples from after the rollout completed: a dip
// of the trigger while the rollout ran (pods half replaced) or before says nothing of the revision
// rolled back to. Until 2026-12-08 the check's window was the last two steps whatever they were,
// so a rollout shorter than that put its own samples in the first check, and one dip among them
// closed a rollback whose trigger still held `succeeded`.
import t from 'tap';
import type { RangeSeries } from '../../../src/prometheus/client.js';
import { FakePrometheus, firing, testEngine } from '../../support/engine.js';

/** The error ratio: `value`, but below the threshold (0.05) at the samples within `dip` (ms, inclusive). */
class DipsWhile extends FakePrometheus {
  dip: [number, number] | undefined;
  override async queryRange(expr: string, startMs: number, endMs: number, stepMs: number): Promise<RangeSeries[]> {
    const [s] = await super.queryRange(expr, startMs, endMs, stepMs);
    const dip = this.dip;
    return [{ labels: s!.labels, samples: s!.samples.map((p) => (dip && p.t >= dip[0] && p.t <= dip[1] ? { t: p.t, v: 0.001 } : p)) }];
  }
}

/**
 * A rollback of `checkout` whose rollout takes 20 s of the engine's clock, the error ratio at 0.2
 * before it; `during(from, to)` is called as the rollout ends, with the rollout's span. Its record.
 */
async function rolledBack(during: (prometheus: DipsWhile, from: number, to: number) => void) {
  let offset = 0;
  const prometheus = new DipsWhile();
  const e = testEngine({ prometheus, now: () => Date.now() + offset });
  prometheus.value = 0.2;
  const execute = e.action.execute.bind(e.action);
  e.action.execute = async (p, c) => {
    const r = await execute(p, c);
    const from = Date.now() + offset + 1;
    offset += 20_000;
    during(prometheus, from, Date.now() + offset - 1);
    return r;
  };
  await e.deliver(firing('HighErrorRate', 'checkout'));
  const [rec] = await e.engine.records.list({});
  return { e, rec };
}

t.test('a dip while the rollout ran, the trigger holding once it completed: not recovered (failed), never succeeded', async (t) => {
  // the error ratio dips below the threshold while the rollout runs
  const { e, rec } = await rolledBack((prometheus, from, to) => (prometheus.dip = [from, to]));
  t.equal(e.action.executed.length, 1, 'rolled back');
  t.equal(rec?.state, 'failed', 'the trigger held at every sample since the rollout completed');
  t.match(rec?.outcome?.message, /the trigger still holds/);
});

t.test('a trigger that cleared once the rollout completed: succeeded', async (t) => {
  const { rec } = await rolledBack((prometheus) => (prometheus.value = 0.001));
  t.equal(rec?.state, 'succeeded');
  t.match(rec?.outcome?.message, /the trigger cleared/);
});
