import t from 'tap';
import { ConfigError, loadConfig } from '../../../src/config.js';

t.test('DRILL_NAMESPACES: off by default, a list, never where rollguard may not act', async (t) => {
  t.same(loadConfig({}).DRILL_NAMESPACES, [], 'drills are off unless listed');
  t.same(loadConfig({ DRILL_NAMESPACES: 'staging, loop' }).DRILL_NAMESPACES, ['staging', 'loop']);
  t.throws(() => loadConfig({ DRILL_NAMESPACES: 'staging,kube-system' }), new ConfigError(
    'invalid configuration:\n  DRILL_NAMESPACES (--drill-namespaces): kube-system is outside what rollguard may touch (SCOPE_NAMESPACES, SCOPE_DENY_NAMESPACES): it could neither roll back nor restore a drill there',
  ));
  t.throws(() => loadConfig({ DRILL_NAMESPACES: 'staging', SCOPE_NAMESPACES: 'shop' }), { message: /DRILL_NAMESPACES \(--drill-namespaces\): staging is outside/ });
  t.same(loadConfig({ DRILL_NAMESPACES: 'staging', SCOPE_NAMESPACES: 'shop,staging' }).DRILL_NAMESPACES, ['staging']);
});
