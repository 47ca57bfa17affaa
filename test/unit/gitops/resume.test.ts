// resume-gitops of one rollback looks at the others relying on the same owner: Flux Kustomization
// `apps` manages `web` and `api`; the rollback of `web` suspended it, the later rollback of `api`
// found it paused and suspended nothing. Resuming the first would let Flux put `api`'s bad revision
// back: the answer is 409 naming `api`'s rollback until the request says it is reverted in git too.
import t from 'tap';
import type { RollbackRecord, RollbackState } from '../../../src/engine/record.js';
import { SUSPENDED_BEFORE, SUSPENDED_BY } from '../../../src/gitops/suspend.js';
import { OWNER_RESOURCES, type Owner, type Suspension } from '../../../src/gitops/types.js';
import { testEngine } from '../../support/engine.js';
import { FakeKube } from '../../support/fake-kube.js';
import { MemoryStore } from '../../../src/store/memory.js';

const T = Date.UTC(2026, 11, 7, 12);
const APPS: Owner = {
  tool: 'Flux', kind: 'Kustomization', namespace: 'flux-system', name: 'apps', via: 'labels kustomize.toolkit.fluxcd.io/name and /namespace',
  found: true, sync: 'reconciled every 5m, drift corrected on each run', correctsDrift: true, paused: false, settleMs: 0, objects: [],
};
const OTHER: Owner = { ...APPS, name: 'infra' };
const suspension = (at: number): Suspension => ({ kind: 'Kustomization', namespace: 'flux-system', name: 'apps', field: '/spec/suspend', set: true, at });

function record(id: string, name: string, state: RollbackState, updatedAt: number, gitops: RollbackRecord['gitops']): RollbackRecord {
  const ref = { kind: 'Deployment', namespace: 'prod', name } as RollbackRecord['ref'];
  return { id, target: `Deployment/prod/${name}`, state, createdAt: updatedAt - 1000, updatedAt, ref, source: 'alert', guards: [], dryRun: false, times: {}, timeline: [], ...(gitops ? { gitops } : {}) };
}

t.test('resume-gitops answers 409 naming every other rollback that wrote while the owner was paused, until each is named as reverted', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', suspend: true } });
  const { engine, store } = testEngine({ kube });
  const recs = [
    // web's rollback: suspended apps at T
    record('rb-web', 'web', 'succeeded', T + 10, { policy: 'suspend', owners: [{ ...APPS, objects: ['Deployment/prod/web'] }], suspended: [suspension(T)] }),
    // api's rollback found apps paused (rollguard's suspension) and wrote: relies on it
    record('rb-api', 'api', 'succeeded', T + 60_000, { policy: 'suspend', owners: [{ ...APPS, paused: true, objects: ['Deployment/prod/api'] }] }),
    // one that suspended apps itself again (after a hand resume) and is not resumed: relies on it too
    record('rb-cart', 'cart', 'unverified', T + 120_000, { policy: 'suspend', owners: [APPS], suspended: [suspension(T + 100_000)] }),
    // not relying: ended before the suspension; wrote nothing; another owner; resumed already; no GitOps
    record('rb-before', 'old', 'succeeded', T - 1, { policy: 'suspend', owners: [{ ...APPS, paused: true }] }),
    record('rb-refused', 'late', 'refused', T + 70_000, { policy: 'suspend', owners: [{ ...APPS, paused: true }] }),
    record('rb-infra', 'infra', 'succeeded', T + 80_000, { policy: 'suspend', owners: [{ ...OTHER, paused: true }] }),
    record('rb-resumed', 'done', 'succeeded', T + 90_000, { policy: 'suspend', owners: [APPS], suspended: [suspension(T + 85_000)], resumed: { at: T + 95_000, by: 'bob', restored: [] } }),
    record('rb-plain', 'plain', 'failed', T + 99_000, undefined),
  ];
  for (const r of recs) await store.putRecord(r);

  const first = await engine.resumeGitOps('rb-web', 'alice');
  t.equal(first.kind, 'conflict');
  const msg = first.kind === 'conflict' ? first.message : '';
  t.match(msg, /would also undo rollbacks rb-api \(Deployment\/prod\/api, succeeded, under Flux Kustomization flux-system\/apps\)/);
  t.match(msg, /rb-cart \(Deployment\/prod\/cart, unverified/);
  t.match(msg, /rollguard rollbacks resume-gitops rb-web --reverted rb-(api|cart),rb-(api|cart) /);
  t.match(msg, /nothing was changed$/);
  for (const id of ['rb-before', 'rb-refused', 'rb-infra', 'rb-resumed', 'rb-plain']) t.notOk(msg.includes(id), `${id} does not rely on the owner`);
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')?.spec?.suspend, true, 'the Kustomization stays suspended');
  t.same(kube.patches(), [], 'nothing written');
  t.notOk((await engine.records.get('rb-web'))?.gitops?.resumed, 'the record is not marked resumed');

  const second = await engine.resumeGitOps('rb-web', 'alice', ['rb-api']);
  t.equal(second.kind, 'conflict');
  t.match(second.kind === 'conflict' ? second.message : '', /would also undo rollback rb-cart \(/, 'only the one not named yet');
  t.same(kube.patches(), [], 'still nothing written');

  const third = await engine.resumeGitOps('rb-web', 'alice', ['rb-api', 'rb-cart']);
  t.equal(third.kind, 'ok', third.kind === 'conflict' ? third.message : '');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')?.spec?.suspend, undefined, 'spec.suspend removed, as before');
  const rec = (await engine.records.get('rb-web'))!;
  t.same(rec.gitops?.resumed?.reverted?.slice().sort(), ['rb-api', 'rb-cart'], 'the record says which others were said reverted');
  t.match(rec.timeline.at(-1)?.message, /also relied on by rb-.*, said reverted in git too by alice/);
});

t.test('resume-gitops with no other rollback relying on the owner resumes at once, as before', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', suspend: true } });
  const { engine, store } = testEngine({ kube });
  await store.putRecord(record('rb-web', 'web', 'refused', T + 10, { policy: 'suspend', owners: [APPS], suspended: [suspension(T)] }));
  const r = await engine.resumeGitOps('rb-web', 'alice');
  t.equal(r.kind, 'ok');
  t.notOk(r.kind === 'ok' && r.record.gitops?.resumed?.reverted, 'no others named');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')?.spec?.suspend, undefined);
});

