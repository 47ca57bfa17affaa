import t from 'tap';
import { getEventListeners } from 'node:events';
import pino from 'pino';
import { loadConfig } from '../../../src/config.js';
import { EngineContext } from '../../../src/engine/context.js';
import { sleep } from '../../../src/kube/rollout-status.js';
import { createMetrics } from '../../../src/metrics.js';
import { Notifications } from '../../../src/notify/notifier.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { rules } from '../../support/engine.js';

// More than ten verifications in flight each wait on the engine's one signal: Node must not warn
// of a listener leak, and every wait stops listening when it ends.
t.test("many waits on the engine's signal at once: no MaxListenersExceededWarning, and none left listening after", async (t) => {
  const logger = pino({ level: 'silent' });
  const metrics = createMetrics({ defaults: false });
  const ctx = new EngineContext({
    config: loadConfig({}),
    store: new MemoryStore(),
    metrics,
    logger,
    rules: { rules: rules() },
    prometheus: null,
    kube: null,
    actions: {},
    notifications: new Notifications([], logger, metrics),
    owner: 'replica-a',
  });
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
