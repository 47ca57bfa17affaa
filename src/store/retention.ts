import type { Config } from '../config.js';
import { NO_ACTION_STATES, OPEN_STATES, STATES } from '../engine/record.js';
import type { Store } from './store.js';

/**
 * Record retention, run hourly by the scheduler: closed records older than RECORD_RETENTION go,
 * and closed records that changed nothing (NO_ACTION_STATES: an alert flood's not_confirmed,
 * blocked, refused, error and dry_run records) already after RECORD_RETENTION_NO_ACTION. Open
 * records never go. Both passes read only the states' indexes they delete from.
 */
export async function pruneByRetention(store: Store, config: Pick<Config, 'RECORD_RETENTION' | 'RECORD_RETENTION_NO_ACTION'>, now: number): Promise<number> {
  const closed = await store.pruneRecords(now - config.RECORD_RETENTION, OPEN_STATES);
  if (config.RECORD_RETENTION_NO_ACTION >= config.RECORD_RETENTION) return closed;
  const keep = STATES.filter((s) => !NO_ACTION_STATES.includes(s));
  return closed + (await store.pruneRecords(now - config.RECORD_RETENTION_NO_ACTION, keep));
}
