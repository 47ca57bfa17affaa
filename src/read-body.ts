// Reading an HTTP answer's body no further than a bound: Alertmanager's API (BODY_LIMIT_BYTES),
// Prometheus' query answers (PROMETHEUS_MAX_RESPONSE_BYTES) and a notification receiver's refusal.

/** A body past the bound readAtMost was given: not read further, the request cancelled. */
export class BodyTooLarge extends Error {
  constructor(readonly max: number) {
    super(`the answer is longer than ${max} bytes`);
    this.name = 'BodyTooLarge';
  }
}

/**
 * The body as text, read as it comes and cut (the request cancelled) as soon as it goes past `max`
 * bytes, counted decoded: a compressed answer counts at its size in memory. BodyTooLarge then.
 */
export async function readAtMost(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > max) {
      await reader.cancel().catch(() => undefined);
      throw new BodyTooLarge(max);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, n).toString('utf8');
}
