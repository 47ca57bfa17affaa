import { allow, block, type Guard } from './guard.js';

/** Kind/namespace/name globs: `*` matches within one segment. */
export function globMatches(glob: string, value: string): boolean {
  const re = new RegExp(`^${glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')}$`);
  return re.test(value);
}

/** Namespace and target allow and deny lists (SCOPE_NAMESPACES, SCOPE_DENY_NAMESPACES, SCOPE_DENY_TARGETS). */
export const scopeGuard: Guard = {
  name: 'scope',
  needsPlan: false,
  async check({ record, config }) {
    const ns = record.ref.namespace;
    if (config.SCOPE_DENY_NAMESPACES.includes(ns)) return block(`namespace ${ns} is denied (SCOPE_DENY_NAMESPACES)`);
    if (config.SCOPE_NAMESPACES.length > 0 && !config.SCOPE_NAMESPACES.includes(ns)) {
      return block(`namespace ${ns} is outside the allowed namespaces (SCOPE_NAMESPACES: ${config.SCOPE_NAMESPACES.join(', ')})`);
    }
    const denied = config.SCOPE_DENY_TARGETS.find((g) => globMatches(g, record.target));
    if (denied) return block(`target ${record.target} is denied by ${denied} (SCOPE_DENY_TARGETS)`);
    return allow(`${record.target} is in scope`);
  },
};
