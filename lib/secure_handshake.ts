/**
 * @module secure_handshake
 * The share proof on an encrypted connection: each side proves it holds the share's metadata
 * (the share key of `share_auth`) with an HMAC over both nonces and both TLS certificate
 * fingerprints, before any piece flows. For a private share the responder says nothing about
 * itself or the share until the initiator's proof checks out. Does I/O (on a `PeerConnection`).
 *
 * Wire flow (frames as in docs/PROTOCOL.md; two new message types, defined here for now):
 *
 * ```
 * initiator                                   responder
 *   HANDSHAKE(info hash, peer id)  ──────────▶
 *   AUTH_CHALLENGE(nI)             ──────────▶
 *                                  ◀──────────  AUTH_CHALLENGE(nR)          (nothing else)
 *   AUTH_PROOF(initiator proof)    ──────────▶  checks it; if wrong: ERROR, or a silent close
 *                                               for a private share
 *                                  ◀──────────  HANDSHAKE(info hash, peer id)
 *                                  ◀──────────  AUTH_PROOF(responder proof)
 *   checks it before using anything the responder said
 * ```
 *
 * `PeerConnection` decodes unknown message types without their payload and raises its frame
 * limit only inside its own handshake methods, so the exchange runs through an
 * {@linkcode AuthGate}: a `ByteStream` wrapper that lets this module read the first frames
 * itself while `PeerConnection` waits, then hands `PeerConnection` the peer's handshake frame
 * (once the proof is checked) and everything after it. `PeerConnection`'s own
 * `handshakeAsInitiator`/`handshakeAsResponder` then run unchanged: version and info hash
 * checks, frame limit, `RemoteHello`.
 */

import { ProtocolError } from "./errors.ts";
import type { ByteStream, PeerConnection, RemoteHello } from "./peer_conn.ts";
import { AUTH_BYTES, checkProof, makeProof, newNonce, type ProofContext } from "./share_auth.ts";
import { concatBytes, toHex } from "./units.ts";
import {
  decodeBody,
  encodeFrame,
  MAX_HANDSHAKE_FRAME_BYTES,
  MessageType,
  PROTOCOL_VERSION,
} from "./wire.ts";

/** Message type of AUTH_CHALLENGE: payload is a 32-byte nonce. (To move into `wire.ts`.) */
export const AUTH_CHALLENGE = 13;
/** Message type of AUTH_PROOF: payload is a 32-byte HMAC-SHA-256. (To move into `wire.ts`.) */
export const AUTH_PROOF = 14;

/** What the initiator hears when a responder closes without a word during the proof. */
const SILENT_CLOSE_HINT =
  "it does not serve this share, or its metadata differs from ours (a private share refuses " +
  "silently)";

/** Encodes an AUTH_CHALLENGE frame. */
export function encodeAuthChallenge(nonce: Uint8Array): Uint8Array {
  return encodeAuthFrame(AUTH_CHALLENGE, nonce, "nonce");
}

/** Encodes an AUTH_PROOF frame. */
export function encodeAuthProof(proof: Uint8Array): Uint8Array {
  return encodeAuthFrame(AUTH_PROOF, proof, "proof");
}

function encodeAuthFrame(type: number, payload: Uint8Array, what: string): Uint8Array {
  if (payload.length !== AUTH_BYTES) throw new RangeError(`${what} must be ${AUTH_BYTES} bytes`);
  return encodeFrame(type, payload);
}

/** The buffer a gate's reads of the wrapped stream (and default reads of the gate) use. */
const GATE_CHUNK_BYTES = 64 * 1024;

/**
 * A `ByteStream` wrapper for one connection: build the `PeerConnection` on it, and pass it to
 * {@linkcode secureHandshakeAsInitiator} or {@linkcode secureHandshakeAsResponder}. Until the
 * handshake opens it, `PeerConnection` reads nothing; afterwards every byte passes through
 * unchanged. Writes go straight to the wrapped stream. Over a byte stream the gate is a byte
 * stream too, and a BYOB read of the gate reads the wrapped stream straight into the reader's
 * buffer: no copy and no allocation per frame on the data path.
 */