t.test('a suspension about as old as RECORD_RETENTION: 409 (records relying on it may be gone), until --all-reverted says every workload is reverted', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', suspend: true } });
  const { engine, store } = testEngine({ kube, env: { RECORD_RETENTION: '30d' } });
  const at = Date.now() - 29.5 * 86_400_000; // past RECORD_RETENTION less a day
  await store.putRecord(record('rb-web', 'web', 'succeeded', at + 10, { policy: 'suspend', owners: [APPS], suspended: [suspension(at)] }));
  const old = await engine.resumeGitOps('rb-web', 'alice', ['rb-api']);
  t.equal(old.kind, 'conflict');
  t.match(old.kind === 'conflict' ? old.message : '', /suspended Flux Kustomization flux-system\/apps 29 days ago, about as long as records are kept \(RECORD_RETENTION: 30 days\).*resume with --all-reverted \(POST body "allReverted": true\); nothing was changed$/);
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')?.spec?.suspend, true, 'still suspended');
  const all = await engine.resumeGitOps('rb-web', 'alice', [], true);
  t.equal(all.kind, 'ok');
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')?.spec?.suspend, undefined, 'resumed');
  const rec = (await engine.records.get('rb-web'))!;
  t.equal(rec.gitops?.resumed?.allReverted, true);
  t.match(rec.timeline.at(-1)?.message, /every workload under the owners said reverted in git by alice \(--all-reverted\)/);
});

t.test('more relying rollbacks than a message names: ten named, "and N more", and the command offered is --all-reverted', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', suspend: true } });
  const { engine, store } = testEngine({ kube });
  await store.putRecord(record('rb-web', 'web', 'succeeded', T + 10, { policy: 'suspend', owners: [APPS], suspended: [suspension(T)] }));
  for (let i = 0; i < 12; i++) await store.putRecord(record(`rb-api${i}`, `api${i}`, 'succeeded', T + 1000 + i, { policy: 'suspend', owners: [{ ...APPS, paused: true }] }));
  const r = await engine.resumeGitOps('rb-web', 'alice');
  const msg = r.kind === 'conflict' ? r.message : '';
  t.equal((msg.match(/rb-api\d+ \(/g) ?? []).length, 10, 'ten named');
  t.match(msg, / and 2 more: /);
  t.match(msg, /resume-gitops rb-web --all-reverted \(POST body "allReverted": true\); nothing was changed$/);
  t.same(kube.patches(), []);
});

t.test('a short RECORD_RETENTION (1d): a suspension of an hour resumes as usual; past half the retention, --all-reverted is asked for', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', suspend: true } });
  const { engine, store } = testEngine({ kube, env: { RECORD_RETENTION: '1d', RECORD_RETENTION_NO_ACTION: '1d' } });
  const at = Date.now() - 3_600_000;
  await store.putRecord(record('rb-old', 'old', 'succeeded', Date.now() - 13 * 3_600_000, { policy: 'suspend', owners: [APPS], suspended: [suspension(Date.now() - 13 * 3_600_000)] }));
  const old = await engine.resumeGitOps('rb-old', 'alice');
  t.match(old.kind === 'conflict' ? old.message : '', /--all-reverted/, 'thirteen hours, past half of a day');
  await store.putRecord(record('rb-web', 'web', 'succeeded', at + 10, { policy: 'suspend', owners: [APPS], suspended: [suspension(at)] }));
  const r = await engine.resumeGitOps('rb-web', 'alice');
  t.equal(r.kind, 'ok', r.kind === 'conflict' ? r.message : 'resumed');
});

