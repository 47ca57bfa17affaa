import t from 'tap';
import { getEventListeners } from 'node:events';
import { sleep } from '../../../src/kube/rollout-status.js';
import { bareEngineContext } from '../../support/engine.js';

// More than ten verifications in flight each wait on the engine's one signal: Node must not warn
// of a listener leak, and every wait stops listening when it ends.
t.test("many waits on the engine's signal at once: no MaxListenersExceededWarning, and none left listening after", async (t) => {
  const ctx = bareEngineContext();
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  t.teardown(() => void process.off('warning', onWarning));
  const signal = ctx.abort.signal;
  const waits = Array.from({ length: 50 }, () => sleep(20, signal));
  t.equal(getEventListeners(signal, 'abort').length, 50, 'fifty waits listening at once');
  await Promise.all(waits);
  await new Promise((r) => setImmediate(r));
  t.equal(getEventListeners(signal, 'abort').length, 0, 'none listening once they ended');
  t.same(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message), [], 'no listener-leak warning');
});
