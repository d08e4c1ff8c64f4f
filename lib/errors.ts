/**
 * @module errors
 * Domain error classes, only where callers branch on the kind of failure.
 * Pure: no I/O.
 */

/** A command line that cannot be acted on; `main.ts` maps it to exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A peer broke the wire protocol; the connection to that peer is dropped, nothing else. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** Data whose SHA-256 does not match the metadata: it is never stored as verified. */
export class IntegrityError extends Error {
  override name = "IntegrityError";
}

/** A `.p2pmeta` file that is unreadable, malformed or unsafe: refused whole. */
export class MetadataError extends Error {
  override name = "MetadataError";
}

/** Returns the message of any thrown value, for one-line error reports. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
