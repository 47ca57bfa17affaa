// Properties of the revision helpers against simple models of kubectl's rules.
import t from 'tap';
import fc from 'fast-check';
import type { KubeObject } from '../../../src/kube/kube.js';
import { annotationRevision, findHistory, pickReplicaSet, semanticEqual, selectorMatches, selectorToString } from '../../../src/kube/revision.js';
import { matchesSelectorString } from '../../support/fake-kube.js';

const rs = (rev: number | null, i: number): KubeObject => ({
  metadata: { name: `rs-${i}`, annotations: rev === null ? {} : { 'deployment.kubernetes.io/revision': String(rev) } },
});

t.test('toRevision 0 picks the second-highest of the revisions (a multiset), in any order', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.option(fc.integer({ min: 0, max: 20 }), { nil: null }), { maxLength: 8 }), (revs) => {
      const list = revs.map((r, i) => rs(r, i));
      const got = pickReplicaSet(list, 0);
      // a missing annotation counts as revision 0
      const sorted = revs.map((r) => r ?? 0).sort((a, b) => b - a);
      if (sorted.length < 2) return !got.ok && got.code === 'no_history';
      return got.ok && Number(got.value.metadata.annotations?.['deployment.kubernetes.io/revision'] ?? 0) === sorted[1];
    }),
  );
});

t.test('a revision annotation parses as Go\'s strconv.ParseInt(v, 10, 64): what it refuses is skipped, as kubectl skips it', async (t) => {
  const rev = (v: string | undefined) => annotationRevision({ metadata: { name: 'rs', annotations: v === undefined ? {} : { 'deployment.kubernetes.io/revision': v } } });
  t.equal(rev(undefined), 0, 'missing: revision 0');
  for (const [v, want] of [['5', 5], ['+5', 5], ['-3', -3], ['007', 7], ['0', 0]] as const) t.equal(rev(v), want, JSON.stringify(v));
  for (const v of [' 5', '5 ', '\t5', '5\n', '', '+', '0x5', '5_0', '5.0', '1e3', '٥']) t.equal(rev(v), null, `${JSON.stringify(v)} is unparsable`);
  // one ReplicaSet whose annotation only parses once trimmed: kubectl skips it, so the previous revision is 4
  const list = [rs(4, 0), rs(6, 1)];
  list.push({ metadata: { name: 'rs-padded', annotations: { 'deployment.kubernetes.io/revision': ' 5' } } });
  const got = pickReplicaSet(list, 0);
  t.ok(got.ok && got.value.metadata.name === 'rs-0', 'the padded revision is not "the previous one"');
});

t.test('toRevision N picks a ReplicaSet with revision N, or none', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 9 }), { maxLength: 8 }), fc.integer({ min: 1, max: 9 }), (revs, n) => {
      const got = pickReplicaSet(revs.map((r, i) => rs(r, i)), n);
      if (!revs.includes(n)) return !got.ok && got.code === 'revision_not_found';
      return got.ok && got.value.metadata.annotations?.['deployment.kubernetes.io/revision'] === String(n);
    }),
  );
});

t.test('ControllerRevision history: 0 = second-highest, refused with one entry or none', async (t) => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 50 }), { maxLength: 8 }), (revs) => {
      const h = revs.map((r) => ({ metadata: { name: `cr-${r}` }, revision: r }) as KubeObject);
      const got = findHistory(h, 0);
      if (revs.length <= 1) return got === null;
      const sorted = [...revs].sort((a, b) => b - a);
      return (got as { revision?: number } | null)?.revision === sorted[1];
    }),
  );
});

t.test('semanticEqual: reflexive, symmetric, blind to empty-vs-absent only', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => semanticEqual(a, a) && semanticEqual(a, b) === semanticEqual(b, a)),
  );
  t.ok(semanticEqual({ a: 1, b: [] }, { a: 1 }));
  t.ok(semanticEqual({ a: 1, b: {} }, { a: 1, b: null }));
  t.notOk(semanticEqual({ a: 0 }, {}), 'a zero is a value');
  t.notOk(semanticEqual({ a: [1] }, { a: [] }));
});

t.test('the selector string the API server gets selects what the selector selects', async (t) => {
  const key = fc.constantFrom('app', 'tier', 'version');
  const val = fc.constantFrom('a', 'b', 'c');
  fc.assert(
    fc.property(
      fc.dictionary(key, val),
      fc.array(fc.record({ key, operator: fc.constantFrom('In', 'NotIn', 'Exists', 'DoesNotExist'), values: fc.array(val, { minLength: 1, maxLength: 2 }) }), { maxLength: 2 }),
      fc.dictionary(key, val),
      (matchLabels, matchExpressions, labels) => {
        const sel = { matchLabels, matchExpressions };
        return selectorMatches(sel, labels) === matchesSelectorString(selectorToString(sel), labels);
      },
    ),
  );
});
