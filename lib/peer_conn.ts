/**
 * @module peer_conn
 * One peer connection over any pair of byte streams (TCP now, TLS later): framed sends through
 * one writer so backpressure holds, framed receives through the bounded decoder, the handshake,
 * keep-alives, and an idle watchdog so a silent peer cannot hang anything. Does I/O.
 */

import { ProtocolError } from "./errors.ts";
import { toHex } from "./units.ts";
import {
  decodeBody,
  encodeError,
  encodeHandshake,
  encodeKeepAlive,
  FrameDecoder,
  MAX_FRAME_BYTES,
  type Message,
  PROTOCOL_VERSION,
} from "./wire.ts";

/** What a connection runs over: `Deno.Conn` and `Deno.TlsConn` both fit. */
export interface ByteStream {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  close(): void;
  /**
   * Reads straight into `p` (as `Deno.Conn` does), bypassing `readable`. When present it is
   * used instead of `readable`, which is then never touched.
   */
  read?(p: Uint8Array): Promise<number | null>;
  /**
   * True when a write, once resolved, no longer holds its chunk, so the chunk may be reused;
   * false when the transport may still read it. Unset: true for a byte stream (`Deno.Conn`,
   * whose writes resolve after every byte left the buffer), false otherwise.
   */
  writeReleasesBuffer?: boolean;
}

/** Timing of a connection. */
export interface ConnTiming {
  /** Close when nothing at all was received for this long. */
  idleTimeoutMs: number;
  /** Send a keep-alive when nothing was sent for this long. */
  keepAliveMs: number;
}

/** Defaults: a peer silent for 45 s is gone; we speak at least every 15 s. */
export const DEFAULT_TIMING: ConnTiming = { idleTimeoutMs: 45_000, keepAliveMs: 15_000 };

/** The other side's handshake. */
export interface RemoteHello {
  infoHash: string;
  peerId: string;
  version: number;
}

/** Frames from this size up are handed out in buffers that may be recycled. */
const MIN_POOLED_BODY = 16 * 1024;
/** Bytes of recycled bodies a connection keeps by default (a pipeline and the writes in flight). */
const MAX_POOLED_BYTES = 4 * 1024 * 1024;

/**
 * Frame bodies given back for reuse, by size, up to a byte limit. One per connection by default;
 * a downloader shares one between its connections (see `BufferPool` users), so how much is kept
 * does not grow with `--parallel`, and a connection short of buffers takes another's spares.
 */
export class BufferPool {
  readonly maxBytes: number;
  #buffers: ArrayBuffer[] = [];
  #bytes = 0;

  constructor(maxBytes = MAX_POOLED_BYTES) {
    this.maxBytes = maxBytes;
  }

  /** A kept buffer of exactly `byteLength` bytes, or `undefined`. */
  take(byteLength: number): ArrayBuffer | undefined {
    const at = this.#buffers.findIndex((b) => b.byteLength === byteLength);
    if (at < 0) return undefined;
    const [buf] = this.#buffers.splice(at, 1);
    this.#bytes -= buf.byteLength;
    return buf;
  }

