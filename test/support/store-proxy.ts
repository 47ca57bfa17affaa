import type { Store } from '../../src/store/store.js';

/**
 * A store whose every method call goes through `around(op, args, call)`: the test decides, call by
 * call, to fail it (throw), act before or after it, or pass it on (`call()` runs the real one and
 * resolves with its result). How the engine tests make one store call fail, land late, or race
 * another replica's write.
 */
export function aroundStore(inner: Store, around: (op: string, args: unknown[], call: () => Promise<unknown>) => Promise<unknown>): Store {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => around(String(prop), args, async () => (v as (...a: unknown[]) => unknown).apply(target, args));
    },
  }) as Store;
}
