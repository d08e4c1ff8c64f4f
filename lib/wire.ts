/**
 * @module wire
 * The peer wire protocol: message types, frame encoding and an incremental decoder that
 * enforces a maximum frame size and tells a clean end of stream from a cut one.
 * Pure: bytes in, messages out, no I/O. See docs/PROTOCOL.md for the byte layout.
 *
 * Frame: u32 big-endian length L of what follows, then (when L > 0) a u8 message type and
 * L - 1 bytes of payload. L = 0 is a keep-alive.
 */

import { ProtocolError } from "./errors.ts";
import { looksLikeTlsFrameLength } from "./tls_sniff.ts";

/** Protocol identifier carried by every handshake. */
export const PROTOCOL_MAGIC = new TextEncoder().encode("P2PSHARE");
/** Wire protocol version; a peer speaking another version is refused at the handshake. */
export const PROTOCOL_VERSION = 1;
/** Length of a peer id in bytes. */
export const PEER_ID_BYTES = 20;
/** Length of an info hash in bytes (SHA-256). */
export const INFO_HASH_BYTES = 32;
/** Largest block a peer may request or send. */
export const MAX_BLOCK_BYTES = 1024 * 1024;
/** Largest frame accepted after the handshake: a block plus its header, with room to spare. */
export const MAX_FRAME_BYTES = MAX_BLOCK_BYTES + 64;
/** Largest frame accepted before the handshake is done: a stranger gets nothing bigger. */
export const MAX_HANDSHAKE_FRAME_BYTES = 256;
/** Longest error text sent or kept. */
export const MAX_ERROR_TEXT_BYTES = 1024;

/** Message type codes. Unknown codes are skipped so later versions can add messages. */
export const MessageType = {
  HANDSHAKE: 0,
  ERROR: 1,
  BITFIELD: 2,
  HAVE: 3,
  REQUEST: 4,
  PIECE: 5,
  CANCEL: 6,
  REJECT: 7,
  CHOKE: 8,
  UNCHOKE: 9,
  INTERESTED: 10,
  NOT_INTERESTED: 11,
  PORT: 12,
} as const;

const HANDSHAKE_PAYLOAD_BYTES = PROTOCOL_MAGIC.length + 2 + 2 + INFO_HASH_BYTES + PEER_ID_BYTES;

/** A decoded message. `PIECE` data is a view into decoder memory: copy it before the next frame. */
export type Message =
  | { type: "keepalive" }
  | {
    type: "handshake";
    version: number;
    flags: number;
    infoHash: Uint8Array;
    peerId: Uint8Array;
  }
  | { type: "error"; message: string }
  | { type: "bitfield"; bytes: Uint8Array }
  | { type: "have"; index: number }
  | { type: "request"; index: number; begin: number; length: number }
  | { type: "piece"; index: number; begin: number; data: Uint8Array }
  | { type: "cancel"; index: number; begin: number; length: number }
  | { type: "reject"; index: number; begin: number; length: number }
  | { type: "choke" }
  | { type: "unchoke" }
  | { type: "interested" }
  | { type: "not_interested" }
  | { type: "port"; port: number }
  | { type: "unknown"; code: number };

function frame(type: number, payloadBytes: number): { buf: Uint8Array; view: DataView } {
  const buf = new Uint8Array(5 + payloadBytes);
  const view = new DataView(buf.buffer);
  view.setUint32(0, 1 + payloadBytes);
  buf[4] = type;
  return { buf, view };
}

/**
 * Encodes a frame of any type around `payload` (a type this module does not encode, or a body
 * received earlier and sent on whole).
 */
export function encodeFrame(type: number, payload: Uint8Array): Uint8Array {
  const { buf } = frame(type, payload.length);
  buf.set(payload, 5);
  return buf;
}

