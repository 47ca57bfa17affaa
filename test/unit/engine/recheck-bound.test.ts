// Records a stopped replica left deciding are decided again RECHECK_CONCURRENCY at once, whatever
// QUEUE_CONCURRENCY (the held and scheduled re-checks' bound: test/unit/engine/held.test.ts).
import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import { FakePrometheus, firing, orphanRecord, testEngine } from '../../support/engine.js';

t.test('records left deciding by a replica that is gone are decided again RECHECK_CONCURRENCY at once', async (t) => {
  const slow = new (class extends FakePrometheus {
    inflight = 0;
    peak = 0;
    override async queryRange(expr: string, startMs: number, endMs: number, stepMs: number) {
      this.inflight++;
      this.peak = Math.max(this.peak, this.inflight);
      await new Promise((r) => setTimeout(r, 30));
      this.inflight--;
      return super.queryRange(expr, startMs, endMs, stepMs);
    }
  })();
  slow.value = 0.001; // not confirmed: each closes, nothing rolls back
  const clock = Date.now();
  const store = new MemoryStore();
  for (let i = 0; i < 10; i++) {
    const alert = firing('SlowBurn', `svc-${i}`);
    const rec = orphanRecord(`rb-left-${i}`, alert);
    await store.putRecord({
      ...rec,
      target: `Deployment/prod/svc-${i}`,
      ref: { kind: 'Deployment', namespace: 'prod', name: `svc-${i}` },
      rule: 'held-when-down',
      priority: 'P1',
      state: 'deciding',
      owner: 'gone-replica',
      createdAt: clock - 600_000,
      updatedAt: clock - 600_000,
      times: {},
    });
  }
  const e = testEngine({ store, prometheus: slow, now: () => clock, env: { RECHECK_CONCURRENCY: '3', QUEUE_CONCURRENCY: '32' } });
  t.teardown(() => e.engine.stop());
  await e.engine.tick();
  await e.engine.idle();
  const left = await e.engine.records.list({ state: 'deciding', limit: 20 });
  t.equal(left.length, 0, 'each decided again in this tick');
  t.equal(slow.peak, 3, 'three at once (RECHECK_CONCURRENCY), never more');
});
