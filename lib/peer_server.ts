/**
 * @module peer_server
 * Serves verified pieces of a share to peers that connect: handshake, bitfield, then requests
 * answered from positional reads, a bounded queue of requests per peer, and one bad peer never
 * affecting the others. Does I/O.
 */

import { Bitfield } from "./bitfield.ts";
import { errorMessage, ProtocolError } from "./errors.ts";
import type { EventSink } from "./events.ts";
import { type ByteStream, type ConnTiming, DEFAULT_TIMING, PeerConnection } from "./peer_conn.ts";
import type { ShareStorage } from "./storage.ts";
import { fromHex } from "./units.ts";
import {
  allocPieceFrame,
  encodeBitfield,
  encodeHave,
  encodeReject,
  encodeSignal,
  MAX_BLOCK_BYTES,
  MessageType,
} from "./wire.ts";

/** Most requests a peer may have queued with us; more is a protocol violation. */
export const MAX_QUEUED_REQUESTS = 256;
/** Most peers served at once; more are told so and closed. */
export const DEFAULT_MAX_CONNECTIONS = 64;
/** A peer must complete its handshake this fast. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Options for {@linkcode PeerServer}. */
export interface PeerServerOptions {
  peerId: Uint8Array;
  sink: EventSink;
  maxConnections?: number;
  timing?: ConnTiming;
}

/** Upload counters. */
export interface UploadStats {
  bytesUploaded: number;
  peers: number;
}

/** Serves one share (keyed by info hash, so more can be added later) to incoming peers. */
export class PeerServer {
  readonly storage: ShareStorage;
  #infoHash: Uint8Array;
  #options: PeerServerOptions;
  #connections = new Set<PeerConnection>();
  #tasks = new Set<Promise<void>>();
  bytesUploaded = 0;

  constructor(storage: ShareStorage, options: PeerServerOptions) {
    this.storage = storage;
    this.#infoHash = fromHex(storage.meta.infoHash);
    this.#options = options;
  }