/**
 * The Kustomization apps suspended (false before) under the annotation naming `by`, and web's
 * rollback (rb-web) holding its suspension of apps from time T.
 */
async function suspendedBy(by: string) {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization',
    metadata: { name: 'apps', namespace: 'flux-system', annotations: { [SUSPENDED_BY]: by, [SUSPENDED_BEFORE]: 'false' } },
    spec: { interval: '5m', suspend: true },
  });
  const { engine, store } = testEngine({ kube });
  await store.putRecord(record('rb-web', 'web', 'succeeded', T + 10, { policy: 'suspend', owners: [APPS], suspended: [suspension(T)] }));
  return { kube, engine, store };
}

t.test("resume-gitops leaves an owner another rollback suspended again since (resumed by hand in between) to that rollback's resume", async (t) => {
  for (const by of ['rb-cart', 'someone']) {
    // web's rollback suspended apps (unset before); a human ran `flux resume apps` (spec.suspend: false);
    // cart's rollback then found it reconciling and suspended it itself (false before)
    const { kube, engine, store } = await suspendedBy(by);
    await store.putRecord(record('rb-cart', 'cart', 'succeeded', T + 120_000, { policy: 'suspend', owners: [APPS], suspended: [{ ...suspension(T + 100_000), before: false }] }));
    const web = await engine.resumeGitOps('rb-web', 'alice', ['rb-cart']);
    t.equal(web.kind, 'ok', web.kind === 'conflict' ? web.message : '');
    const ks = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
    if (by === 'someone') {
      // not a rollback id: no rollback's suspension, resumed as before
      t.equal(ks.spec.suspend, undefined, 'an annotation naming no rollback: resumed as before');
      continue;
    }
    t.equal(ks.spec.suspend, true, "cart's suspension is not lifted by web's resume");
    t.equal(ks.metadata.annotations?.[SUSPENDED_BY], 'rb-cart', "cart's annotation kept");
    t.same(kube.patches(), [], 'nothing written');
    t.match((await engine.records.get('rb-web'))!.gitops?.resumed?.restored, [/spec\.suspend left alone: suspended again since by rollback rb-cart .*resume-gitops rb-cart\)$/]);
    t.notOk((await engine.records.get('rb-cart'))!.gitops?.resumed, "cart's record still holds it");
    const cart = await engine.resumeGitOps('rb-cart', 'alice');
    t.equal(cart.kind, 'ok', cart.kind === 'conflict' ? cart.message : '');
    const after = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
    t.equal(after.spec.suspend, false, "cart's resume puts back its own value before: false, as the human left it");
    t.same(after.metadata.annotations ?? {}, {}, "rollguard's annotations removed");
  }
});

t.test('two resume-gitops of one rollback at once, on two replicas: one resumes the owner, the other is refused, and the record says what was put back', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', suspend: true } });
  const a = testEngine({ kube });
  const b = testEngine({ kube, store: a.store, owner: 'replica-b' });
  await a.store.putRecord(record('rb-web', 'web', 'refused', T + 10, { policy: 'suspend', owners: [APPS], suspended: [suspension(T)] }));
  const [x, y] = await Promise.all([a.engine.resumeGitOps('rb-web', 'alice'), b.engine.resumeGitOps('rb-web', 'alice')]);
  t.same([x.kind, y.kind].sort(), ['conflict', 'ok'], 'one resumes, the other is refused');
  const refused = [x, y].find((r) => r.kind === 'conflict');
  t.match(refused?.kind === 'conflict' ? refused.message : '', /being resumed by another request right now: nothing was changed/);
  t.equal(kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!.spec.suspend, undefined, 'resumed');
  const rec = (await a.engine.records.get('rb-web'))!;
  t.same(rec.gitops?.resumed?.restored, ['Flux Kustomization flux-system/apps: spec.suspend removed (as before)'], 'not "changed by someone else"');
  t.equal(rec.timeline.filter((s) => s.step === 'gitops_resumed').length, 1, 'one resume step');
  const again = await b.engine.resumeGitOps('rb-web', 'alice');
  t.match(again.kind === 'conflict' ? again.message : '', /were resumed by alice/, 'a later one finds it resumed');
});

