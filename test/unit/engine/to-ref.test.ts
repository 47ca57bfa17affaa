import t from 'tap';
import { toRef } from '../../../src/engine/pipeline.js';
import { TargetResolutionError } from '../../../src/rules/targets.js';

t.test('rule targets become action refs', async (t) => {
  t.same(toRef({ kind: 'Deployment', namespace: 'prod', name: 'web', params: {} }), { kind: 'Deployment', namespace: 'prod', name: 'web' });
  t.same(toRef({ kind: 'StatefulSet', namespace: 'prod', name: 'db', params: { toRevision: '3' } }), { kind: 'StatefulSet', namespace: 'prod', name: 'db', toRevision: 3 });
  t.same(toRef({ kind: 'Rollout', namespace: 'prod', name: 'r', params: { mode: 'undo' } }), { kind: 'Rollout', namespace: 'prod', name: 'r', options: { mode: 'undo' } });
  t.same(toRef({ kind: 'BlueGreen', namespace: 'prod', name: 'api', params: { selectorLabel: 'colour', previous: 'blue' } }), {
    kind: 'BlueGreen',
    namespace: 'prod',
    name: 'api',
    options: { service: 'api', selectorKey: 'colour', to: 'blue' },
  });
  t.same(toRef({ kind: 'Canary', namespace: 'prod', name: 'api-canary', params: { stable: 'api' } }), {
    kind: 'Canary',
    namespace: 'prod',
    name: 'api-canary',
    options: { canary: 'api-canary', stable: 'api' },
  });
  for (const bad of ['0', '-1', '1.5', 'latest', '99999999999']) {
    t.throws(() => toRef({ kind: 'Deployment', namespace: 'p', name: 'w', params: { toRevision: bad } }), TargetResolutionError, bad);
  }
});
