/**
 * `p`, or a rejection once `ms` have passed without it settling: `timedOut()`'s error (by default
 * "timed out after N ms"), made only then, so that it may also act (close what `p` waits on).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, timedOut: () => Error = () => new Error(`timed out after ${ms} ms`)): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(timedOut()), ms);
    }),
  ]);
}
