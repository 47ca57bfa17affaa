import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { MemoryStore } from './memory.js';
import { RedisStore } from './redis.js';
import type { Store } from './store.js';

export type { Store } from './store.js';

/** Redis when REDIS_URL is set, else the embedded in-memory store (one replica only). */
export function createStore(config: Config, logger: Logger): Store {
  if (!config.REDIS_URL) {
    logger.warn('REDIS_URL not set: using the in-memory store (one replica only; queued alerts live in this process)');
    return new MemoryStore();
  }
  let lastError = '';
  return new RedisStore({
    url: config.REDIS_URL,
    prefix: config.REDIS_KEY_PREFIX,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT,
    onEvent: (event, detail) => {
      if (event === 'error') {
        const msg = detail instanceof Error ? detail.message : String(detail);
        // ioredis repeats the same error on every reconnect attempt: log each distinct one once.
        if (msg !== lastError) logger.error({ err: detail }, 'redis connection error');
        lastError = msg;
      } else if (event === 'ready') {
        if (lastError) logger.info('redis connection restored');
        lastError = '';
      }
    },
  });
}
