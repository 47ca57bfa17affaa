import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { heldByRecord, NO_ACTION_STATES, OPEN_STATES } from '../engine/record.js';
import type { Metrics } from '../metrics.js';
import type { DropKind } from './drops.js';
import { MemoryStore } from './memory.js';
import { RedisStore } from './redis.js';
import type { Store } from './store.js';

export type { Store } from './store.js';

/** The log line of each thing the in-memory store drops to stay within its bounds. */
const MEMORY_DROPS: Record<DropKind, string> = {
  records: 'in-memory store: closed rollback records over MEMORY_MAX_RECORDS dropped, oldest first',
  dedupe_keys: 'in-memory store: dedupe keys over MEMORY_MAX_DEDUPE_KEYS forgotten, oldest first (a resend of those alerts is queued again and handled idempotently)',
  keys: 'in-memory store: claims, alert links and resolution marks over MEMORY_MAX_KEYS dropped, those that no longer guard anything first, then oldest first (a resolved alert may then not find its records)',
};

/** Redis when REDIS_URL is set, else the embedded in-memory store (one replica only). */
export function createStore(config: Config, logger: Logger, metrics?: Pick<Metrics, 'storeDropped'>): Store {
  if (!config.REDIS_URL) {
    logger.warn('REDIS_URL not set: using the in-memory store (one replica only; queued alerts live in this process)');
    return new MemoryStore(Date.now, {
      maxQueue: config.QUEUE_MAX_DEPTH,
      maxRecords: config.MEMORY_MAX_RECORDS,
      openStates: OPEN_STATES,
      noActionStates: NO_ACTION_STATES,
      holding: heldByRecord,
      maxDedupeKeys: config.MEMORY_MAX_DEDUPE_KEYS,
      maxKeys: config.MEMORY_MAX_KEYS,
      onDropCount: (what, n) => metrics?.storeDropped.inc({ store: 'memory', what }, n),
      onDrop: (what, dropped, detail) => logger.warn({ dropped, detail }, MEMORY_DROPS[what]),
    });
  }
  let lastError = '';
  let memoryChecked = false;
  const store: RedisStore = new RedisStore({
    url: config.REDIS_URL,
    prefix: config.REDIS_KEY_PREFIX,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT,
    minReplicasAck: config.REDIS_MIN_REPLICAS_ACK,
    replicaAckTimeoutMs: config.REDIS_REPLICA_ACK_TIMEOUT,
    maxQueue: config.QUEUE_MAX_DEPTH,
    intakeMaxMemory: config.REDIS_INTAKE_MAX_MEMORY,
    maxRecords: config.REDIS_MAX_RECORDS,
    noActionStates: NO_ACTION_STATES,
    holding: heldByRecord,
    onDropCount: (what, n) => metrics?.storeDropped.inc({ store: 'redis', what }, n),
    onDrop: (_what, dropped, detail) =>
      logger.warn({ dropped, detail }, 'Redis store: closed rollback records that changed nothing deleted over REDIS_MAX_RECORDS, oldest first'),
    onEvent: (event, detail) => {
      if (event === 'error') {
        const msg = detail instanceof Error ? detail.message : String(detail);
        // ioredis repeats the same error on every reconnect attempt: log each distinct one once.
        if (msg !== lastError) logger.error({ err: detail }, 'redis connection error');
        lastError = msg;
      } else if (event === 'ready') {
        if (lastError) logger.info('redis connection restored');
        lastError = '';
        if (!memoryChecked) {
          memoryChecked = true;
          void checkMemoryPolicy(store, logger).catch(() => (memoryChecked = false));
        }
      }
    },
  });
  return store;
}

/** A Redis without maxmemory grows until it is killed; one that evicts drops queued alerts and records. */
async function checkMemoryPolicy(store: RedisStore, logger: Logger): Promise<void> {
  const m = await store.memory();
  if (m.maxBytes === 0) {
    logger.warn({ usedBytes: m.usedBytes }, 'Redis has no maxmemory: under an alert flood it grows until it is killed; set maxmemory (below its container limit) with maxmemory-policy noeviction');
  } else if (m.policy !== 'noeviction') {
    logger.error({ policy: m.policy, maxBytes: m.maxBytes }, `Redis maxmemory-policy is ${m.policy}: at maxmemory it would evict queued alerts and records; set maxmemory-policy noeviction`);
  } else {
    logger.info({ usedBytes: m.usedBytes, maxBytes: m.maxBytes }, 'Redis memory is bounded (maxmemory with noeviction)');
  }
}
