import * as crypto from 'node:crypto';

/** crypto.hash (one call, no Hash object: about 2.5 times faster on short values) where Node has it (20.12 and later). */
export const sha256Hex: (value: string) => string =
  typeof crypto.hash === 'function' ? (value) => crypto.hash('sha256', value, 'hex') : (value) => crypto.createHash('sha256').update(value).digest('hex');

/**
 * What an alert-provided value (a fingerprint, a dedupe key) becomes inside a store key name: a
 * sha256 digest cut to 32 hex characters (128 bits), so that key names have one length and one
 * alphabet whatever a sender puts in the value.
 */
export function keyDigest(value: string): string {
  return sha256Hex(value).slice(0, 32);
}
