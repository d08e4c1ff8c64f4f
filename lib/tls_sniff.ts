/**
 * @module tls_sniff
 * Telling a TLS ClientHello from a plaintext p2p-share frame by its first bytes, so that each
 * side can refuse the other with a clear message instead of a garbled one.
 * Pure: bytes in, a boolean out.
 *
 * A TLS connection opens with a handshake record: content type 0x16, then the record version
 * 0x03 0x0X. A plaintext p2p-share connection opens with a frame length prefix, which for the
 * 69-byte handshake is `00 00 00 41`: the two never share a first byte.
 */

/** First byte of a TLS handshake record. */
export const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * True when `bytes` (the first bytes a peer sent, one or more) may be the start of a TLS
 * ClientHello. With fewer than three bytes only what is there is checked.
 *
 * @param bytes the first bytes received on a connection
 * @returns whether they look like TLS rather than a p2p-share frame
 * @example looksLikeTlsClientHello(new Uint8Array([0x16, 0x03, 0x01])) === true
 */
export function looksLikeTlsClientHello(bytes: Uint8Array): boolean {
  if (bytes.length === 0 || bytes[0] !== TLS_HANDSHAKE_RECORD) return false;
  if (bytes.length >= 2 && bytes[1] !== 0x03) return false;
  if (bytes.length >= 3 && bytes[2] > 0x04) return false;
  return true;
}

/**
 * True when a frame length prefix is really the start of a TLS record (`16 03 0X ..` read as a
 * big-endian u32): what a plaintext peer's frame decoder sees when an encrypting peer dials
 * it. Lets the decoder say "tried an encrypted connection" instead of "frame too large".
 *
 * @param frameLength the u32 read from the first four bytes
 * @returns whether it is a TLS handshake record header
 */
export function looksLikeTlsFrameLength(frameLength: number): boolean {
  return looksLikeTlsClientHello(
    new Uint8Array([frameLength >>> 24, (frameLength >>> 16) & 0xff, (frameLength >>> 8) & 0xff]),
  );
}
