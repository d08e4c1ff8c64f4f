/**
 * @module peer_server
 * Serves verified pieces of a share to peers that connect: handshake, bitfield, then requests
 * answered from positional reads, with a bounded queue of requests per peer, a bounded number
 * of upload slots (choking), a shared upload rate limit, and one bad peer never affecting the
 * others. Does I/O.
 */

import { Bitfield } from "./bitfield.ts";
import { type ChokeCandidate, chooseUnchoked, pickOptimistic } from "./choker.ts";
import { errorMessage, ProtocolError } from "./errors.ts";
import type { EventSink } from "./events.ts";
import { type ByteStream, type ConnTiming, DEFAULT_TIMING, PeerConnection } from "./peer_conn.ts";
import { RateMeter } from "./rate.ts";
import { type RateLimiter, throttle } from "./rate_limit.ts";
import type { PeerSnapshot } from "./snapshot.ts";
import { AuthGate, secureHandshakeAsResponder } from "./secure_handshake.ts";
import type { ShareStorage } from "./storage.ts";
import type { SecureListener, SecureStream } from "./tls_transport.ts";
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
/** Peers uploaded to at once, by default. */
export const DEFAULT_UPLOAD_SLOTS = 4;
/** A peer must complete its handshake this fast. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** How often the upload slots are reconsidered. */
const CHOKE_INTERVAL_MS = 5_000;
/** The optimistic slot moves on every this many rounds. */
const OPTIMISTIC_ROUNDS = 3;

/** Options for {@linkcode PeerServer}. */
export interface PeerServerOptions {
  peerId: Uint8Array;
  sink: EventSink;
  maxConnections?: number;
  timing?: ConnTiming;
  /** Shared limit on everything this program uploads. */
  uploadLimiter?: RateLimiter;
  /** Peers uploaded to at once (default 4). */
  uploadSlots?: number;
  /** True for peers whose data failed verification: they are not served either. */
  isBanned?: (peerId: string) => boolean;
  /** Bytes per second the peer with this id uploads to us (tit for tat); 0 when unknown. */
  rateFromPeer?: (peerId: string) => number;
  /**
   * Encrypted transport: connections come from {@linkcode PeerServer.serveSecure} and each peer
   * must prove it holds the share (the key derived from its metadata) before anything flows;
   * for a private share a stranger gets nothing but a closed connection.
   */
  secure?: { key: CryptoKey; private: boolean };
  /** A connected peer said it accepts peers on `port` at its address: fetch from it too. */
  onPeerListening?: (peer: { hostname: string; port: number }) => void;
}

/** Upload counters. */
export interface UploadStats {
  bytesUploaded: number;
  peers: number;
}

/** One peer connected to us. */
interface Incoming {
  conn: PeerConnection;
  /** The address it connected from (its listening port comes in a PORT message). */
  hostname: string;
  peerId: string;
  peerHas: Bitfield;
  interested: boolean;
  choked: boolean;
  bytesToThem: number;
  meter: RateMeter;
  /** Drops its queued requests (sending REJECT) when it is choked. */
  rejectQueued(): void;
  wake(): void;
}

/** Serves one share (keyed by info hash, so more can be added later) to incoming peers. */
export class PeerServer {
  readonly storage: ShareStorage;
  #infoHash: Uint8Array;
  #options: PeerServerOptions;
  #peers = new Set<Incoming>();
  #pending = new Set<PeerConnection>();
  #tasks = new Set<Promise<void>>();
  #meter = new RateMeter();
  #chokeTimer: ReturnType<typeof setInterval> | undefined;
  #round = 0;
  #optimisticId: string | undefined;
  bytesUploaded = 0;

  constructor(storage: ShareStorage, options: PeerServerOptions) {
    this.storage = storage;
    this.#infoHash = fromHex(storage.meta.infoHash);
    this.#options = options;
  }