export class AuthGate implements ByteStream {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /** As the wrapped stream says. */
  readonly writeReleasesBuffer?: boolean;
  #stream: ByteStream;
  #reader?: ReadableStreamDefaultReader<Uint8Array>;
  #byob?: ReadableStreamBYOBReader;
  /** Bytes read but not yet taken as frames (small: frames are bounded before the proof). */
  #pending = new Uint8Array(0);
  /** What `PeerConnection` reads first once open: the replayed frame and `#pending`. */
  #replay = new Uint8Array(0);
  #opened = Promise.withResolvers<void>();
  #state: "closed" | "open" | "failed" = "closed";

  /** @param stream the connection, usually a `SecureStream` */
  constructor(stream: ByteStream) {
    this.#stream = stream;
    this.writable = stream.writable;
    this.writeReleasesBuffer = stream.writeReleasesBuffer;
    this.#opened.promise.catch(() => {}); // observed through `readable`
    try {
      this.#byob = stream.readable.getReader({ mode: "byob" });
    } catch {
      this.#reader = stream.readable.getReader();
    }
    const cancel = (reason: unknown) => (this.#byob ?? this.#reader)!.cancel(reason);
    if (this.#byob) {
      const byob = this.#byob;
      this.readable = new ReadableStream({
        type: "bytes",
        autoAllocateChunkSize: GATE_CHUNK_BYTES,
        pull: async (controller) => {
          await this.#opened.promise;
          const request = controller.byobRequest!;
          const view = request.view!;
          const into = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
          if (this.#replay.length > 0) return request.respond(this.#takeReplay(into));
          const { done, value } = await byob.read(into);
          if (!done) return request.respondWithNewView(value);
          controller.close();
          // The read moved the request's buffer into `value`: give it back, empty.
          request.respondWithNewView(value ?? new Uint8Array(0));
        },
        cancel,
      });
    } else {
      this.readable = new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          await this.#opened.promise;
          if (this.#replay.length > 0) {
            controller.enqueue(this.#replay);
            this.#replay = new Uint8Array(0);
            return;
          }
          const chunk = await this.#readChunk();
          if (chunk === undefined) controller.close();
          else controller.enqueue(chunk);
        },
        cancel,
      }, { highWaterMark: 0 });
    }
  }

  /** Copies the start of the replay into `into`; returns how many bytes. */
  #takeReplay(into: Uint8Array): number {
    const n = Math.min(into.length, this.#replay.length);
    into.set(this.#replay.subarray(0, n));
    this.#replay = this.#replay.subarray(n);
    return n;
  }

  /** The next bytes of the wrapped stream, or `undefined` at its end. */
  async #readChunk(): Promise<Uint8Array | undefined> {
    const { done, value } = this.#byob
      ? await this.#byob.read(new Uint8Array(GATE_CHUNK_BYTES))
      : await this.#reader!.read();
    return done ? undefined : value;
  }

  /** Closes the wrapped stream. */
  close(): void {
    this.#stream.close();
  }

