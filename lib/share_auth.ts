/**
 * @module share_auth
 * Proof that a peer holds a share's metadata, bound to the TLS connection it is made on.
 *
 * The info hash is semi-public (trackers and peers see it), so knowing it proves nothing. The
 * share key is derived from the whole canonical `info` section, which only holders of the
 * metadata have: K = SHA-256("p2p-share share key v1\0" || canonical info). Each side proves
 * knowledge of K with an HMAC over both sides' fresh nonces and both TLS certificate
 * fingerprints, so a proof can neither be replayed on another connection nor relayed by a
 * man in the middle (who would present other certificates to each side).
 * Pure: Web Crypto only, no I/O.
 */

import { canonicalJson, type Info } from "./metadata.ts";
import { concatBytes } from "./units.ts";

/** Length of nonces and proofs in bytes. */
export const AUTH_BYTES = 32;

const KEY_LABEL = "p2p-share share key v1\0";

/** The share key: known to every holder of the metadata, not derivable from the info hash. */
export async function shareKey(info: Info): Promise<CryptoKey> {
  const bytes = new TextEncoder().encode(KEY_LABEL + canonicalJson(info));
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return await crypto.subtle.importKey("raw", digest, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
}

/** A fresh random nonce. */
export function newNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(AUTH_BYTES));
}

/** What a proof covers: who proves, both nonces, both certificates (SHA-256, raw bytes). */
export interface ProofContext {
  role: "initiator" | "responder";
  initiatorNonce: Uint8Array;
  responderNonce: Uint8Array;
  initiatorCert: Uint8Array;
  responderCert: Uint8Array;
}

function transcript(ctx: ProofContext): Uint8Array<ArrayBuffer> {
  const parts = [
    new TextEncoder().encode(`p2p-share proof v1\0${ctx.role}\0`),
    ctx.initiatorNonce,
    ctx.responderNonce,
    ctx.initiatorCert,
    ctx.responderCert,
  ];
  return concatBytes(parts);
}

/** The proof one side sends. */
export async function makeProof(key: CryptoKey, ctx: ProofContext): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, transcript(ctx)));
}

/** True when `proof` is the other side's valid proof (compared in constant time by Web Crypto). */
export async function checkProof(
  key: CryptoKey,
  ctx: ProofContext,
  proof: Uint8Array,
): Promise<boolean> {
  if (proof.length !== AUTH_BYTES) return false;
  return await crypto.subtle.verify("HMAC", key, proof as Uint8Array<ArrayBuffer>, transcript(ctx));
}
