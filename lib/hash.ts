/**
 * @module hash
 * SHA-256 through Web Crypto, which runs off the JavaScript thread so network and disk work go on
 * while a piece is hashed. No I/O.
 */

/** Length in bytes of a SHA-256 digest. */
export const DIGEST_BYTES = 32;

/** SHA-256 of `data`. */
export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
}

/** True when the two digests are equal. Digests are public, so no constant-time compare is needed. */
export function digestsEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
