import { allow, block, type Guard } from './guard.js';

/** At most MAX_CONCURRENT_ROLLBACKS rollbacks in flight at once, over all replicas. */
export const concurrencyGuard: Guard = {
  name: 'concurrency',
  needsPlan: true,
  async check({ store, config, record }) {
    const inFlight = (await store.listRecords({ state: 'in_progress', limit: config.MAX_CONCURRENT_ROLLBACKS + 1 })).filter((r) => r.id !== record.id);
    if (inFlight.length >= config.MAX_CONCURRENT_ROLLBACKS) {
      return block(`${inFlight.length} rollback(s) already in flight (${inFlight.map((r) => r.target).join(', ')}); MAX_CONCURRENT_ROLLBACKS is ${config.MAX_CONCURRENT_ROLLBACKS}`);
    }
    return allow(`${inFlight.length} rollback(s) in flight`);
  },
};
