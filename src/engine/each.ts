import type { Logger } from 'pino';

/**
 * Runs `work` on each item, at most `n` at once, reading the next item only once a place is free
 * (records are read page by page, never all held). At most one item of a key (a target) runs at
 * a time, as the queue worker runs one target's events: two re-checks of one target at once would
 * meet each other's lock, and the second be closed blocked. An item whose key is busy is passed
 * over (counted in `passed`): it is still due, and taken up at a later pass, so that one target
 * with many records never takes every place, nor makes a pass last its record count times a
 * re-check. A failing item is logged (`what`, with the record) and the others go on: one record
 * that keeps failing must not hold back every other's due work. Every item started has ended when
 * this returns, also when reading the items fails (that failure is thrown).
 */
export async function eachAtMost<T extends { id: string }>(
  items: AsyncIterable<T>,
  n: number,
  keyOf: (item: T) => string,
  work: (item: T) => Promise<unknown>,
  log: Logger,
  what: string,
): Promise<{ failed: number; passed: number }> {
  const running = new Set<Promise<void>>();
  const busy = new Set<string>();
  let failed = 0;
  let passed = 0;
  try {
    for await (const item of items) {
      const key = keyOf(item);
      if (busy.has(key)) {
        passed++;
        continue;
      }
      busy.add(key);
      const p: Promise<void> = work(item)
        .then(
          () => undefined,
          (err: unknown) => {
            failed++;
            log.error({ err, record: item.id }, `${what} failed; the others go on, and it is taken up again at a later tick`);
          },
        )
        .finally(() => {
          running.delete(p);
          busy.delete(key);
        });
      running.add(p);
      if (running.size >= n) await Promise.race(running);
    }
  } finally {
    await Promise.all(running);
  }
  return { failed, passed };
}
