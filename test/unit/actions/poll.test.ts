// One poller (pollUntil) behind every verify(): each stops when ctx.signal aborts (shutdown)
// instead of polling on until its timeout.
import t from 'tap';
import { argoRolloutAction } from '../../../src/actions/argo-rollout.js';
import { blueGreenAction } from '../../../src/actions/blue-green.js';
import { canaryAction } from '../../../src/actions/canary.js';
import { createHelmAction } from '../../../src/actions/helm.js';
import type { Action, RollbackPlan, TargetRef } from '../../../src/actions/action.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { pollUntil } from '../../../src/kube/rollout-status.js';
import { FakeKube } from '../../support/fake-kube.js';
import { NS, context } from './fixtures/objects.js';

t.test('pollUntil: a value, the time running out, or the signal', async (t) => {
  let n = 0;
  t.same(await pollUntil(async () => (++n === 3 ? 'done' : undefined), { timeoutMs: 10_000, pollMs: 1 }), { ok: true, value: 'done' });
  t.equal(n, 3, 'checked until it answered');
  const out = await pollUntil(async () => undefined, { timeoutMs: 20, pollMs: 5 });
  t.match(out, { ok: false, reason: 'timeout' });
  const ac = new AbortController();
  let calls = 0;
  const r = pollUntil(async () => {
    if (++calls === 2) ac.abort();
    return undefined;
  }, { timeoutMs: 600_000, pollMs: 5, signal: ac.signal });
  t.match(await r, { ok: false, reason: 'aborted' });
  t.equal(calls, 2, 'no check after the abort');
  const pre = new AbortController();
  pre.abort();
  let never = 0;
  t.match(await pollUntil(async () => ++never, { timeoutMs: 1000, signal: pre.signal }), { ok: false, reason: 'aborted' });
  t.equal(never, 0, 'an aborted signal: no check at all');
  await t.rejects(pollUntil(async () => Promise.reject(new Error('read failed')), { timeoutMs: 1000 }), /read failed/);
});

function dep(name: string, labels: Record<string, string>, replicas: number, updated: number): KubeObject {
  return {
    metadata: { name, namespace: NS, generation: 2, uid: `uid-${name}` },
    spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: `${name}:1` }] } } },
    // never settles: fewer updated replicas than wanted
    status: { observedGeneration: 2, replicas, updatedReplicas: updated, availableReplicas: updated },
  };
}

/** A cluster whose rollouts never finish: without the signal each verify would poll for its whole timeout. */
function stuck(): FakeKube {
  const kube = new FakeKube();
  kube.add(RESOURCES.services, { metadata: { name: 'api', namespace: NS }, spec: { selector: { app: 'api', version: 'blue' } } });
  kube.add(RESOURCES.deployments, dep('api-blue', { app: 'api', version: 'blue' }, 3, 1));
  kube.add(RESOURCES.deployments, dep('api-canary', { app: 'api', track: 'canary' }, 0, 0));
  kube.add(RESOURCES.deployments, dep('api-stable', { app: 'api', track: 'stable' }, 5, 1));
  kube.add(RESOURCES.rollouts, {
    metadata: { name: 'api', namespace: NS, uid: 'ro', generation: 2 },
    spec: { replicas: 2, selector: { matchLabels: { app: 'ro' } } },
    status: { abort: true, stableRS: 'aaa' },
  });
  return kube;
}

const plan = (target: TargetRef, extra: Partial<RollbackPlan> = {}): RollbackPlan => ({ target, kind: target.kind, summary: 's', plannedAt: 0, ...extra });

const cases: [string, Action, RollbackPlan][] = [
  [
    'blue-green',
    blueGreenAction,
    plan({ kind: 'BlueGreen', namespace: NS, name: 'api' }, {
      writes: [{ resource: RESOURCES.services, namespace: NS, name: 'api', patchType: 'merge', patch: { spec: { selector: { version: 'blue' } } }, description: 'd' }],
    }),
  ],
  ['canary', canaryAction, plan({ kind: 'Canary', namespace: NS, name: 'api' })],
  ['Argo Rollout', argoRolloutAction, plan({ kind: 'Rollout', namespace: NS, name: 'api' })],
  [
    'Helm',
    createHelmAction({ run: async () => ({ code: 0, stdout: JSON.stringify({ version: 2, info: { status: 'pending-rollback' } }), stderr: '' }) }),
    plan({ kind: 'HelmRelease', namespace: NS, name: 'api' }, { fromRevision: 2 }),
  ],
];

for (const [name, action, p] of cases) {
  t.test(`${name} verify stops when the signal aborts`, async (t) => {
    const ac = new AbortController();
    const kube = stuck();
    let reads = 0;
    // the third read aborts, as a shutdown would while verify() waits
    kube.failNext('get', () => {
      if (++reads === 3) ac.abort();
      return null;
    });
    const ctx = context(name === 'Helm' ? null : kube, { signal: ac.signal });
    if (name === 'Helm') setTimeout(() => ac.abort(), 30);
    // a timeout no test would wait for: only the signal can end this
    const v = await action.verify(p, ctx, { timeoutMs: 3_600_000, pollMs: 5 });
    t.equal(v.outcome, 'unverified');
    t.match(v.message, /^cancelled after \d+ ms: /, v.message);
  });
}
