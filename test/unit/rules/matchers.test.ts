import fc from 'fast-check';
import t from 'tap';
import { compileMatcher, MatcherError, matchesAll, parseMatcher } from '../../../src/rules/matchers.js';

t.test('equality and inequality', async (t) => {
  const m = parseMatcher('alertname="HighErrorRate"');
  t.equal(m.name, 'alertname');
  t.equal(m.op, '=');
  t.equal(m.value, 'HighErrorRate');
  t.ok(m.matches({ alertname: 'HighErrorRate' }));
  t.notOk(m.matches({ alertname: 'HighErrorRateX' }));
  t.notOk(m.matches({}));
  const n = parseMatcher('env != staging');
  t.ok(n.matches({ env: 'prod' }));
  t.ok(n.matches({}), 'a missing label is "", which is != staging');
  t.notOk(n.matches({ env: 'staging' }));
});

t.test('regexes are fully anchored, as Alertmanager anchors them', async (t) => {
  const m = parseMatcher('service=~"api"');
  t.ok(m.matches({ service: 'api' }));
  t.notOk(m.matches({ service: 'api-v2' }), 'no prefix match');
  t.notOk(m.matches({ service: 'my-api' }), 'no suffix match');
  const alt = parseMatcher('severity=~"critical|page"');
  t.ok(alt.matches({ severity: 'page' }));
  t.notOk(alt.matches({ severity: 'critical-ish' }), 'alternation is grouped before anchoring');
  const neg = parseMatcher('team!~"db|infra"');
  t.ok(neg.matches({ team: 'dbx' }));
  t.notOk(neg.matches({ team: 'db' }));
});

t.test('a matcher on a missing label compares against the empty string', async (t) => {
  t.ok(parseMatcher('team=""').matches({}));
  t.notOk(parseMatcher('team=""').matches({ team: 'x' }));
  t.ok(parseMatcher('team=~".*"').matches({}));
  t.notOk(parseMatcher('team=~".+"').matches({}));
  t.ok(parseMatcher('team!~".+"').matches({}));
  t.ok(parseMatcher('team=~"|db"').matches({}));
});

t.test('quoted values with escapes, bare values', async (t) => {
  t.equal(parseMatcher('a="x \\"y\\" z"').value, 'x "y" z');
  t.equal(parseMatcher('a="back\\\\slash"').value, 'back\\slash');
  t.equal(parseMatcher('a="line\\nbreak"').value, 'line\nbreak');
  t.equal(parseMatcher('a=bare').value, 'bare');
  t.equal(parseMatcher('a=""').value, '');
});

t.test('refuses what Alertmanager would not accept', async (t) => {
  t.throws(() => parseMatcher('severity critical'), MatcherError);
  t.throws(() => parseMatcher('1abc="x"'), MatcherError);
  t.throws(() => parseMatcher('a="unterminated'), /missing closing quote/);
  t.throws(() => parseMatcher('a="x" junk'), /after the closing quote/);
  t.throws(() => parseMatcher('a=~"(unclosed"'), /invalid regex/);
  t.throws(() => parseMatcher('a=~"(?!Watchdog).*"'), /invalid regex "\(\?!Watchdog\)\.\*": invalid or unsupported Perl syntax/);
  t.throws(() => parseMatcher('a=~"(x)\\1"'), /invalid escape sequence/, 'no backreferences in RE2');
  t.throws(() => parseMatcher('a=~"a)|(b"'), /invalid regex "a\)\|\(b"/, 'text that only parses once anchored is refused');
  t.throws(() => parseMatcher('a=~"x{1001}"'), /invalid repeat count/, "RE2's repeat limit");
  t.throws(() => compileMatcher('a-b', '=', 'x'), /label name/);
});

t.test('matchesAll needs every matcher', async (t) => {
  const ms = [parseMatcher('alertname="A"'), parseMatcher('severity=~"critical|page"')];
  t.ok(matchesAll(ms, { alertname: 'A', severity: 'page' }));
  t.notOk(matchesAll(ms, { alertname: 'A', severity: 'info' }));
  t.notOk(matchesAll(ms, { severity: 'page' }));
});