/** The first `n` reads of the owner wait until their gate opens; `reading` resolves as each starts waiting. */
function gatedReads(kube: FakeKube, n: number) {
  const get = kube.get.bind(kube);
  const gates: { open: () => void; reading: Promise<void> }[] = [];
  const waits: { wait: Promise<void>; reached: () => void }[] = [];
  for (let i = 0; i < n; i++) {
    let open!: () => void;
    let reached!: () => void;
    const wait = new Promise<void>((r) => (open = r));
    const reading = new Promise<void>((r) => (reached = r));
    gates.push({ open, reading });
    waits.push({ wait, reached });
  }
  let calls = 0;
  kube.get = async (...args: Parameters<FakeKube['get']>) => {
    const w = waits[calls++];
    if (w) {
      w.reached();
      await w.wait;
    }
    return get(...args);
  };
  return gates;
}

t.test('a resume-gitops holds its claim for as long as it runs (renewed), and only its holder gives it back', async (t) => {
  const kube = new FakeKube();
  kube.add(OWNER_RESOURCES.Kustomization, { apiVersion: 'kustomize.toolkit.fluxcd.io/v1', kind: 'Kustomization', metadata: { name: 'apps', namespace: 'flux-system' }, spec: { interval: '5m', suspend: true } });
  let skew = 0;
  const store = new MemoryStore(() => Date.now() + skew);
  const env = { LOCK_TTL: '1s' };
  const a = testEngine({ kube, store, env });
  const b = testEngine({ kube, store, env, owner: 'replica-b' });
  const c = testEngine({ kube, store, env, owner: 'replica-c' });
  await store.putRecord(record('rb-web', 'web', 'refused', T + 10, { policy: 'suspend', owners: [APPS], suspended: [suspension(T)] }));
  const gates = gatedReads(kube, 2);

  // a slow API server: the first resume's read of the owner takes several times LOCK_TTL
  const x = a.engine.resumeGitOps('rb-web', 'alice');
  await gates[0]!.reading;
  await new Promise((r) => setTimeout(r, 2500));
  const meanwhile = await b.engine.resumeGitOps('rb-web', 'bob');
  t.match(meanwhile.kind === 'conflict' ? meanwhile.message : '', /being resumed by another request right now: nothing was changed/, 'still claimed: renewed while it runs');

  // its replica stalled past the claim (the store's clock jumps on): another resume takes the claim over
  skew += 120_000;
  const y = b.engine.resumeGitOps('rb-web', 'bob');
  await gates[1]!.reading;
  // the first one ends: it gives back only its own claim, not the one the second holds now
  gates[0]!.open();
  t.equal((await x).kind, 'ok');
  const third = await c.engine.resumeGitOps('rb-web', 'carol');
  t.match(third.kind === 'conflict' ? third.message : '', /being resumed by another request right now: nothing was changed/, "the second one's claim stands");
  gates[1]!.open();
  await y;
  const after = await c.engine.resumeGitOps('rb-web', 'carol');
  t.match(after.kind === 'conflict' ? after.message : '', /were resumed by /, 'given back at the end');
});

t.test("a suspended-by annotation naming a rollback whose record holds no suspension of the owner does not keep it suspended", async (t) => {
  // written by whoever may edit the owner, or left by a replica that stopped before recording its suspension
  for (const by of ['rb-ghost', 'rb-other', 'rb-done', 'rb-taking']) {
    const { kube, engine, store } = await suspendedBy(by);
    // a rollback that never touched apps; one whose suspension of it was resumed; one in progress taking it now
    await store.putRecord(record('rb-other', 'other', 'blocked', T + 50, undefined));
    await store.putRecord(record('rb-done', 'done', 'succeeded', T + 60, { policy: 'suspend', owners: [APPS], suspended: [suspension(T + 55)], resumed: { at: T + 58, by: 'bob', restored: [] } }));
    await store.putRecord(record('rb-taking', 'taking', 'in_progress', T + 70, { policy: 'suspend', owners: [APPS] }));
    const r = await engine.resumeGitOps('rb-web', 'alice');
    t.equal(r.kind, 'ok', `${by}: resumed`);
    const ks = kube.peek(OWNER_RESOURCES.Kustomization, 'flux-system', 'apps')!;
    const restored = (await engine.records.get('rb-web'))!.gitops?.resumed?.restored;
    if (by === 'rb-taking') {
      // in progress, its plan found apps: it suspends after its write-ahead and records that after the write
      t.equal(ks.spec.suspend, true, 'a rollback in progress taking the owner: left to it');
      t.match(restored, [/left alone: suspended again since by rollback rb-taking /]);
      continue;
    }
    t.equal(ks.spec.suspend, undefined, `${by}: spec.suspend removed, as before web's suspension`);
    t.same(ks.metadata.annotations ?? {}, {}, `${by}: rollguard's annotations removed`);
    t.match(restored, [new RegExp(`spec\\.suspend removed \\(as before\\) \\(its annotation rollguard\\.io/suspended-by named rollback ${by}, whose record holds no suspension of it\\)$`)]);
  }
});
