import type { Logger } from 'pino';

/**
 * Runs `work` on each item, at most `n` at once, reading the next item only once a place is free
 * (records are read page by page, never all held). Items of one key (a target) run one after
 * another, in the order read, as the queue worker runs the events of one target: two re-checks of
 * one target at once would meet each other's lock, and the second be closed blocked. A failing
 * item is logged (`what`, with the record) and the others go on: one record that keeps failing
 * must not hold back every other's due work. Every item started has ended when this returns, also
 * when reading the items fails (that failure is thrown). Returns how many failed.
 */
export async function eachAtMost<T extends { id: string }>(
  items: AsyncIterable<T>,
  n: number,
  keyOf: (item: T) => string,
  work: (item: T) => Promise<unknown>,
  log: Logger,
  what: string,
): Promise<number> {
  const running = new Set<Promise<void>>();
  const tails = new Map<string, Promise<void>>();
  let failed = 0;
  try {
    for await (const item of items) {
      const key = keyOf(item);
      const p: Promise<void> = (tails.get(key) ?? Promise.resolve())
        .then(() => work(item))
        .then(
          () => undefined,
          (err: unknown) => {
            failed++;
            log.error({ err, record: item.id }, `${what} failed; the others go on, and it is taken up again at a later tick`);
          },
        )
        .finally(() => {
          running.delete(p);
          if (tails.get(key) === p) tails.delete(key);
        });
      tails.set(key, p);
      running.add(p);
      if (running.size >= n) await Promise.race(running);
    }
  } finally {
    await Promise.all(running);
  }
  return failed;
}