t.test('property: =~ of an escaped literal behaves exactly like =', async (t) => {
  const esc = (s: string) => s.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
  fc.assert(
    fc.property(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 }), (value, actual) => {
      const eq = compileMatcher('l', '=', value);
      const re = compileMatcher('l', '=~', esc(value));
      return eq.matches({ l: actual }) === re.matches({ l: actual }) && re.matches({ l: value });
    }),
    { numRuns: 500 },
  );
  t.pass('500 random values');
});

t.test('as Alertmanager, a backslash before anything but n, " and \\ is literal', async (t) => {
  const m = parseMatcher('instance=~"web-\\d+"');
  t.equal(m.value, 'web-\\d+');
  t.ok(m.matches({ instance: 'web-12' }));
  t.notOk(m.matches({ instance: 'web-x' }));
});

t.test('RE2 reads escapes and character classes as Go does', async (t) => {
  t.doesNotThrow(() => parseMatcher('a=~"\\\\\\\\1"'), 'an escaped backslash then 1 is no backreference');
  t.doesNotThrow(() => parseMatcher('a=~"[(?=]x"'), '(?= inside a class is literal');
  t.doesNotThrow(() => parseMatcher('a=~"\\\\(?=x"'), 'an escaped ( opens no group');
  t.throws(() => parseMatcher('a=~"x(?<=y)"'), /invalid named capture/, 'no lookbehind (Go reads (?< as a group name)');
  t.throws(() => parseMatcher('a=~"(?<n>x)\\\\k<n>"'), /invalid escape sequence/, 'no named backreferences either');
  t.ok(parseMatcher('a=~"[[:alpha:]]+"').matches({ a: 'abc' }), 'POSIX classes, which JavaScript does not have');
  t.notOk(parseMatcher('a=~"[[:alpha:]]+"').matches({ a: 'ab1' }));
});

t.test('RE2 leading flags: (?i) matches case-insensitively, still anchored', async (t) => {
  const m = parseMatcher('severity=~"(?i)critical|page"');
  t.ok(m.matches({ severity: 'CRITICAL' }));
  t.ok(m.matches({ severity: 'Page' }));
  t.notOk(m.matches({ severity: 'critical-ish' }));
  t.ok(parseMatcher('a=~"(?s)x.y"').matches({ a: 'x\ny' }));
  t.notOk(parseMatcher('a=~"x.y"').matches({ a: 'x\ny' }), 'without (?s) a dot does not match a newline, as in RE2');
  t.ok(parseMatcher('a=~"(?U)x+"').matches({ a: 'xxx' }), 'the U flag is RE2 syntax too; anchoring still needs the whole value');
});

// A backtracking engine takes minutes (.*a.*b.*: cubic) to ages ((a+)+$: exponential) on these;
// RE2 answers in one pass. The per-test timeout bounds the test; the assertions are the answers.
t.test('hostile regex and label pairs finish with the right answer', { timeout: 60_000 }, async (t) => {
  const as = 'a'.repeat(100_000);
  const spread = parseMatcher('summary=~".*a.*b.*"');
  t.notOk(spread.matches({ summary: as }), '100 kB of "a" has no "b"');
  t.ok(spread.matches({ summary: `${as}b` }));
  t.notOk(spread.matches({ summary: `b${as}` }), 'a "b" before every "a" does not count');
  const nested = parseMatcher('summary=~"(a+)+$"');
  t.notOk(nested.matches({ summary: `${as}!` }), 'nested quantifiers against 100 kB and one mismatch at the end');
  t.ok(nested.matches({ summary: as }));
  const alternation = parseMatcher('summary!~"(a|aa)+c"');
  t.ok(alternation.matches({ summary: as }), 'overlapping alternation, negated');
});