/** Encodes a handshake. */
export function encodeHandshake(infoHash: Uint8Array, peerId: Uint8Array, flags = 0): Uint8Array {
  if (infoHash.length !== INFO_HASH_BYTES) throw new RangeError("info hash must be 32 bytes");
  if (peerId.length !== PEER_ID_BYTES) throw new RangeError("peer id must be 20 bytes");
  const { buf, view } = frame(MessageType.HANDSHAKE, HANDSHAKE_PAYLOAD_BYTES);
  let at = 5;
  buf.set(PROTOCOL_MAGIC, at);
  at += PROTOCOL_MAGIC.length;
  view.setUint16(at, PROTOCOL_VERSION);
  view.setUint16(at + 2, flags);
  at += 4;
  buf.set(infoHash, at);
  buf.set(peerId, at + INFO_HASH_BYTES);
  return buf;
}

/** Encodes an error message (truncated to {@linkcode MAX_ERROR_TEXT_BYTES}). */
export function encodeError(message: string): Uint8Array {
  const text = new TextEncoder().encode(message).subarray(0, MAX_ERROR_TEXT_BYTES);
  const { buf } = frame(MessageType.ERROR, text.length);
  buf.set(text, 5);
  return buf;
}

/** Encodes a bitfield. */
export function encodeBitfield(bytes: Uint8Array): Uint8Array {
  const { buf } = frame(MessageType.BITFIELD, bytes.length);
  buf.set(bytes, 5);
  return buf;
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${what} ${value} does not fit in 32 bits`);
  }
}

/** Encodes a have. */
export function encodeHave(index: number): Uint8Array {
  checkU32(index, "piece index");
  const { buf, view } = frame(MessageType.HAVE, 4);
  view.setUint32(5, index);
  return buf;
}

function encodeRange(type: number, index: number, begin: number, length: number): Uint8Array {
  checkU32(index, "piece index");
  checkU32(begin, "block offset");
  checkU32(length, "block length");
  const { buf, view } = frame(type, 12);
  view.setUint32(5, index);
  view.setUint32(9, begin);
  view.setUint32(13, length);
  return buf;
}

/** Encodes a request for `length` bytes at `begin` in piece `index`. */
export function encodeRequest(index: number, begin: number, length: number): Uint8Array {
  return encodeRange(MessageType.REQUEST, index, begin, length);
}

/** A block of a piece: `length` bytes at `begin` in piece `index`. */
export interface BlockRange {
  index: number;
  begin: number;
  length: number;
}

/**
 * Encodes several requests back to back in one buffer, so a pipeline refill is one write (and
 * usually one read on the other side) instead of one per block.
 */
export function encodeRequests(blocks: readonly BlockRange[]): Uint8Array {
  const frameBytes = 5 + 12; // length prefix and type, then index, begin and length
  const out = new Uint8Array(blocks.length * frameBytes);
  blocks.forEach((b, i) => out.set(encodeRequest(b.index, b.begin, b.length), i * frameBytes));
  return out;
}

/** Encodes a cancel of an earlier request. */
export function encodeCancel(index: number, begin: number, length: number): Uint8Array {
  return encodeRange(MessageType.CANCEL, index, begin, length);
}

/** Encodes a reject: the request will not be served (piece not held, or too many in flight). */
export function encodeReject(index: number, begin: number, length: number): Uint8Array {
  return encodeRange(MessageType.REJECT, index, begin, length);
}

/** Encodes a message without payload (choke, unchoke, interested, not interested). */
export function encodeSignal(
  type:
    | typeof MessageType.CHOKE
    | typeof MessageType.UNCHOKE
    | typeof MessageType.INTERESTED
    | typeof MessageType.NOT_INTERESTED,
): Uint8Array {
  return frame(type, 0).buf;
}

/**
 * Encodes a port message: the port the sender accepts peers on, so the receiver can connect
 * back and fetch from it too (swarm peers learn each other without waiting for a tracker).
 */
export function encodePort(port: number): Uint8Array {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`invalid port ${port}`);
  }
  const { buf, view } = frame(MessageType.PORT, 2);
  view.setUint16(5, port);
  return buf;
}

/** Encodes a keep-alive (an empty frame). */
export function encodeKeepAlive(): Uint8Array {
  return new Uint8Array(4);
}

/** Size of a piece frame's header: length, type, index, begin. */
export const PIECE_HEADER_BYTES = 13;

/**
 * Allocates a whole piece frame with its header written, so the sender can read file bytes
 * straight into `data` and send `frame` with a single write, without copying. `reuse`, a frame
 * no longer in use, is rewritten instead when its size fits.
 */
export function allocPieceFrame(
  index: number,
  begin: number,
  length: number,
  reuse?: Uint8Array,
): { frame: Uint8Array; data: Uint8Array } {
  checkU32(index, "piece index");
  checkU32(begin, "block offset");
  if (!(length >= 0 && length <= MAX_BLOCK_BYTES)) {
    throw new RangeError(`block length ${length} out of range`);
  }
  // A spare frame of the right size (one whose send completed) is rewritten in place.
  const { buf, view } = reuse?.length === PIECE_HEADER_BYTES + length
    ? { buf: reuse, view: new DataView(reuse.buffer, reuse.byteOffset, reuse.byteLength) }
    : frame(MessageType.PIECE, 8 + length);
  view.setUint32(0, 9 + length);
  buf[4] = MessageType.PIECE;
  view.setUint32(5, index);
  view.setUint32(9, begin);
  return { frame: buf, data: buf.subarray(PIECE_HEADER_BYTES) };
}

/**
 * Decodes one frame body (type byte and payload).
 *
 * @throws {ProtocolError} when the payload does not fit its type
 */
export function decodeBody(body: Uint8Array): Message {
  if (body.length === 0) return { type: "keepalive" };
  const code = body[0];
  const payload = body.subarray(1);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const need = (n: number, name: string) => {
    if (payload.length !== n) {
      throw new ProtocolError(`${name} message of ${payload.length} bytes, expected ${n}`);
    }
  };
  switch (code) {
    case MessageType.HANDSHAKE: {
      need(HANDSHAKE_PAYLOAD_BYTES, "handshake");
      const magic = payload.subarray(0, PROTOCOL_MAGIC.length);
      if (!magic.every((b, i) => b === PROTOCOL_MAGIC[i])) {
        throw new ProtocolError("not a p2p-share peer (bad protocol id)");
      }
      let at = PROTOCOL_MAGIC.length;
      const version = view.getUint16(at);
      const flags = view.getUint16(at + 2);
      at += 4;
      return {
        type: "handshake",
        version,
        flags,
        infoHash: payload.slice(at, at + INFO_HASH_BYTES),
        peerId: payload.slice(at + INFO_HASH_BYTES, at + INFO_HASH_BYTES + PEER_ID_BYTES),
      };
    }
    case MessageType.ERROR:
      return {
        type: "error",
        message: new TextDecoder().decode(payload.subarray(0, MAX_ERROR_TEXT_BYTES)),
      };
    case MessageType.BITFIELD:
      return { type: "bitfield", bytes: payload.slice() };
    case MessageType.HAVE:
      need(4, "have");
      return { type: "have", index: view.getUint32(0) };
    case MessageType.REQUEST:
    case MessageType.CANCEL:
    case MessageType.REJECT: {
      const type = code === MessageType.REQUEST
        ? "request"
        : code === MessageType.CANCEL
        ? "cancel"
        : "reject";
      need(12, type);
      return {
        type,
        index: view.getUint32(0),
        begin: view.getUint32(4),
        length: view.getUint32(8),
      };
    }
    case MessageType.PIECE:
      if (payload.length < 8) throw new ProtocolError("piece message shorter than its header");
      return {
        type: "piece",
        index: view.getUint32(0),
        begin: view.getUint32(4),
        data: payload.subarray(8),
      };
    case MessageType.CHOKE:
      need(0, "choke");
      return { type: "choke" };
    case MessageType.UNCHOKE:
      need(0, "unchoke");
      return { type: "unchoke" };
    case MessageType.INTERESTED:
      need(0, "interested");
      return { type: "interested" };
    case MessageType.NOT_INTERESTED:
      need(0, "not interested");
      return { type: "not_interested" };
    case MessageType.PORT: {
      need(2, "port");
      const port = view.getUint16(0);
      if (port === 0) throw new ProtocolError("port message with port 0");
      return { type: "port", port };
    }
    default:
      return { type: "unknown", code };
  }
}

/**
 * Incremental frame decoder: feed it chunks as they arrive, take whole frames out.
 * Frames that lie inside one chunk are returned as views (no copy); a frame split across
 * chunks is assembled once into its own buffer.
 */
export class FrameDecoder {
  /** Largest frame length accepted; may be raised after the handshake. */
  maxFrameBytes: number;
  #chunks: Uint8Array[] = [];
  #buffered = 0;

  constructor(maxFrameBytes = MAX_HANDSHAKE_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Adds received bytes. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /**
   * Takes the next whole frame body out, or `undefined` when more bytes are needed.
   *
   * @throws {ProtocolError} when the length prefix exceeds {@linkcode FrameDecoder.maxFrameBytes}
   */
  nextBody(): Uint8Array | undefined {
    if (this.#buffered < 4) return undefined;
    const length = this.#peekLength();
    this.checkLength(length);
    if (this.#buffered < 4 + length) return undefined;
    const first = this.#chunks[0];
    if (first.length >= 4 + length) {
      const body = first.subarray(4, 4 + length);
      this.#consume(4 + length);
      return body;
    }
    this.#consume(4);
    const body = new Uint8Array(length);
    let filled = 0;
    while (filled < length) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length, length - filled);
      body.set(chunk.subarray(0, take), filled);
      filled += take;
      this.#consume(take);
    }
    return body;
  }

  /**
   * Refuses a frame length prefix over {@linkcode FrameDecoder.maxFrameBytes} (or, before the
   * handshake, one that looks like TLS). Public for readers that read frames without `push`.
   *
   * @throws {ProtocolError} when the length is refused
   */
  checkLength(length: number): void {
    if (this.maxFrameBytes === MAX_HANDSHAKE_FRAME_BYTES && looksLikeTlsFrameLength(length)) {
      throw new ProtocolError("tried an encrypted connection; this peer runs without --encrypt");
    }
    if (length > this.maxFrameBytes) {
      throw new ProtocolError(
        `frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`,
      );
    }
  }

  /** Takes the next whole message out, or `undefined` when more bytes are needed. */
  next(): Message | undefined {
    const body = this.nextBody();
    return body === undefined ? undefined : decodeBody(body);
  }

  /**
   * Called at end of stream.
   *
   * @throws {ProtocolError} when the stream was cut in the middle of a frame
   */
  finish(): void {
    if (this.#buffered > 0) {
      throw new ProtocolError(
        `connection closed in the middle of a frame (${this.#buffered} bytes)`,
      );
    }
  }

  #peekLength(): number {
    const head = new Uint8Array(4);
    let filled = 0;
    for (const chunk of this.#chunks) {
      const take = Math.min(chunk.length, 4 - filled);
      head.set(chunk.subarray(0, take), filled);
      filled += take;
      if (filled === 4) break;
    }
    return new DataView(head.buffer).getUint32(0);
  }

  #consume(n: number): void {
    this.#buffered -= n;
    while (n > 0) {
      const chunk = this.#chunks[0];
      if (chunk.length <= n) {
        n -= chunk.length;
        this.#chunks.shift();
      } else {
        this.#chunks[0] = chunk.subarray(n);
        n = 0;
      }
    }
  }
}