  /**
   * Reads the next frame body (type byte and payload) for the handshake, skipping keep-alives;
   * `undefined` at a clean end of stream.
   *
   * @throws {ProtocolError} on a frame over the pre-handshake limit or a cut stream
   */
  async nextFrame(): Promise<Uint8Array | undefined> {
    if (this.#state !== "closed") throw new Error("the gate is already open");
    for (;;) {
      if (this.#pending.length >= 4) {
        const view = new DataView(this.#pending.buffer, this.#pending.byteOffset, 4);
        const length = view.getUint32(0);
        if (length > MAX_HANDSHAKE_FRAME_BYTES) {
          throw new ProtocolError(
            `frame of ${length} bytes exceeds the limit of ${MAX_HANDSHAKE_FRAME_BYTES}`,
          );
        }
        if (this.#pending.length >= 4 + length) {
          const body = this.#pending.slice(4, 4 + length);
          this.#pending = this.#pending.subarray(4 + length);
          if (length === 0) continue; // keep-alive
          return body;
        }
      }
      const value = await this.#readChunk();
      if (value === undefined) {
        if (this.#pending.length > 0) {
          throw new ProtocolError(
            `connection closed in the middle of a frame (${this.#pending.length} bytes)`,
          );
        }
        return undefined;
      }
      const joined = new Uint8Array(this.#pending.length + value.length);
      joined.set(this.#pending);
      joined.set(value, this.#pending.length);
      this.#pending = joined;
    }
  }

  /** Lets `PeerConnection` read: first `replay` (a whole frame), then what is left, then the rest. */
  open(replay: Uint8Array): void {
    if (this.#state !== "closed") return;
    this.#state = "open";
    this.#replay = concatBytes([replay, this.#pending]);
    this.#pending = new Uint8Array(0);
    this.#opened.resolve();
  }

  /** Ends the handshake without opening: `PeerConnection`'s pending read fails with `err`. */
  fail(err: Error): void {
    if (this.#state !== "closed") return;
    this.#state = "failed";
    this.#opened.reject(err);
  }
}

/** Options for {@linkcode secureHandshakeAsInitiator}. */
export interface InitiatorAuthOptions {
  /** The gate the connection was built on. */
  gate: AuthGate;
  /** Info hash of the share we want (32 bytes). */
  infoHash: Uint8Array;
  peerId: Uint8Array;
  /** The share key (`shareKey(meta.info)`). */
  key: CryptoKey;
  /** SHA-256 of our certificate. */
  localFp: Uint8Array;
  /** SHA-256 of the certificate the responder presented. */
  peerFp: Uint8Array;
}

/** What a responder knows about a share it was asked for. */
export interface ShareAccess {
  /** The share key. */
  key: CryptoKey;
  /** The share's info hash (32 bytes), sent in our handshake. */
  ourInfoHash: Uint8Array;
  /** A private share: a failed proof gets a silent close, not an ERROR. */
  private: boolean;
}

/** Options for {@linkcode secureHandshakeAsResponder}. */
export interface ResponderAuthOptions {
  /** The gate the connection was built on. */
  gate: AuthGate;
  /** Our access to the share with this info hash (hex), or `undefined` when we do not serve it. */
  accept: (infoHash: string) => ShareAccess | undefined;
  peerId: Uint8Array;
  /** SHA-256 of our certificate. */
  localFp: Uint8Array;
  /** SHA-256 of the certificate the initiator presented. */
  peerFp: Uint8Array;
  /**
   * We serve private shares only: an unknown info hash is treated like a wrong proof (a
   * challenge, then a silent close), so a stranger cannot even tell which shares we serve.
   */
  privateOnly?: boolean;
}

/** The other side's handshake after a successful proof. */
export interface AuthenticatedHello extends RemoteHello {
  /** The share is private (responder side: as `accept` said; initiator side: `false`). */
  private: boolean;
}

function typeName(body: Uint8Array): string {
  const code = body[0];
  const known = Object.entries(MessageType).find(([, value]) => value === code);
  if (known) return known[0];
  if (code === AUTH_CHALLENGE) return "AUTH_CHALLENGE";
  if (code === AUTH_PROOF) return "AUTH_PROOF";
  return `message type ${code}`;
}

/** The error for a stream that ended during the exchange: our own close reason if we closed. */
function endedError(conn: PeerConnection, hint: string): ProtocolError {
  if (conn.closed && conn.closeReason) return new ProtocolError(conn.closeReason);
  return new ProtocolError(
    `peer ${conn.remote} closed the connection during authentication${hint ? ` (${hint})` : ""}`,
  );
}

/** Throws `peer X refused: TEXT` when `body` is an ERROR frame. */
function throwIfRefused(body: Uint8Array, remote: string): void {
  if (body[0] !== MessageType.ERROR) return;
  const message = decodeBody(body);
  throw new ProtocolError(
    `peer ${remote} refused: ${message.type === "error" ? message.message : "error"}`,
  );
}

/** The payload of an auth frame of `type`, or a ProtocolError naming what came instead. */
function expectAuth(
  conn: PeerConnection,
  body: Uint8Array | undefined,
  type: number,
  closedHint: string,
): Uint8Array {
  const remote = conn.remote;
  if (body === undefined) throw endedError(conn, closedHint);
  throwIfRefused(body, remote);
  const want = type === AUTH_CHALLENGE ? "AUTH_CHALLENGE" : "AUTH_PROOF";
  if (body[0] !== type) {
    throw new ProtocolError(`peer ${remote} sent ${typeName(body)} instead of ${want}`);
  }
  if (body.length !== 1 + AUTH_BYTES) {
    throw new ProtocolError(`${want} message of ${body.length - 1} bytes, expected ${AUTH_BYTES}`);
  }
  return body.slice(1);
}

/**
 * Runs the encrypted handshake from the side that dialed: our handshake and challenge, our
 * proof once the responder's nonce arrives, then the responder's handshake and proof, which
 * is checked before `PeerConnection` sees anything the responder sent.
 *
 * @param conn a `PeerConnection` built on `options.gate`, nothing sent or received yet
 * @param options share, key, peer id and both certificate fingerprints
 * @returns the responder's handshake (its info hash equals ours)
 * @throws {ProtocolError} when the responder refuses, closes, fails its proof, or serves
 *   another share; the connection is closed
 */
export async function secureHandshakeAsInitiator(
  conn: PeerConnection,
  options: InitiatorAuthOptions,
): Promise<AuthenticatedHello> {
  const { gate } = options;
  const remote = conn.remote;
  // Sends our HANDSHAKE now, then waits for the responder's, which the gate releases only
  // after the responder's proof has been checked.
  const hello = conn.handshakeAsInitiator(options.infoHash, options.peerId);
  hello.catch(() => {});
  try {
    const initiatorNonce = newNonce();
    await conn.send(encodeAuthChallenge(initiatorNonce));
    const responderNonce = expectAuth(
      conn,
      await gate.nextFrame(),
      AUTH_CHALLENGE,
      SILENT_CLOSE_HINT,
    );
    const context = (role: ProofContext["role"]): ProofContext => ({
      role,
      initiatorNonce,
      responderNonce,
      initiatorCert: options.localFp,
      responderCert: options.peerFp,
    });
    await conn.send(encodeAuthProof(await makeProof(options.key, context("initiator"))));

    const handshake = await gate.nextFrame();
    if (handshake === undefined) throw endedError(conn, SILENT_CLOSE_HINT);
    throwIfRefused(handshake, remote);
    if (handshake[0] !== MessageType.HANDSHAKE) {
      throw new ProtocolError(`peer ${remote} sent ${typeName(handshake)} before the handshake`);
    }
    const proof = expectAuth(conn, await gate.nextFrame(), AUTH_PROOF, "after its handshake");
    if (!await checkProof(options.key, context("responder"), proof)) {
      await conn.sendErrorAndClose("authentication failed");
      throw new ProtocolError(
        `peer ${remote} failed authentication: it could not prove it holds this share's ` +
          `metadata (a man in the middle?)`,
      );
    }
    gate.open(encodeFrame(handshake[0], handshake.subarray(1)));
    return { ...(await hello), private: false };
  } catch (err) {
    gate.fail(err instanceof Error ? err : new Error(String(err)));
    conn.close(err instanceof Error ? err.message : String(err));
    await hello.catch(() => {});
    throw err;
  }
}

/**
 * Runs the encrypted handshake on the side that accepted: reads the initiator's handshake and
 * challenge, answers with a nonce only, checks the initiator's proof, and only then sends our
 * handshake and proof. A wrong proof for a private share (or, with `privateOnly`, an unknown
 * share) gets a silent close: the initiator learns nothing about the share or about us.
 *
 * @param conn a `PeerConnection` built on `options.gate`, nothing sent or received yet
 * @param options share lookup, peer id and both certificate fingerprints
 * @returns the initiator's handshake
 * @throws {ProtocolError} naming why the initiator was refused; the connection is closed
 */
export async function secureHandshakeAsResponder(
  conn: PeerConnection,
  options: ResponderAuthOptions,
): Promise<AuthenticatedHello> {
  const { gate } = options;
  const remote = conn.remote;
  const quiet = options.privateOnly === true;
  // Before the proof, a private-only responder answers nothing it could be recognised by.
  const refuse = async (local: string, toPeer: string, silent: boolean): Promise<never> => {
    if (silent) conn.close(local);
    else await conn.sendErrorAndClose(toPeer);
    throw new ProtocolError(local);
  };
  try {
    const first = await gate.nextFrame();
    if (first === undefined) throw endedError(conn, "");
    let opening;
    try {
      opening = decodeBody(first);
    } catch (err) {
      return await refuse(
        `peer ${remote}: ${(err as Error).message}`,
        (err as Error).message,
        quiet,
      );
    }
    if (opening.type === "error") {
      throw new ProtocolError(`peer ${remote} refused: ${opening.message}`);
    }
    if (opening.type !== "handshake") {
      return await refuse(
        `peer ${remote} sent ${typeName(first)} before the handshake`,
        `expected a handshake, got ${typeName(first)}`,
        quiet,
      );
    }
    if (opening.version !== PROTOCOL_VERSION) {
      return await refuse(
        `peer ${remote} speaks protocol version ${opening.version}, we speak ${PROTOCOL_VERSION}`,
        `unsupported protocol version ${opening.version}`,
        quiet,
      );
    }
    const infoHash = toHex(opening.infoHash);
    const challenge = await gate.nextFrame();
    let initiatorNonce: Uint8Array;
    try {
      initiatorNonce = expectAuth(conn, challenge, AUTH_CHALLENGE, "");
    } catch (err) {
      const message = (err as Error).message;
      if (challenge === undefined || challenge[0] === MessageType.ERROR) throw err;
      return await refuse(
        message,
        "encrypted transport needs AUTH_CHALLENGE after HANDSHAKE",
        quiet,
      );
    }
    const share = options.accept(infoHash);
    if (!share && !quiet) {
      return await refuse(
        `peer ${remote} asked for unknown share ${infoHash} (info hash mismatch)`,
        `info hash mismatch: this peer does not serve ${infoHash}`,
        false,
      );
    }
    const responderNonce = newNonce();
    await conn.send(encodeAuthChallenge(responderNonce));
    const context = (role: ProofContext["role"]): ProofContext => ({
      role,
      initiatorNonce,
      responderNonce,
      initiatorCert: options.peerFp,
      responderCert: options.localFp,
    });
    const proof = await gate.nextFrame();
    if (proof === undefined) throw endedError(conn, "");
    let theirProof: Uint8Array;
    try {
      theirProof = expectAuth(conn, proof, AUTH_PROOF, "");
    } catch (err) {
      return await refuse(
        (err as Error).message,
        "authentication failed",
        quiet || !!share?.private,
      );
    }
    // An unknown share (private-only) is checked against a throwaway key: same work, same
    // answer (a silent close) as a wrong proof, so the two cannot be told apart.
    const key = share?.key ?? await throwawayKey();
    const valid = await checkProof(key, context("initiator"), theirProof);
    if (!share) {
      return await refuse(
        `peer ${remote} asked for unknown share ${infoHash} (closed without answer)`,
        "",
        true,
      );
    }
    if (!valid) {
      return await refuse(
        share.private
          ? `peer ${remote} failed authentication for private share ${infoHash} (closed without answer)`
          : `peer ${remote} failed authentication: it does not hold the metadata of ${infoHash}`,
        "authentication failed",
        share.private,
      );
    }
    const ours = share.ourInfoHash;
    gate.open(encodeFrame(first[0], first.subarray(1)));
    const hello = await conn.handshakeAsResponder(
      (theirs) => (theirs === infoHash ? ours : undefined),
      options.peerId,
    );
    await conn.send(encodeAuthProof(await makeProof(share.key, context("responder"))));
    return { ...hello, private: share.private };
  } catch (err) {
    gate.fail(err instanceof Error ? err : new Error(String(err)));
    conn.close(err instanceof Error ? err.message : String(err));
    throw err;
  }
}

async function throwawayKey(): Promise<CryptoKey> {
  return await crypto.subtle.importKey(
    "raw",
    newNonce() as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
}