  /** Current upload counters. */
  stats(): UploadStats {
    return { bytesUploaded: this.bytesUploaded, peers: this.#connections.size };
  }

  /**
   * Accepts connections until `signal` aborts, then closes every connection and waits for
   * every per-peer task.
   */
  async serve(listener: Deno.Listener, signal: AbortSignal): Promise<void> {
    const onAbort = () => listener.close();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        let conn: Deno.Conn;
        try {
          conn = await listener.accept();
        } catch (err) {
          if (signal.aborted) break;
          if (err instanceof Deno.errors.BadResource) break;
          this.#options.sink.emit({
            event: "warning",
            message: `accept failed: ${errorMessage(err)}`,
          });
          continue;
        }
        this.handle(conn, addrText(conn.remoteAddr));
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      for (const c of this.#connections) c.close("shutting down");
      await Promise.allSettled([...this.#tasks]);
    }
  }

  /** Takes over one accepted stream (any transport). */
  handle(stream: ByteStream, remote: string): void {
    const task = this.#servePeer(stream, remote).finally(() => this.#tasks.delete(task));
    this.#tasks.add(task);
  }

  /** Tells every connected peer that we now hold piece `index`. */
  announceHave(index: number): void {
    for (const c of this.#connections) c.send(encodeHave(index)).catch(() => {});
  }

  async #servePeer(stream: ByteStream, remote: string): Promise<void> {
    const conn = new PeerConnection(stream, remote, this.#options.timing ?? DEFAULT_TIMING);
    const sink = this.#options.sink;
    if (this.#connections.size >= (this.#options.maxConnections ?? DEFAULT_MAX_CONNECTIONS)) {
      await conn.sendErrorAndClose("too many connections, try later");
      return;
    }
    this.#connections.add(conn);
    const handshakeTimer = setTimeout(
      () => conn.close("handshake timed out"),
      HANDSHAKE_TIMEOUT_MS,
    );
    let connected = false;
    try {
      const ours = this.storage.meta.infoHash;
      await conn.handshakeAsResponder(
        (theirs) => theirs === ours ? this.#infoHash : undefined,
        this.#options.peerId,
      );
      clearTimeout(handshakeTimer);
      connected = true;
      sink.emit({ event: "peer_connected", peer: remote, direction: "in" });
      await conn.send(encodeBitfield(this.storage.have.bytes));
      await conn.send(encodeSignal(MessageType.UNCHOKE));
      await this.#serveRequests(conn);
      sink.emit({ event: "peer_disconnected", peer: remote, reason: "closed by peer" });
    } catch (err) {
      const reason = errorMessage(err);
      if (connected) sink.emit({ event: "peer_disconnected", peer: remote, reason });
      else {sink.emit({
          event: "warning",
          message: `rejected connection from ${remote}: ${reason}`,
        });}
      if (err instanceof ProtocolError && !conn.closed) await conn.sendErrorAndClose(reason);
    } finally {
      clearTimeout(handshakeTimer);
      conn.close();
      this.#connections.delete(conn);
    }
  }

  /**
   * Reads requests and answers them in order. A second task sends while this one reads, so a
   * peer can keep many requests in flight; the queue is bounded.
   */
  async #serveRequests(conn: PeerConnection): Promise<void> {
    const storage = this.storage;
    const queue: { index: number; begin: number; length: number }[] = [];
    let wake: (() => void) | undefined;
    let receiving = true;
    let peerHas = new Bitfield(storage.layout.pieceCount);

    const sender = (async () => {
      let pending: Promise<void> = Promise.resolve();
      while (receiving || queue.length > 0) {
        const req = queue.shift();
        if (!req) {
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        const { frame, data } = allocPieceFrame(req.index, req.begin, req.length);
        await storage.readBlock(req.index, req.begin, data);
        await pending; // one write in flight while the next block is read
        if (conn.closed) return;
        pending = conn.send(frame);
        this.bytesUploaded += req.length;
      }
      await pending;
    })();
    sender.catch(() => conn.close("send failed"));

    try {
      for await (const msg of conn.messages()) {
        switch (msg.type) {
          case "request": {
            if (
              msg.length > MAX_BLOCK_BYTES ||
              !storage.layout.validBlock(msg.index, msg.begin, msg.length)
            ) {
              throw new ProtocolError(
                `invalid request: piece ${msg.index} at ${msg.begin} for ${msg.length} bytes`,
              );
            }
            if (!storage.have.has(msg.index)) {
              await conn.send(encodeReject(msg.index, msg.begin, msg.length));
              break;
            }
            if (queue.length >= MAX_QUEUED_REQUESTS) {
              throw new ProtocolError(`more than ${MAX_QUEUED_REQUESTS} requests in flight`);
            }
            queue.push({ index: msg.index, begin: msg.begin, length: msg.length });
            wake?.();
            break;
          }
          case "cancel": {
            const at = queue.findIndex((r) =>
              r.index === msg.index && r.begin === msg.begin && r.length === msg.length
            );
            if (at >= 0) queue.splice(at, 1);
            break;
          }
          case "bitfield":
            try {
              peerHas = Bitfield.fromBytes(msg.bytes, storage.layout.pieceCount);
            } catch (err) {
              throw new ProtocolError(`bad bitfield: ${errorMessage(err)}`);
            }
            break;
          case "have":
            if (msg.index >= storage.layout.pieceCount) {
              throw new ProtocolError(`have for piece ${msg.index} out of range`);
            }
            peerHas.set(msg.index);
            break;
          case "error":
            throw new ProtocolError(`peer said: ${msg.message}`);
          case "handshake":
            throw new ProtocolError("second handshake");
          default:
            // keep-alive, interest and unknown messages need no answer from a seeder
            break;
        }
      }
    } finally {
      receiving = false;
      queue.length = 0;
      wake?.();
      await sender.catch(() => {});
    }
  }
}

/** `host:port` of a network address (IPv6 in brackets). */
export function addrText(addr: Deno.Addr): string {
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
  }
  return addr.transport;
}
