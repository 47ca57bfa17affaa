// A Helm rollback recovered by another replica, with the real Helm action over a scripted helm
// (its history after the rollback, its status). Found by review (2026-12-07): the recovery looked
// for the rollback's change cause in `kubernetes.io/change-cause`, which a Helm release has not
// (helm keeps it as the revision's description), so a replica dying during `helm rollback --wait`
// left a rollback that had landed closed `interrupted`, its cooldowns dropped: the next alert's
// plan went back one revision more, onto the bad one. And it verified the release against the
// revision planned now, which is the rollback's own, so it polled until VERIFY_TIMEOUT and closed
// `unverified`.
import t from 'tap';
import { createHelmAction, type HelmRunner } from '../../../src/actions/helm.js';
import { changeCause } from '../../../src/engine/messages.js';
import type { RollbackRecord } from '../../../src/engine/record.js';
import { readCooldown } from '../../../src/guards/cooldown.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { firing, HELM_RULES, testEngine } from '../../support/engine.js';


/** A Helm rollback of release shop/shop from revision 2 to 1, left in_progress by a dead replica. */
function left(executed: boolean): RollbackRecord {
  const now = Date.now();
  const a = firing('ReleaseErrors');
  a.labels = { alertname: 'ReleaseErrors', namespace: 'shop', release: 'shop' };
  return {
    id: 'rb-helm-left',
    target: 'HelmRelease/shop/shop',
    state: 'in_progress',
    createdAt: now - 60_000,
    updatedAt: now - 60_000,
    ref: { kind: 'HelmRelease', namespace: 'shop', name: 'shop' },
    source: 'alert',
    rule: 'release-errors',
    guards: [],
    dryRun: false,
    timeline: [],
    owner: 'dead-replica',
    lockToken: 1,
    alert: { fingerprint: a.fingerprint, status: 'firing', labels: a.labels, annotations: {}, startsAt: a.startsAt, receivedAt: now - 60_000, generatorURL: '' },
    plan: { summary: 'helm rollback shop 1 in shop (from revision 2)', fromRevision: 2, toRevision: 1 },
    times: { startedAt: now - 59_000, ...(executed ? { executedAt: now - 30_000 } : {}) },
  };
}

/**
 * helm as it answers once `helm rollback shop 1` landed (revision 3, deployed, carrying the
 * rollback's description), or was cut off (`pending`: revision 3 left pending-rollback, as helm
 * writes it before it changes anything), or never ran.
 */
function helmAfterRollback(rec: RollbackRecord, landed: boolean | 'pending') {
  const third = landed === 'pending' ? 'pending-rollback' : 'deployed';
  const calls: string[][] = [];
  const history = [
    { revision: 1, updated: '2026-12-07T09:00:00Z', status: 'superseded', chart: 'shop-1.0.0', description: 'Install complete' },
    { revision: 2, updated: '2026-12-07T10:00:00Z', status: landed ? 'superseded' : 'deployed', chart: 'shop-1.1.0', description: 'Upgrade complete' },
    ...(landed ? [{ revision: 3, updated: '2026-12-07T10:05:00Z', status: third, chart: 'shop-1.0.0', description: changeCause(rec) }] : []),
  ];
  const run: HelmRunner = async (argv) => {
    calls.push(argv);
    if (argv[1] === 'history') return { code: 0, stdout: JSON.stringify(history), stderr: '' };
    if (argv[1] === 'status') return { code: 0, stdout: JSON.stringify({ version: landed ? 3 : 2, info: { status: landed ? third : 'deployed', description: landed ? changeCause(rec) : 'Upgrade complete' } }), stderr: '' };
    return { code: 1, stdout: '', stderr: `unexpected: ${argv.join(' ')}` };
  };
  return { run, calls };
}

async function recover(rec: RollbackRecord, landed: boolean | 'pending') {
  const store = new MemoryStore();
  await store.putRecord(rec);
  const helm = helmAfterRollback(rec, landed);
  const e = testEngine({ store, owner: 'live', ruleText: HELM_RULES, actions: { HelmRelease: createHelmAction({ run: helm.run }) }, env: { VERIFY_TIMEOUT: '3s' } });
  e.prometheus!.value = 0.001; // the service recovered
  await e.engine.tick();
  await e.engine.idle();
  return { e, calls: helm.calls, rec: (await e.engine.records.get(rec.id))! };
}

t.test('a replica dies during helm rollback --wait, after the rollback landed: the recovery finds it by its description and verifies it, not interrupted', async (t) => {
  const { e, calls, rec } = await recover(left(false), true);
  t.equal(rec.state, 'succeeded', rec.outcome?.message ?? '');
  t.notOk(calls.some((c) => c[1] === 'rollback'), 'helm rollback not run a second time');
  t.match(await readCooldown(e.store, 'HelmRelease/shop/shop'), { id: rec.id }, 'the release stays in cooldown: a next alert does not roll back onto the bad revision');
  t.notOk(e.notifier.sent.some((n) => n.kind === 'rollback_interrupted'));
});

t.test('the same with its execution recorded: verified against the revision it went from, at once, not unverified after VERIFY_TIMEOUT', async (t) => {
  const { rec } = await recover(left(true), true);
  t.equal(rec.state, 'succeeded', rec.outcome?.message ?? '');
  t.match(rec.timeline.find((x) => x.step === 'rollout')?.message, /^succeeded: release "shop" revision 3 deployed/);
});

t.test('a replica that died before helm ran: interrupted, as before (nothing landed)', async (t) => {
  const { calls, rec } = await recover(left(false), false);
  t.equal(rec.state, 'interrupted', rec.outcome?.message ?? '');
  t.notOk(calls.some((c) => c[1] === 'rollback'));
});

t.test('a replica that died while helm ran, its revision left pending-rollback: interrupted, for a human (not taken for landed)', async (t) => {
  const { calls, rec, e } = await recover(left(false), 'pending');
  t.equal(rec.state, 'interrupted', rec.outcome?.message ?? '');
  t.notOk(calls.some((c) => c[1] === 'rollback'), 'helm rollback not run again');
  t.ok(e.notifier.sent.some((n) => n.kind === 'rollback_interrupted'), 'escalated');
});
