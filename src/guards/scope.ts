import type { WrittenObject } from '../actions/index.js';
import type { Config } from '../config.js';
import { allow, block, objectKey, type Guard } from './guard.js';

/** Kind/namespace/name globs: `*` matches within one segment. */
export function globMatches(glob: string, value: string): boolean {
  const re = new RegExp(`^${glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')}$`);
  return re.test(value);
}

type ScopeSettings = Pick<Config, 'SCOPE_NAMESPACES' | 'SCOPE_DENY_NAMESPACES' | 'SCOPE_DENY_TARGETS'>;

/**
 * The entry of SCOPE_DENY_NAMESPACES that denies `namespace` (a name, or a glob: `*` matches any
 * characters), or undefined. SCOPE_NAMESPACES is compared by name: each is a Role's namespace.
 */
export function deniedNamespace(deny: readonly string[], namespace: string): string | undefined {
  return deny.find((g) => g === namespace || (g.includes('*') && globMatches(g, namespace)));
}

/** Why `Kind/namespace/name` is out of scope, naming the setting; undefined when it is in scope. */
export function outOfScope(config: ScopeSettings, key: string, namespace: string): string | undefined {
  const deny = deniedNamespace(config.SCOPE_DENY_NAMESPACES, namespace);
  if (deny !== undefined) return `namespace ${namespace} is denied${deny === namespace ? '' : ` by ${deny}`} (SCOPE_DENY_NAMESPACES)`;
  if (config.SCOPE_NAMESPACES.length > 0 && !config.SCOPE_NAMESPACES.includes(namespace)) {
    return `namespace ${namespace} is outside the allowed namespaces (SCOPE_NAMESPACES: ${config.SCOPE_NAMESPACES.join(', ')})`;
  }
  const denied = config.SCOPE_DENY_TARGETS.find((g) => globMatches(g, key));
  if (denied) return `target ${key} is denied by ${denied} (SCOPE_DENY_TARGETS)`;
  return undefined;
}

/** The first of `objects` out of scope, and why (outOfScope); undefined when every one is in scope. */
export function writeOutOfScope(config: ScopeSettings, objects: readonly WrittenObject[]): { key: string; why: string } | undefined {
  for (const o of objects) {
    const why = outOfScope(config, objectKey(o), o.namespace);
    if (why) return { key: objectKey(o), why };
  }
  return undefined;
}

/**
 * Namespace and target allow and deny lists (SCOPE_NAMESPACES, SCOPE_DENY_NAMESPACES,
 * SCOPE_DENY_TARGETS): first the target, before anything is read of it; then every object the plan
 * writes (a Canary's stable Deployment, a blue-green Service, a Helm release).
 */
export const scopeGuard: Guard = {
  name: 'scope',
  needsPlan: false,
  async check({ record, config }) {
    const why = outOfScope(config, record.target, record.ref.namespace);
    return why ? block(why) : allow(`${record.target} is in scope`);
  },
  async checkWrites({ config, objects }) {
    const out = writeOutOfScope(config, objects);
    if (out) return block(`the rollback writes ${out.key}: ${out.why}`);
    return allow(`every object it writes is in scope (${objects.map(objectKey).join(', ') || 'none'})`);
  },
};