  /** Keeps `buf` for reuse unless that would pass the limit. */
  give(buf: ArrayBuffer): void {
    if (this.#bytes + buf.byteLength > this.maxBytes) return;
    this.#buffers.push(buf);
    this.#bytes += buf.byteLength;
  }
}

/** A framed, watched connection to one peer. */
export class PeerConnection {
  /** `host:port` of the other side, for messages. */
  readonly remote: string;
  #stream: ByteStream;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #reader?: ReadableStreamDefaultReader<Uint8Array>;
  /**
   * On a byte stream (Deno's TCP), frames are read straight into buffers of their own size, so
   * no 64 KiB chunk is allocated per read and no frame is copied together from chunks.
   */
  #byob?: ReadableStreamBYOBReader;
  /**
   * Direct reads (`Deno.Conn`): no stream machinery per read, and a body is read together with
   * the next frame's length prefix, so a 256 KiB block costs one read instead of two (measured:
   * about 4,000 of 8,200 reads per GiB were 4-byte prefixes).
   */
  #read?: (p: Uint8Array) => Promise<number | null>;
  /** Reused for the 4-byte length prefix (a BYOB read hands back a new view of it). */
  #head = new Uint8Array(4);
  /** Bytes of the next prefix already in `#head` (direct reads only). */
  #headHave = 0;
  /**
   * Bodies of large frames given back by {@linkcode PeerConnection.recycle}. Each 256 KiB
   * block allocated afresh is an ArrayBuffer outside the V8 heap that V8 only frees at its
   * next GC, which it starts after about 64 MB more of them: reusing bodies keeps a download's
   * RSS near what is live (measured: 170-190 MB peak down to ~110 MB for 1 GiB).
   */
  #pool: BufferPool;
  /** Bodies this connection handed out and may take back. */
  #issued = new WeakSet<ArrayBuffer>();
  #decoder = new FrameDecoder();
  #lastReceivedMs = performance.now();
  #lastSentMs = performance.now();
  #watchdog: ReturnType<typeof setInterval>;
  #closed = false;
  #closeReason = "";
  /** Bytes received and sent, including framing. */
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    stream: ByteStream,
    remote: string,
    timing: ConnTiming = DEFAULT_TIMING,
    pool: BufferPool = new BufferPool(),
  ) {
    this.#pool = pool;
    this.#stream = stream;
    this.remote = remote;
    this.#writer = stream.writable.getWriter();
    if (typeof stream.read === "function") {
      this.#read = stream.read.bind(stream);
    } else {
      try {
        this.#byob = stream.readable.getReader({ mode: "byob" });
      } catch {
        // Not a byte stream (tests' in-memory pairs): whole chunks through the decoder.
        this.#reader = stream.readable.getReader();
      }
    }
    const tick = Math.max(50, Math.min(timing.keepAliveMs, timing.idleTimeoutMs) / 3);
    this.#watchdog = setInterval(() => {
      const now = performance.now();
      if (now - this.#lastReceivedMs > timing.idleTimeoutMs) {
        this.close(`no data for ${timing.idleTimeoutMs / 1000}s (peer stalled)`);
      } else if (now - this.#lastSentMs > timing.keepAliveMs) {
        this.send(encodeKeepAlive()).catch(() => {});
      }
    }, tick);
  }

  /** True once closed (by either side or the watchdog). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Why the connection was closed locally, if it was. */
  get closeReason(): string {
    return this.#closeReason;
  }

  /** Sends one encoded frame; resolves when the transport has taken it. */
  send(frame: Uint8Array): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new ProtocolError(`connection to ${this.remote} is closed`));
    }
    this.#lastSentMs = performance.now();
    this.bytesOut += frame.length;
    return this.#writer.write(frame);
  }

  /** True when a frame may be reused once its `send` has resolved (see `ByteStream`). */
  get sentFramesReusable(): boolean {
    return this.#stream.writeReleasesBuffer ??
      (this.#byob !== undefined || this.#read !== undefined);
  }

  /** Resolves when the transport can take more without queueing (backpressure). */
  get ready(): Promise<void> {
    return this.#writer.ready;
  }

  /**
   * Receives the next message, or `undefined` at a clean end of stream.
   *
   * @throws {ProtocolError} on a malformed or oversized frame, or a stream cut mid-frame
   */
  async receive(): Promise<Message | undefined> {
    if (this.#read) return await this.#receiveDirect(this.#read);
    if (this.#byob) return await this.#receiveByob(this.#byob);
    for (;;) {
      const body = this.#decoder.nextBody();
      if (body !== undefined) return decodeBody(body);
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await this.#reader!.read();
      } catch (err) {
        throw this.#readFailed(err);
      }
      if (chunk.done) {
        if (this.#closed && this.#closeReason) throw new ProtocolError(this.#closeReason);
        this.#decoder.finish();
        return undefined;
      }
      this.#lastReceivedMs = performance.now();
      this.bytesIn += chunk.value.length;
      this.#decoder.push(chunk.value);
    }
  }

  /**
   * Gives back the buffer of a received PIECE's `data` once nothing uses it any more (written
   * and hashed), for the next frame of its size. Only buffers this connection handed out are
   * taken; anything else is ignored.
   */
  recycle(data: Uint8Array): void {
    const buf = data.buffer as ArrayBuffer;
    if (!this.#issued.has(buf)) return;
    this.#issued.delete(buf);
    this.#pool.give(buf);
  }

  /** The error a failed read becomes: why we closed, or that the connection was lost. */
  #readFailed(err: unknown): ProtocolError {
    if (this.#closed) {
      return new ProtocolError(this.#closeReason || "connection closed", { cause: err });
    }
    return new ProtocolError(`connection to ${this.remote} lost: ${(err as Error).message}`, {
      cause: err,
    });
  }

  /** {@linkcode PeerConnection.receive} on a byte stream: prefix, then body in place. */
  async #receiveByob(reader: ReadableStreamBYOBReader): Promise<Message | undefined> {
    const head = await this.#fill(reader, this.#head, 0);
    if (head === undefined) return undefined;
    this.#head = head;
    const length = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
    this.#decoder.checkLength(length);
    let body = new Uint8Array(0);
    if (length > 0) {
      const pooled = this.#pool.take(length);
      const filled = await this.#fill(reader, new Uint8Array(pooled ?? new ArrayBuffer(length)), 4);
      // The prefix was read, so an end of stream here is mid-frame and #fill throws.
      body = filled!;
      if (length >= MIN_POOLED_BODY) this.#issued.add(body.buffer);
    }
    return decodeBody(body);
  }

  /**
   * {@linkcode PeerConnection.receive} with direct reads. Every body buffer has 4 bytes of room
   * after the body, so the read that ends a body may also bring (part of) the next prefix; a
   * read never asks for more than that, so no byte of the next body is taken early.
   */
  async #receiveDirect(
    read: (p: Uint8Array) => Promise<number | null>,
  ): Promise<Message | undefined> {
    while (this.#headHave < 4) {
      const n = await this.#readDirect(read, this.#head.subarray(this.#headHave));
      if (n === null) {
        if (this.#headHave === 0) return undefined;
        throw new ProtocolError(
          `connection closed in the middle of a frame (${this.#headHave} bytes)`,
        );
      }
      this.#headHave += n;
    }
    const length = new DataView(this.#head.buffer).getUint32(0);
    this.#decoder.checkLength(length);
    this.#headHave = 0;
    if (length === 0) return decodeBody(new Uint8Array(0));
    const room = length + 4;
    const pooled = length >= MIN_POOLED_BODY ? this.#pool.take(room) : undefined;
    const buffer = pooled ?? new ArrayBuffer(room);
    let filled = 0;
    while (filled < length) {
      const n = await this.#readDirect(read, new Uint8Array(buffer, filled, room - filled));
      if (n === null) {
        throw new ProtocolError(`connection closed in the middle of a frame (${4 + filled} bytes)`);
      }
      filled += n;
    }
    if (filled > length) {
      this.#head.set(new Uint8Array(buffer, length, filled - length));
      this.#headHave = filled - length;
    }
    const body = new Uint8Array(buffer, 0, length);
    if (length >= MIN_POOLED_BODY) this.#issued.add(buffer);
    return decodeBody(body);
  }

  /** One direct read: `null` at the end of the stream, a {@linkcode ProtocolError} on failure. */
  async #readDirect(
    read: (p: Uint8Array) => Promise<number | null>,
    view: Uint8Array,
  ): Promise<number | null> {
    let n: number | null;
    try {
      n = await read(view);
    } catch (err) {
      // As in #fill: Deno's TLS reports a peer gone without close_notify as UnexpectedEof.
      if (!(err instanceof Deno.errors.UnexpectedEof)) throw this.#readFailed(err);
      n = null;
    }
    if (n === null) {
      if (this.#closed && this.#closeReason) throw new ProtocolError(this.#closeReason);
      return null;
    }
    this.#lastReceivedMs = performance.now();
    this.bytesIn += n;
    return n;
  }

  /**
   * Fills `view` from the stream; returns the filled view (BYOB reads move the buffer), or
   * `undefined` at a clean end of stream before any byte of a frame (`before` bytes of the
   * frame already read).
   */
  async #fill(
    reader: ReadableStreamBYOBReader,
    view: Uint8Array<ArrayBuffer>,
    before: number,
  ): Promise<Uint8Array<ArrayBuffer> | undefined> {
    // Taken first: a BYOB read detaches `view`, which then reads as empty.
    let buffer = view.buffer;
    const offset = view.byteOffset;
    const length = view.length;
    let filled = 0;
    while (filled < length) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read(
          new Uint8Array(buffer, offset + filled, length - filled),
        );
      } catch (err) {
        // Deno's TLS reports a peer that closed without a TLS close_notify (as `node:tls`
        // peers do) as an error: an end like any other, checked below for a cut frame.
        if (!(err instanceof Deno.errors.UnexpectedEof)) throw this.#readFailed(err);
        chunk = { done: true, value: undefined };
      }
      if (chunk.done) {
        if (this.#closed && this.#closeReason) throw new ProtocolError(this.#closeReason);
        if (before + filled > 0) {
          throw new ProtocolError(
            `connection closed in the middle of a frame (${before + filled} bytes)`,
          );
        }
        return undefined;
      }
      buffer = chunk.value.buffer as ArrayBuffer;
      this.#lastReceivedMs = performance.now();
      this.bytesIn += chunk.value.length;
      filled += chunk.value.length;
    }
    return new Uint8Array(buffer, offset, length);
  }

  /** Iterates messages until the stream ends. */
  async *messages(): AsyncGenerator<Message> {
    for (;;) {
      const message = await this.receive();
      if (message === undefined) return;
      yield message;
    }
  }

  /**
   * Opens the conversation from our side: send our handshake, then read theirs.
   *
   * @throws {ProtocolError} when the peer refuses or answers for another share
   */
  async handshakeAsInitiator(infoHash: Uint8Array, peerId: Uint8Array): Promise<RemoteHello> {
    await this.send(encodeHandshake(infoHash, peerId));
    const hello = await this.#readHello();
    if (hello.infoHash !== toHex(infoHash)) {
      const message = `peer ${this.remote} serves another share (info hash ${hello.infoHash})`;
      await this.sendErrorAndClose(`info hash mismatch: expected ${toHex(infoHash)}`);
      throw new ProtocolError(message);
    }
    return hello;
  }

  /**
   * Answers a conversation the peer opened: read their handshake, accept it only when
   * `accept` knows the share, then send ours.
   *
   * @param accept returns our info hash for a share we serve, or `undefined`
   * @throws {ProtocolError} when the peer asks for a share we do not serve
   */
  async handshakeAsResponder(
    accept: (infoHash: string) => Uint8Array | undefined,
    peerId: Uint8Array,
  ): Promise<RemoteHello> {
    const hello = await this.#readHello();
    const ours = accept(hello.infoHash);
    if (!ours) {
      await this.sendErrorAndClose(
        `info hash mismatch: this peer does not serve ${hello.infoHash}`,
      );
      throw new ProtocolError(
        `peer ${this.remote} asked for unknown share ${hello.infoHash} (info hash mismatch)`,
      );
    }
    await this.send(encodeHandshake(ours, peerId));
    return hello;
  }

  /** Tells the peer why we hang up, then closes (best effort: never throws). */
  async sendErrorAndClose(message: string): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      if (!this.#closed) {
        await Promise.race([
          this.send(encodeError(message)),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000))),
        ]);
      }
    } catch {
      // The peer may already be gone; closing is all that is left.
    } finally {
      clearTimeout(timer);
    }
    this.close(message);
  }

  /** Closes the connection and stops its watchdog (idempotent). */
  close(reason = ""): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    clearInterval(this.#watchdog);
    try {
      this.#stream.close();
    } catch {
      // Already closed by the other side.
    }
  }

  async #readHello(): Promise<RemoteHello> {
    const message = await this.receive();
    if (message === undefined) {
      throw new ProtocolError(`peer ${this.remote} closed the connection during the handshake`);
    }
    if (message.type === "error") {
      throw new ProtocolError(`peer ${this.remote} refused: ${message.message}`);
    }
    if (message.type !== "handshake") {
      throw new ProtocolError(`peer ${this.remote} sent ${message.type} before the handshake`);
    }
    if (message.version !== PROTOCOL_VERSION) {
      await this.sendErrorAndClose(`unsupported protocol version ${message.version}`);
      throw new ProtocolError(
        `peer ${this.remote} speaks protocol version ${message.version}, we speak ${PROTOCOL_VERSION}`,
      );
    }
    this.#decoder.maxFrameBytes = MAX_FRAME_BYTES;
    return {
      infoHash: toHex(message.infoHash),
      peerId: toHex(message.peerId),
      version: message.version,
    };
  }
}

/** A random 20-byte peer id. */
export function newPeerId(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(20));
}
