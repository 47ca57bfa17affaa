import { createHash } from 'node:crypto';

/**
 * What an alert-provided value (a fingerprint, a dedupe key) becomes inside a store key name: a
 * sha256 digest cut to 32 hex characters (128 bits), so that key names have one length and one
 * alphabet whatever a sender puts in the value.
 */
export function keyDigest(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 32);
}
