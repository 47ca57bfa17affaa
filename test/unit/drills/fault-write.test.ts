// A fault write that fails without saying whether it landed (no answer within the request
// deadline, 408, 5xx) keeps the drill's record: the drill ends failed and its restore puts the
// pre-drill template back if the fault is live. In-memory doubles of test/support/drills.ts.
import t from 'tap';
import { drillWorld } from '../../support/drills.js';
import { metricValue } from '../../support/app.js';
import { KubeApiError } from '../../../src/kube/errors.js';
import { RESOURCES, type KubeObject } from '../../../src/kube/kube.js';
import { NS } from '../actions/fixtures/objects.js';

const ref = { kind: 'Deployment' as const, namespace: NS, name: 'web' };
const fault = { kind: 'env' as const, name: 'DEMO_ERRORS', value: 'on' };

function setup() {
  const w = drillWorld();
  t.teardown(() => w.drills.stop(1000));
  return w;
}

/** The next (real, not dry-run) Deployment PATCH lands, and then `err` is thrown instead of its answer. */
function landsThenFails(s: ReturnType<typeof drillWorld>, err: KubeApiError): void {
  const orig = s.kube.patch.bind(s.kube);
  let once = true;
  s.kube.patch = async (rt, ns, name, body, type, opts) => {
    const r: KubeObject = await orig(rt, ns, name, body, type, opts);
    if (!opts?.dryRun && rt.plural === 'deployments' && once) {
      once = false;
      throw err;
    }
    return r;
  };
}

const timeout = () => new KubeApiError({ status: 'timeout', reason: 'Timeout', message: 'no answer within 10000 ms', operation: 'PATCH deployments shop/web' });
const status = (code: number, reason: string) => new KubeApiError({ status: code, reason, message: 'the server was too busy', operation: 'PATCH deployments shop/web' });

for (const [what, err] of [
  ['no answer within the request deadline', timeout],
  ['408', () => status(408, 'Timeout')],
  ['504', () => status(504, 'GatewayTimeout')],
] as const) {
  t.test(`a fault write that landed but was answered by ${what}: the drill is kept, ends failed, and its restore undoes the fault`, async (t) => {
    const s = setup();
    landsThenFails(s, err());
    const d = await s.drills.start({ ref, fault, requestedBy: 'test', deadlineMs: 60_000 });
    t.ok(d.fault.templateHash, "the fault's fingerprint was recorded before the write");
    await s.drills.idle();
    const done = (await s.drills.get(d.id))!;
    t.ok(done, 'the drill record is kept');
    t.same((await s.drills.list()).map((x) => x.id), [d.id], 'and listed');
    t.equal(done.state, 'failed');
    t.match(done.result!.message, /^the fault's write failed without saying whether it landed \(PATCH deployments shop\/web: .*\); the drill ends here, and its restore puts the pre-drill template back if the fault is live$/);
    t.ok(done.timeline.some((e) => e.step === 'fault_uncertain'));
    t.equal(done.restore!.outcome, 'restored', done.restore!.message);
    t.same(s.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template, s.preDrill, 'the fault is undone');
    t.equal(await metricValue(s.metrics, 'rollguard_drills_total', { result: 'failed' }), 1);
    // the target is free again: another drill may start
    const next = await s.drills.start({ ref, fault, requestedBy: 'test', deadlineMs: 300 });
    await s.drills.idle();
    t.equal((await s.drills.get(next.id))!.state, 'failed');
  });
}

t.test('a fault write answered 408 that never landed: the drill ends failed, nothing to restore', async (t) => {
  const s = setup();
  s.kube.failNext('patch', (c) => (c.dryRun || c.resource !== 'deployments' ? null : status(408, 'Timeout')));
  const d = await s.drills.start({ ref, fault, requestedBy: 'test', deadlineMs: 60_000 });
  await s.drills.idle();
  const done = (await s.drills.get(d.id))!;
  t.equal(done.state, 'failed');
  t.equal(done.restore!.outcome, 'already_back', done.restore!.message);
  t.same(s.kube.peek(RESOURCES.deployments, NS, 'web')!.spec.template, s.preDrill);
  t.equal(s.kube.calls.filter((c) => c.verb === 'patch' && !c.dryRun).length, 1, 'the one unanswered write, no restore written');
});
