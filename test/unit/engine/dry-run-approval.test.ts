// A dry run asks no one for approval: its record and its notification say that a rollback would
// have waited for one, and why. Before, a dry run whose rule requires approval (or whose revision
// carries a schema migration) paged a human with "Approval needed: roll back …?", and approving it
// rolled nothing back. And an ordered chain that went on from a dry run stays a dry run, whatever
// a rule reload says by the time its next target starts.
import t from 'tap';
import { MIGRATION_ANNOTATION, WOULD_ASK } from '../../../src/guards/approval.js';
import { CHAIN_RULES, RULES, firing, testEngine } from '../../support/engine.js';

const verdict = (rec: { guards: { guard: string; result: string; reason: string }[] }, guard: string) => rec.guards.find((g) => g.guard === guard);

t.test('DRY_RUN: a rule that requires approval records a dry run saying it would have asked, and pages no one for approval', async (t) => {
  const e = testEngine({ env: { DRY_RUN: 'true' } });
  await e.deliver(firing('HighLatency')); // its rule requires approval
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'dry_run', rec!.outcome?.message ?? '');
  t.equal(verdict(rec!, 'approval')?.result, 'allow');
  t.equal(verdict(rec!, 'approval')?.reason, `${WOULD_ASK} (the rule requires approval)`);
  const kinds = e.notifier.sent.map((n) => n.kind);
  t.notOk(kinds.includes('approval_requested'), `no approval asked for (${kinds.join(', ')})`);
  const dry = e.notifier.sent.find((n) => n.kind === 'dry_run')!;
  t.equal(dry.title, 'Dry run: would ask for approval to roll back Deployment/prod/checkout');
  t.ok(dry.lines.includes(`${WOULD_ASK} (the rule requires approval)`), dry.lines.join(' | '));
});

t.test("a rule's dry-run, and a revision annotated as carrying a schema migration: the same, naming the annotation", async (t) => {
  // the error-rate rule (P0, no approval asked by the rule) tried out in dry-run
  const trial = RULES.replace('    priority: P0\n', '    priority: P0\n    guards: { dryRun: true }\n');
  t.not(trial, RULES);
  const e = testEngine({ ruleText: trial });
  e.action.annotations = { [MIGRATION_ANNOTATION]: 'true' };
  await e.deliver(firing('HighErrorRate'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'dry_run');
  t.match(verdict(rec!, 'approval')?.reason, new RegExp(`^${WOULD_ASK} \\(revision 2 is annotated ${MIGRATION_ANNOTATION}: rolling back past a schema migration needs a human`));
  t.match(rec!.outcome?.message, /^dry-run is on for rule error-rate; would have: /);
  t.notOk(e.notifier.sent.some((n) => n.kind === 'approval_requested'));
});

t.test('a live rollback still waits for approval (a dry run is what asks no one)', async (t) => {
  const e = testEngine();
  await e.deliver(firing('HighLatency'));
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'pending_approval');
  t.ok(e.notifier.sent.some((n) => n.kind === 'approval_requested'));
});

/**
 * A chain rule's alert under `dry`, the rules reloaded to `live` once the first target's dry run is
 * closed (before the second target starts): the engine and the chain's records.
 */
async function reloadedAfterFirst(dry: string, live: string) {
  const e = testEngine({ ruleText: dry });
  const put = e.store.putRecord.bind(e.store);
  e.store.putRecord = async (r) => {
    const out = await put(r);
    if (r.state === 'dry_run' && r.target === 'Deployment/prod/api') e.reload(live);
    return out;
  };
  await e.deliver(firing('ReleaseErrors', 'api'));
  await e.engine.idle();
  return { e, recs: await e.engine.records.list({}) };
}
const CHAIN_DRY_RUNS = ['Deployment/prod/api dry_run', 'Deployment/prod/auth dry_run', 'Deployment/prod/web dry_run'];

t.test('an ordered chain that went on from a dry run stays a dry run when a reload turns the rule live before its next target starts', async (t) => {
  const dryChain = CHAIN_RULES.replace('    priority: P0\n', '    priority: P0\n    guards: { dryRun: true }\n');
  t.not(dryChain, CHAIN_RULES);
  const { e, recs } = await reloadedAfterFirst(dryChain, CHAIN_RULES);
  t.same(recs.map((r) => `${r.target} ${r.state}`).sort(), CHAIN_DRY_RUNS, recs.map((r) => r.outcome?.message).join(' | '));
  const auth = recs.find((r) => r.target === 'Deployment/prod/auth')!;
  t.match(auth.outcome?.message, /^the ordered chain it is part of went on from a dry run; would have: /);
  t.equal(e.action.executed.length, 0, 'nothing rolled back: the first target was not');
});

t.test("a manual request's own dryRun, on a revision carrying a schema migration: a dry run, asking no one", async (t) => {
  const e = testEngine();
  e.action.annotations = { [MIGRATION_ANNOTATION]: 'true' };
  await e.engine.manual({ ref: { kind: 'Deployment', namespace: 'prod', name: 'checkout' }, reason: 'try it', requestedBy: 'ops', dryRun: true });
  await e.engine.idle();
  const [rec] = await e.engine.records.list({});
  t.equal(rec!.state, 'dry_run', rec!.outcome?.message ?? '');
  t.match(verdict(rec!, 'approval')?.reason, new RegExp(`^${WOULD_ASK} \\(revision 2 is annotated ${MIGRATION_ANNOTATION}`));
  t.match(rec!.outcome?.message, /^dry-run was asked for this rollback; would have: /);
  t.notOk(e.notifier.sent.some((n) => n.kind === 'approval_requested'));
});

t.test('an ordered chain whose rule requires approval, in dry-run, reloaded live between two targets: every target a dry run, no one asked', async (t) => {
  const ask = (text: string) => text.replace('    priority: P0\n', '    priority: P1\n    guards: { dryRun: true, approval: { required: true } }\n');
  const dry = ask(CHAIN_RULES);
  const live = dry.replace('dryRun: true, ', '');
  t.not(dry, CHAIN_RULES);
  t.not(live, dry);
  const { e, recs } = await reloadedAfterFirst(dry, live);
  t.same(recs.map((r) => `${r.target} ${r.state}`).sort(), CHAIN_DRY_RUNS, recs.map((r) => r.outcome?.message).join(' | '));
  for (const r of recs) t.equal(verdict(r, 'approval')?.reason, `${WOULD_ASK} (the rule requires approval)`, r.target);
  t.notOk(e.notifier.sent.some((n) => n.kind === 'approval_requested'));
  t.equal(e.action.executed.length, 0);
});
