// JSON of a value with every object's keys in order, so two values equal as data print the same
// whatever order their keys came in. One piece for what compares or hashes values: the plan's
// content hashes (src/engine/change.ts), the configuration snapshots' (src/config-deps/snapshots.ts),
// and a rule's rollback options before and after a reload (src/engine/context.ts). Members whose
// value is undefined are left out, as JSON.stringify leaves them out.

export function canonicalJson(v: unknown): string {
  return JSON.stringify(keysInOrder(v));
}

function keysInOrder(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(keysInOrder);
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, keysInOrder(o[k])]));
}