  /** Current upload counters. */
  stats(): UploadStats {
    return { bytesUploaded: this.bytesUploaded, peers: this.#peers.size };
  }

  /** Ids of the peers connected to us. */
  peerIds(): string[] {
    return [...new Set([...this.#peers].map((p) => p.peerId))];
  }

  /** Upload rate over the last seconds. */
  uploadRate(): number {
    return this.#meter.rate(performance.now());
  }

  /** Bytes per second we upload to the peer with this id (0 when not connected). */
  rateToPeer(peerId: string): number {
    let rate = 0;
    const now = performance.now();
    for (const p of this.#peers) if (p.peerId === peerId) rate += p.meter.rate(now);
    return rate;
  }

  /** The peers connected to us, for displays. */
  peerSnapshots(): PeerSnapshot[] {
    const now = performance.now();
    return [...this.#peers].map((p) => ({
      address: p.conn.remote,
      direction: "in" as const,
      piecesHeld: p.peerHas.count,
      downloadRateBytesPerSec: 0,
      uploadRateBytesPerSec: Math.round(p.meter.rate(now)),
      choked: p.choked,
      chokingUs: true,
      interested: p.interested,
    }));
  }

  /**
   * Accepts connections until `signal` aborts, then closes every connection and waits for
   * every per-peer task.
   */
  async serve(listener: Deno.Listener, signal: AbortSignal): Promise<void> {
    const onAbort = () => listener.close();
    signal.addEventListener("abort", onAbort, { once: true });
    this.#chokeTimer = setInterval(() => this.#rechoke(), CHOKE_INTERVAL_MS);
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
        const addr = conn.remoteAddr as Deno.NetAddr;
        this.handle(conn, addrText(addr), addr.hostname);
      }
    } finally {
      clearInterval(this.#chokeTimer);
      signal.removeEventListener("abort", onAbort);
      for (const c of this.#pending) c.close("shutting down");
      for (const p of this.#peers) p.conn.close("shutting down");
      await Promise.allSettled([...this.#tasks]);
    }
  }

  /** Like {@linkcode PeerServer.serve}, for an encrypted listener. */
  async serveSecure(listener: SecureListener, signal: AbortSignal): Promise<void> {
    const onAbort = () => listener.close();
    signal.addEventListener("abort", onAbort, { once: true });
    this.#chokeTimer = setInterval(() => this.#rechoke(), CHOKE_INTERVAL_MS);
    try {
      for await (const stream of listener.accept()) {
        if (signal.aborted) {
          stream.close();
          break;
        }
        this.handle(stream, stream.remote, stream.hostname);
      }
    } finally {
      clearInterval(this.#chokeTimer);
      signal.removeEventListener("abort", onAbort);
      listener.close();
      for (const c of this.#pending) c.close("shutting down");
      for (const p of this.#peers) p.conn.close("shutting down");
      await Promise.allSettled([...this.#tasks]);
    }
  }

  /** Takes over one accepted stream (any transport). */
  handle(stream: ByteStream, remote: string, hostname = ""): void {
    const task = this.#servePeer(stream, remote, hostname).finally(() => this.#tasks.delete(task));
    this.#tasks.add(task);
  }

  /** Tells every connected peer that we now hold piece `index`. */
  announceHave(index: number): void {
    for (const p of this.#peers) p.conn.send(encodeHave(index)).catch(() => {});
  }

  /** Closes the connections of a peer that turned out to be bad. */
  dropPeer(peerId: string, reason: string): void {
    for (const p of this.#peers) if (p.peerId === peerId) p.conn.close(reason);
  }

  /**
   * Re-decides the upload slots: tit for tat for most, one optimistic slot rotating every few
   * rounds. Choked peers lose their queued requests (each answered with REJECT).
   */
  #rechoke(): void {
    const slots = this.#options.uploadSlots ?? DEFAULT_UPLOAD_SLOTS;
    const candidates: ChokeCandidate[] = [...this.#peers].map((p) => ({
      id: p.peerId,
      interested: p.interested,
      rateFromThem: this.#options.rateFromPeer?.(p.peerId) ?? 0,
      bytesToThem: p.bytesToThem,
    }));
    if (this.#round++ % OPTIMISTIC_ROUNDS === 0 || this.#optimisticId === undefined) {
      const regular = chooseUnchoked(candidates, { slots: Math.max(1, slots - 1) });
      this.#optimisticId = pickOptimistic(candidates, regular, Math.random);
    }
    const unchoke = chooseUnchoked(candidates, { slots, optimisticId: this.#optimisticId });
    for (const p of this.#peers) {
      const choke = !unchoke.has(p.peerId);
      if (choke === p.choked) continue;
      p.choked = choke;
      p.conn.send(encodeSignal(choke ? MessageType.CHOKE : MessageType.UNCHOKE)).catch(() => {});
      if (choke) p.rejectQueued();
      else p.wake();
    }
  }

  /**
   * A newly interested peer gets a free slot at once, if there is one. Slots count peers, not
   * connections: a peer's parallel connections share its slot.
   */
  #unchokeIfFree(peer: Incoming): void {
    const slots = this.#options.uploadSlots ?? DEFAULT_UPLOAD_SLOTS;
    const unchoked = new Set<string>();
    for (const p of this.#peers) if (!p.choked && p.interested) unchoked.add(p.peerId);
    if (peer.choked && (unchoked.has(peer.peerId) || unchoked.size < slots)) {
      peer.choked = false;
      peer.conn.send(encodeSignal(MessageType.UNCHOKE)).catch(() => {});
      peer.wake();
    }
  }

  async #servePeer(stream: ByteStream, remote: string, hostname: string): Promise<void> {
    const secure = this.#options.secure;
    // Encrypted: the gate holds everything the peer sends until it has proved it holds the share.
    const gate = secure ? new AuthGate(stream) : undefined;
    const conn = new PeerConnection(gate ?? stream, remote, this.#options.timing ?? DEFAULT_TIMING);
    const sink = this.#options.sink;
    if (
      this.#peers.size + this.#pending.size >=
        (this.#options.maxConnections ?? DEFAULT_MAX_CONNECTIONS)
    ) {
      await conn.sendErrorAndClose("too many connections, try later");
      return;
    }
    this.#pending.add(conn);
    const handshakeTimer = setTimeout(
      () => conn.close("handshake timed out"),
      HANDSHAKE_TIMEOUT_MS,
    );
    let peer: Incoming | undefined;
    try {
      const ours = this.storage.meta.infoHash;
      const hello = secure && gate
        ? await secureHandshakeAsResponder(conn, {
          gate,
          accept: (theirs) =>
            theirs === ours
              ? { key: secure.key, ourInfoHash: this.#infoHash, private: secure.private }
              : undefined,
          peerId: this.#options.peerId,
          localFp: (stream as SecureStream).localCertFingerprint,
          peerFp: (stream as SecureStream).peerCertFingerprint,
          privateOnly: secure.private,
        })
        : await conn.handshakeAsResponder(
          (theirs) => theirs === ours ? this.#infoHash : undefined,
          this.#options.peerId,
        );
      clearTimeout(handshakeTimer);
      if (this.#options.isBanned?.(hello.peerId)) {
        throw new ProtocolError(`banned: peer ${remote} sent data that failed verification`);
      }
      peer = {
        conn,
        hostname,
        peerId: hello.peerId,
        peerHas: new Bitfield(this.storage.layout.pieceCount),
        interested: false,
        choked: true,
        bytesToThem: 0,
        meter: new RateMeter(),
        rejectQueued: () => {},
        wake: () => {},
      };
      this.#pending.delete(conn);
      this.#peers.add(peer);
      sink.emit({ event: "peer_connected", peer: remote, direction: "in" });
      await conn.send(encodeBitfield(this.storage.have.bytes));
      await this.#serveRequests(peer);
      sink.emit({ event: "peer_disconnected", peer: remote, reason: "closed by peer" });
    } catch (err) {
      const reason = errorMessage(err);
      if (peer) sink.emit({ event: "peer_disconnected", peer: remote, reason });
      else {sink.emit({
          event: "warning",
          message: `rejected connection from ${remote}: ${reason}`,
        });}
      if (err instanceof ProtocolError && !conn.closed) await conn.sendErrorAndClose(reason);
    } finally {
      clearTimeout(handshakeTimer);
      conn.close();
      this.#pending.delete(conn);
      if (peer) this.#peers.delete(peer);
    }
  }

  /**
   * Reads requests and answers them in order. A second task sends while this one reads, so a
   * peer can keep many requests in flight; the queue is bounded, and only an unchoked peer is
   * served.
   */
  async #serveRequests(peer: Incoming): Promise<void> {
    const { conn } = peer;
    const storage = this.storage;
    const queue: { index: number; begin: number; length: number }[] = [];
    let wake: (() => void) | undefined;
    let receiving = true;
    peer.wake = () => wake?.();
    peer.rejectQueued = () => {
      for (const r of queue.splice(0)) {
        conn.send(encodeReject(r.index, r.begin, r.length)).catch(() => {});
      }
    };

    const sender = (async () => {
      let pending: Promise<void> = Promise.resolve();
      // Two frames alternate (one sending, one being read into) where the transport allows:
      // a fresh 256 KiB frame per block is garbage V8 frees late, and kept the seeder's RSS
      // near 150 MB for a 1 GiB download.
      let sending: Uint8Array | undefined;
      let spare: Uint8Array | undefined;
      while (receiving || queue.length > 0) {
        const req = peer.choked ? undefined : queue.shift();
        if (!req) {
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        await throttle(this.#options.uploadLimiter, req.length);
        if (conn.closed) return;
        const { frame, data } = allocPieceFrame(req.index, req.begin, req.length, spare);
        spare = undefined;
        await storage.readBlock(req.index, req.begin, data);
        await pending; // one write in flight while the next block is read
        if (conn.closed) return;
        if (conn.sentFramesReusable) spare = sending; // its send has completed
        sending = frame;
        pending = conn.send(frame);
        // Awaited before the next write; until then a broken pipe must not go unhandled.
        pending.catch(() => {});
        this.bytesUploaded += req.length;
        peer.bytesToThem += req.length;
        const now = performance.now();
        this.#meter.add(req.length, now);
        peer.meter.add(req.length, now);
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
            if (!storage.have.has(msg.index) || peer.choked) {
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
          case "interested":
            peer.interested = true;
            this.#unchokeIfFree(peer);
            break;
          case "not_interested":
            peer.interested = false;
            break;
          case "port":
            this.#options.onPeerListening?.({ hostname: peer.hostname, port: msg.port });
            break;
          case "bitfield":
            try {
              peer.peerHas = Bitfield.fromBytes(msg.bytes, storage.layout.pieceCount);
            } catch (err) {
              throw new ProtocolError(`bad bitfield: ${errorMessage(err)}`);
            }
            break;
          case "have":
            if (msg.index >= storage.layout.pieceCount) {
              throw new ProtocolError(`have for piece ${msg.index} out of range`);
            }
            peer.peerHas.set(msg.index);
            break;
          case "error":
            throw new ProtocolError(`peer said: ${msg.message}`);
          case "handshake":
            throw new ProtocolError("second handshake");
          default:
            // keep-alive, choke/unchoke and unknown messages need no answer from an uploader
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
