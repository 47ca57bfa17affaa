// The scope guard's namespace lists (src/guards/scope.ts, src/config.ts): kube-system, kube-public
// and kube-node-lease are denied whatever SCOPE_DENY_NAMESPACES says (it adds to them, a Helm
// list included: the chart renders scope.denyNamespaces into it), SCOPE_DENY_NAMESPACES takes
// `*` globs, and SCOPE_NAMESPACES takes names only (the chart makes a Role in each one).
import t from 'tap';
import { loadConfig } from '../../../src/config.js';
import { outOfScope } from '../../../src/guards/scope.js';
import { namespaceLabel, OUT_OF_SCOPE } from '../../../src/metrics.js';

const scopeOf = (env: Record<string, string>) => loadConfig(env);
const why = (env: Record<string, string>, ns: string, name = 'web') => outOfScope(scopeOf(env), `Deployment/${ns}/${name}`, ns);

t.test('SCOPE_DENY_NAMESPACES adds to kube-system, kube-public and kube-node-lease, never replaces them', async (t) => {
  for (const ns of ['kube-system', 'kube-public', 'kube-node-lease']) {
    t.equal(why({}, ns), `namespace ${ns} is denied (SCOPE_DENY_NAMESPACES)`, `${ns} by default`);
    t.equal(why({ SCOPE_DENY_NAMESPACES: 'payments' }, ns), `namespace ${ns} is denied (SCOPE_DENY_NAMESPACES)`, `${ns} with SCOPE_DENY_NAMESPACES=payments`);
  }
  t.equal(why({ SCOPE_DENY_NAMESPACES: 'payments' }, 'payments'), 'namespace payments is denied (SCOPE_DENY_NAMESPACES)');
  t.equal(why({ SCOPE_DENY_NAMESPACES: 'payments' }, 'shop'), undefined, 'the rest stays in scope');
  t.same(scopeOf({ SCOPE_DENY_NAMESPACES: 'payments,kube-system' }).SCOPE_DENY_NAMESPACES, ['kube-system', 'kube-public', 'kube-node-lease', 'payments'], 'each once');
  t.equal(namespaceLabel('kube-system', scopeOf({ SCOPE_DENY_NAMESPACES: 'payments' }), new Set(['kube-system'])), OUT_OF_SCOPE, 'metrics agree');
});

t.test('SCOPE_DENY_NAMESPACES globs: * matches any characters of a namespace name', async (t) => {
  const env = { SCOPE_DENY_NAMESPACES: 'prod-*' };
  t.equal(why(env, 'prod-eu'), 'namespace prod-eu is denied by prod-* (SCOPE_DENY_NAMESPACES)');
  t.equal(why(env, 'prod-'), 'namespace prod- is denied by prod-* (SCOPE_DENY_NAMESPACES)');
  t.equal(why(env, 'prod'), undefined, 'prod-* does not match prod');
  t.equal(why(env, 'staging-prod-eu'), undefined, 'anchored at both ends');
  t.equal(why(env, 'kube-system'), 'namespace kube-system is denied (SCOPE_DENY_NAMESPACES)');
  t.equal(namespaceLabel('prod-eu', scopeOf(env), new Set(['prod-eu'])), OUT_OF_SCOPE, 'metrics agree');
  t.throws(() => loadConfig({ DRILL_NAMESPACES: 'prod-eu', ...env }), { message: /DRILL_NAMESPACES \(--drill-namespaces\): prod-eu is outside what rollguard may touch/ }, 'drills agree');
  t.throws(() => loadConfig({ SCOPE_DENY_NAMESPACES: 'prod-?' }), { message: /SCOPE_DENY_NAMESPACES \(--scope-deny-namespaces\): expected namespace names or globs with \*.*\? is not a wildcard/ });
  for (const v of ['Payments', 'prod-[ab]', 'shop.eu', 'pay ments']) {
    t.throws(() => loadConfig({ SCOPE_DENY_NAMESPACES: v }), { message: /SCOPE_DENY_NAMESPACES \(--scope-deny-namespaces\): expected namespace names \(lower-case letters, digits and -\) or globs with \*: an entry no namespace can match denies nothing/ }, `${v}: refused, not accepted to deny nothing`);
  }
});

t.test('SCOPE_NAMESPACES takes names only: a glob is refused, naming the setting', async (t) => {
  for (const v of ['prod-*', 'shop,prod-?']) {
    t.throws(() => loadConfig({ SCOPE_NAMESPACES: v }), { message: /SCOPE_NAMESPACES \(--scope-namespaces\): expected namespace names: a glob \(\* or \?\) names no namespace here/ }, v);
  }
  t.equal(why({ SCOPE_NAMESPACES: 'shop' }, 'shop'), undefined);
  t.match(why({ SCOPE_NAMESPACES: 'shop' }, 'payments'), /outside the allowed namespaces \(SCOPE_NAMESPACES: shop\)/);
});
