/**
 * @module downloader
 * Runs one download: connections to peers, the piece picker, verification of every piece before
 * it counts, storage, progress events and the final rename. Each connection is one task; a
 * peer's misbehaviour ends that task only. Does I/O.
 */

import { Bitfield } from "./bitfield.ts";
import { errorMessage, ProtocolError } from "./errors.ts";
import type { EventSink } from "./events.ts";
import { createHash, type Hash } from "node:crypto";
import { digestsEqual } from "./hash.ts";
import {
  BufferPool,
  type ByteStream,
  type ConnTiming,
  DEFAULT_TIMING,
  newPeerId,
  PeerConnection,
} from "./peer_conn.ts";
import { PiecePicker } from "./picker.ts";
import { pipelineBytes } from "./pipeline.ts";
import { RateMeter } from "./rate.ts";
import { AuthGate, secureHandshakeAsInitiator } from "./secure_handshake.ts";
import type { SecureStream } from "./tls_transport.ts";
import type { RateLimiter } from "./rate_limit.ts";
import { type PeerSnapshot, PieceState } from "./snapshot.ts";
import type { ShareStorage } from "./storage.ts";
import { fromHex } from "./units.ts";
import {
  type BlockRange,
  encodeCancel,
  encodePort,
  encodeRequests,
  encodeSignal,
  MessageType,
} from "./wire.ts";

/**
 * Size of one request, at most (a piece smaller than this is one request). Large blocks keep
 * the per-message cost low on fast links, but not larger: 512 KiB and 1 MiB blocks were no
 * faster in plaintext (1 GiB, 5 alternating runs: median 1.82 against 1.84 s) and made the
 * encrypted download slower (4 alternating runs: 3.33 against 2.47 s, with twice the system
 * time; reading the TLS stream in 64 KiB steps did not change that).
 */
export const BLOCK_BYTES = 256 * 1024;
/** Requests kept in flight per connection at most: well under the seeder's queue limit. */
const MAX_REQUESTS_IN_FLIGHT = 128;
/** Pieces waiting for their hash at once per connection before it stops reading (memory bound). */
const MAX_VERIFYING_PER_CONN = 4;
/**
 * Bytes of end-game duplicates held in memory at once, across connections. A duplicate holds
 * its whole piece until it verifies: without a bound, eight connections on a share with 64 MiB
 * pieces could hold 512 MiB at the end.
 */
const MAX_DUPLICATE_BYTES = 16 * 1024 * 1024;
/**
 * Bytes of block writes in flight, all connections together, before a connection with writes of
 * its own in flight stops reading. Per connection (4 MiB each) it grew with `--parallel`: a
 * 4 GiB download at `--parallel 8` peaked at 130-146 MB, and 112-117 MB with this. 4 MiB in all
 * was slower (1 GiB at `--parallel 4`: 1.57 s against 1.41 s).
 */
const MAX_WRITE_BYTES = 8 * 1024 * 1024;
/** Received block buffers kept for reuse, all connections together: the writes and pipelines. */
const MAX_POOLED_BODY_BYTES = 16 * 1024 * 1024;
/** How long a connection attempt may take. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Reconnect attempts to a peer after a connection is lost. */
const MAX_RECONNECTS = 5;
/** A peer given up on (unreachable, or useless) is not tried again for this long. */
const ABANDON_MS = 60_000;
/** A connection with requests out that receives no block for this long is stalled. */
const DEFAULT_REQUEST_TIMEOUT_MS = 20_000;
/** How often progress events are emitted. */
const PROGRESS_INTERVAL_MS = 250;
/**
 * How often the state file is rewritten at most (each write syncs the data first; nothing is
 * done while no piece was verified since). The storage itself keeps little data unsynced (it
 * starts a sync every 32 MiB written), so the final sync has little to wait for without the
 * state file being rewritten often: 1.49-1.50 s for 1 GiB against 1.53-1.54 s when every 150 ms
 * rewrite carried the syncs (two batches of 5-6 rounds taking turns).
 */
const STATE_FLUSH_INTERVAL_MS = 500;

/** A peer to fetch from. */
export interface PeerAddress {
  hostname: string;
  port: number;
}

/** Opens a byte stream to a peer; replaced by TLS later, or by in-memory pairs in tests. */
export type Dialer = (peer: PeerAddress, signal: AbortSignal) => Promise<ByteStream>;

/** Plain TCP dialer. */
export const tcpDialer: Dialer = async (peer, signal) => {
  const conn = await Deno.connect({ hostname: peer.hostname, port: peer.port, signal });
  try {
    conn.setNoDelay(true);
  } catch {
    // Not every transport has Nagle's algorithm to turn off.
  }
  return conn;
};

/** Options for {@linkcode runDownload}. */
export interface DownloadOptions {
  peers: PeerAddress[];
  /** Connections in total (spread over the peers). */
  connections: number;
  sink: EventSink;
  signal: AbortSignal;
  dialer?: Dialer;
  timing?: ConnTiming;
  /** How long to wait for a useful peer before giving up (0: give up at once, no peer source). */
  waitForPeersMs?: number;
  /** Most peers connected at once (default: `connections`). */
  maxPeers?: number;
  /** Our peer id (so a tracker and peers see one identity). */
  peerId?: Uint8Array;
  /** Encrypted transport (with a TLS `dialer`): prove we hold the share with this key. */
  secure?: { key: CryptoKey };
  /** The port we accept peers on, told to every peer we connect to (swarm). */
  listenPort?: number;
  /** Called after each verified piece is stored (to tell our own uploaders). */
  onPieceStored?: (index: number) => void;
  /** Called when a peer is banned for bad data (to stop serving it too). */
  onPeerBanned?: (peerId: string) => void;
  /** Shared limit on everything this program downloads. */
  downloadLimiter?: RateLimiter;
  /** What we upload meanwhile, for progress events. */
  uploads?: { bytesUploaded: number; uploadRate(): number; peerIds(): string[] };
  /** A connection with requests out that receives no block for this long is dropped. */
  requestTimeoutMs?: number;
}

/** What a finished download reports. */
export interface DownloadResult {
  path: string;
  bytes: number;
  /** Bytes of the pieces fetched in this run (less than `bytes` after a resume). */
  bytesFetched: number;
  piecesFetched: number;
  piecesTotal: number;
  seconds: number;
}

/** Per-peer knowledge shared by all connections to that peer. */
interface PeerRecord {
  key: string;
  /** Pieces whose data from this peer failed verification: never asked of it again. */
  failed: Set<number>;
  hashFailures: number;
  banned: boolean;
  /** Not tried again before this time (performance.now()), after it was given up on. */
  abandonedUntilMs: number;
  lastWarning?: string;
}

/** One piece being assembled on a connection. */
interface Assembly {
  index: number;
  size: number;
  /** Outstanding block requests, keyed by begin offset. */
  pending: Map<number, number>;
  /** SHA-256 of the bytes received so far, fed in order. */
  hasher: Hash;
  /** Bytes fed to the hasher: blocks arriving ahead of it wait in `early`. */
  hashedTo: number;
  early: Map<number, Uint8Array>;
  /**
   * An end-game duplicate keeps its blocks here and writes them only if it verifies first, so a
   * bad second copy can never land on disk over a good first one. Other fetches write each block
   * to disk as it arrives, so memory holds only the blocks in flight.
   */
  buffer?: Uint8Array;
  /** `buffer`'s bytes are counted in the session's end-game budget until released. */
  budgeted?: boolean;
}

/** Feeds a received block to the piece's hash, in order, holding blocks that came early. */
function hashInOrder(a: Assembly, begin: number, data: Uint8Array): void {
  if (begin !== a.hashedTo) {
    a.early.set(begin, data);
    return;
  }
  a.hasher.update(data);
  a.hashedTo += data.length;
  for (let next = a.early.get(a.hashedTo); next; next = a.early.get(a.hashedTo)) {
    a.early.delete(a.hashedTo);
    a.hasher.update(next);
    a.hashedTo += next.length;
  }
}

/**
 * Downloads every missing piece of `storage` from the given peers, verifying each.
 *
 * @returns the final path and counts
 * @throws {Error} when no peer can supply the missing pieces (what was verified stays saved)
 */
export async function runDownload(
  storage: ShareStorage,
  options: DownloadOptions,
): Promise<DownloadResult> {
  const session = new DownloadSession(storage, options);
  return await session.run();
}

/** One live connection, as the session sees it. */
interface LiveConnection {
  record: PeerRecord;
  /** The remote peer's id (hex), from its handshake. */
  peerId: string;
  peerHas: Bitfield;
  /** Bytes per second received on this connection. */
  meter: RateMeter;
  /** The peer refuses to upload to us right now. */
  chokingUs(): boolean;
  /** Drops the connection when it has requests out but no block came for too long. */
  checkStall(nowMs: number): void;
  /** Asks the connection to top up its request pipeline (pieces came back to the pool). */
  fill(): void;
  /** Another connection stored piece `index`: stop fetching it here (end game). */
  cancel(index: number): void;
  close(reason: string): void;
}

/** One download in progress; `addPeers` may feed it more peers while it runs. */
export class DownloadSession {
  readonly storage: ShareStorage;
  readonly options: DownloadOptions;
  readonly picker: PiecePicker;
  readonly infoHash: Uint8Array;
  readonly peerId: Uint8Array;
  readonly meter = new RateMeter();
  readonly startedMs = performance.now();
  readonly controller = new AbortController();
  readonly signal: AbortSignal;
  readonly peers = new Map<string, PeerRecord>();
  readonly live = new Set<LiveConnection>();
  piecesFetched = 0;
  bytesFetched = 0;
  /** Connection loops waiting to reconnect: they may still bring pieces. */
  reconnecting = 0;
  /** Connections dialling or waiting for the peer's bitfield. */
  connecting = 0;
  #failure: Error | undefined;
  #known = new Map<string, PeerAddress>();
  #loops = new Map<string, number>();
  #loopCount = 0;
  #maxLoops: number;
  #maxPeers: number;
  /** Peer ids banned for sending data that failed verification. */
  readonly bannedIds = new Set<string>();
  /**
   * Received block buffers kept for reuse, shared by all connections. A pool per connection
   * (4 MiB each) could not hold what one busy connection needs at times (its pipeline and up to
   * `MAX_WRITE_BYTES` of writes): the extra buffers were allocated afresh and dropped, and V8
   * frees dropped ones only at a GC it starts after about 64 MB of them. A 4 GiB download at
   * `--parallel 1` peaked at 124-134 MB that way, and at 81-84 MB (as 1 GiB does) with 12 MiB
   * kept.
   */
  readonly bodies = new BufferPool(MAX_POOLED_BODY_BYTES);
  /** Bytes of block writes not yet landed, all connections together (`MAX_WRITE_BYTES`). */
  writingBytes = 0;
  /** Bytes of end-game duplicate buffers held now (bounded by `MAX_DUPLICATE_BYTES`). */
  duplicateBytes = 0;
  #tasks = new Set<Promise<void>>();
  #running = false;
  #finished: (() => void) | undefined;
  #problem = "no peer has the missing pieces";
  #problemSticky = false;
  #stalledSinceMs: number | undefined;

  constructor(storage: ShareStorage, options: DownloadOptions) {
    this.storage = storage;
    this.options = options;
    this.peerId = options.peerId ?? newPeerId();
    this.picker = new PiecePicker(storage.have, { wanted: storage.wanted.indexes() });
    this.infoHash = fromHex(storage.meta.infoHash);
    this.signal = AbortSignal.any([options.signal, this.controller.signal]);
    this.#maxPeers = options.maxPeers ?? options.connections;
    this.#maxLoops = Math.max(options.connections, this.#maxPeers);
    this.addPeers(options.peers);
  }

  /** Adds peers (from the command line, a tracker, or later other peers); duplicates are ignored. */
  addPeers(peers: PeerAddress[]): void {
    for (const peer of peers) {
      const record = this.peerRecord(peer);
      if (!this.#known.has(record.key)) this.#known.set(record.key, peer);
    }
    if (this.#running) this.#ensureConnections();
  }

  /** Starts connection loops so every usable peer has its share of the connections. */
  #ensureConnections(): void {
    if (this.picker.done || this.signal.aborted) return;
    const now = performance.now();
    const usable = [...this.#known.entries()].filter(([key]) => {
      const record = this.peers.get(key);
      return !record?.banned && (record?.abandonedUntilMs ?? 0) <= now;
    });
    const perPeer = Math.max(1, Math.floor(this.options.connections / Math.max(1, usable.length)));
    let peersWithLoops = 0;
    for (const [key] of usable) if ((this.#loops.get(key) ?? 0) > 0) peersWithLoops++;
    for (const [key, peer] of usable) {
      const running = this.#loops.get(key) ?? 0;
      if (running === 0) {
        if (peersWithLoops >= this.#maxPeers) continue;
        peersWithLoops++;
      }
      for (let i = running; i < perPeer && this.#loopCount < this.#maxLoops; i++) {
        this.#loops.set(key, (this.#loops.get(key) ?? 0) + 1);
        this.#loopCount++;
        const task: Promise<void> = this.connectionLoop(peer).finally(() => {
          this.#loops.set(key, (this.#loops.get(key) ?? 1) - 1);
          this.#loopCount--;
          this.#tasks.delete(task);
          // A slot came free: another known peer may take it.
          if (this.#running) queueMicrotask(() => this.#ensureConnections());
        });
        this.#tasks.add(task);
      }
    }
  }

  async run(): Promise<DownloadResult> {
    const { sink } = this.options;
    const total = this.storage.layout.pieceCount;
    if (!this.picker.done) {
      sink.emit({
        event: "started",
        name: this.storage.meta.info.name,
        piecesNeeded: this.picker.remaining,
        piecesTotal: total,
        connections: this.options.connections,
        peer: [...this.#known.keys()].join(", ") || "peers found through the tracker",
      });
      const progressTimer = setInterval(() => {
        this.emitProgress();
        const now = performance.now();
        for (const c of this.live) c.checkStall(now);
        this.#watchStall();
      }, PROGRESS_INTERVAL_MS);
      const flushTimer = setInterval(
        () => this.storage.flush().catch((err) => this.fail(err)),
        STATE_FLUSH_INTERVAL_MS,
      );
      try {
        this.#running = true;
        this.#ensureConnections();
        await new Promise<void>((resolve) => {
          if (this.signal.aborted || this.picker.done) resolve();
          this.signal.addEventListener("abort", () => resolve(), { once: true });
          this.#finished = resolve;
        });
        this.finishAll();
        while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
      } finally {
        this.#running = false;
        clearInterval(progressTimer);
        clearInterval(flushTimer);
        await this.storage.flush();
      }
      if (this.options.signal.aborted) throw this.options.signal.reason ?? new Error("aborted");
      if (!this.storage.wantedComplete) {
        throw this.#failure ?? new Error(this.incompleteMessage("download stopped"));
      }
    }
    const path = await this.storage.finalize();
    return {
      path,
      bytes: this.storage.bytesSelected,
      piecesFetched: this.piecesFetched,
      bytesFetched: this.bytesFetched,
      piecesTotal: total,
      seconds: Math.round(performance.now() - this.startedMs) / 1000,
    };
  }

  incompleteMessage(why: string): string {
    const have = this.storage.have.count;
    return `${why}; ${have}/${this.storage.layout.pieceCount} pieces verified (run again to resume)`;
  }

  emitProgress(): void {
    const rate = this.meter.rate(performance.now());
    // With --only, progress counts the chosen files' pieces, not the whole share.
    const bytesTotal = this.storage.bytesWanted;
    const bytesDone = this.storage.bytesHaveWanted;
    const uploads = this.options.uploads;
    this.options.sink.emit({
      event: "progress",
      piecesDone: this.storage.piecesHaveWanted,
      piecesTotal: this.storage.wanted.count,
      bytesDone,
      bytesTotal,
      rateBytesPerSec: Math.round(rate),
      etaSeconds: rate > 0 ? Math.round((bytesTotal - bytesDone) / rate) : null,
      peers: this.peerCount(),
      uploadRateBytesPerSec: Math.round(uploads?.uploadRate() ?? 0),
      bytesDownloaded: this.meter.total,
      bytesUploaded: uploads?.bytesUploaded ?? 0,
    });
  }

  /** Distinct peers connected either way. */
  peerCount(): number {
    const ids = new Set<string>(this.options.uploads?.peerIds() ?? []);
    for (const c of this.live) ids.add(c.peerId || c.record.key);
    return ids.size;
  }

  /** Bytes per second received from the peer with this id (for tit for tat). */
  rateFromPeer(peerId: string): number {
    let rate = 0;
    const now = performance.now();
    for (const c of this.live) if (c.peerId === peerId) rate += c.meter.rate(now);
    return rate;
  }

  /** The peers we download from, for displays (upload fields filled by the caller). */
  peerSnapshots(): PeerSnapshot[] {
    const now = performance.now();
    return [...this.live].map((c) => ({
      address: c.record.key,
      direction: "out" as const,
      piecesHeld: c.peerHas.count,
      downloadRateBytesPerSec: Math.round(c.meter.rate(now)),
      uploadRateBytesPerSec: 0,
      choked: true,
      chokingUs: c.chokingUs(),
      interested: true,
    }));
  }

  /** One byte per piece: missing, in flight or verified. */
  pieceStates(): Uint8Array {
    const states = new Uint8Array(this.storage.layout.pieceCount);
    for (let i = 0; i < states.length; i++) {
      states[i] = this.storage.have.has(i)
        ? PieceState.VERIFIED
        : this.picker.isInFlight(i)
        ? PieceState.IN_FLIGHT
        : PieceState.MISSING;
    }
    return states;
  }

  /** Ends the download with `err` (kept for the final report). */
  fail(err: unknown): void {
    this.#failure ??= err instanceof Error ? err : new Error(String(err));
    this.controller.abort(this.#failure);
  }

  /** Pieces came back to the pool: let every connection top up. */
  wakeAll(): void {
    for (const c of this.live) c.fill();
  }

  peerRecord(peer: PeerAddress): PeerRecord {
    const key = hostPort(peer);
    let record = this.peers.get(key);
    if (!record) {
      record = { key, failed: new Set(), hashFailures: 0, banned: false, abandonedUntilMs: 0 };
      this.peers.set(key, record);
    }
    return record;
  }

  /** True when a peer holding `peerHas` could still give us a missing piece. */
  canPickFrom(peerHas: Bitfield, record: PeerRecord): boolean {
    if (record.banned) return false;
    for (let i = 0; i < this.picker.pieceCount; i++) {
      if (this.picker.needs(i) && peerHas.has(i) && !record.failed.has(i)) return true;
    }
    return false;
  }

  /**
   * Remembers why no progress is possible, for the message if the download has to give up.
   * A `sticky` cause (a piece that failed verification) is not replaced by later, vaguer ones.
   */
  noteProblem(why: string, sticky = false): void {
    if (this.#problemSticky && !sticky) return;
    this.#problem = why;
    this.#problemSticky ||= sticky;
  }

  /** True when nothing running can bring a missing piece. */
  #stalled(): boolean {
    if (this.picker.done || this.picker.inFlightCount > 0) return false;
    if (this.reconnecting > 0 || this.connecting > 0) return false;
    for (const c of this.live) if (this.canPickFrom(c.peerHas, c.record)) return false;
    return true;
  }

  /**
   * Gives up when no peer can bring a missing piece: at once without a peer source, or after
   * `waitForPeersMs` when more peers may still be announced (a tracker).
   */
  #watchStall(): void {
    if (!this.#stalled()) {
      this.#stalledSinceMs = undefined;
      return;
    }
    const now = performance.now();
    if (this.#stalledSinceMs === undefined) {
      this.#stalledSinceMs = now;
      if ((this.options.waitForPeersMs ?? 0) > 0) {
        this.options.sink.emit({
          event: "warning",
          message: `waiting for peers: ${this.#problem}`,
        });
      }
    }
    if (now - this.#stalledSinceMs >= (this.options.waitForPeersMs ?? 0)) {
      this.fail(new Error(this.incompleteMessage(this.#problem)));
    }
  }

  /** Everything is here (or the download ends): close every connection so their loops end. */
  finishAll(): void {
    for (const c of this.live) c.close("download complete");
    this.#finished?.();
  }

  /** Keeps one connection to `peer` going, reconnecting with backoff when it drops. */
  async connectionLoop(peer: PeerAddress): Promise<void> {
    const record = this.peerRecord(peer);
    let failures = 0;
    let everConnected = false;
    for (;;) {
      let why = "";
      let refused = false;
      try {
        const progressed = await this.runConnection(peer, record, () => (everConnected = true));
        if (progressed) failures = 0;
      } catch (err) {
        why = errorMessage(err);
        refused = err instanceof Deno.errors.ConnectionRefused;
        if (
          err instanceof ProtocolError &&
          /info hash mismatch|another share|banned|encrypted transport|authentication/.test(why)
        ) {
          record.banned = true; // the peer serves something else, or refuses us: never useful
          this.noteProblem(why);
          return;
        }
      }
      if (this.picker.done || this.signal.aborted) return;
      if (record.banned) {
        this.noteProblem(`all peers dropped (last: ${record.key}, which sent bad data)`);
        return;
      }
      failures++;
      // A peer never reached that refuses outright is most likely not running: fail fast.
      const limit = !everConnected && refused ? 2 : MAX_RECONNECTS;
      if (failures > limit) {
        this.noteProblem(`cannot reach ${record.key}: ${why || "connection lost"}`);
        record.abandonedUntilMs = performance.now() + ABANDON_MS;
        return;
      }
      const warning = `connection to ${record.key} failed (${
        why || "closed"
      }); retry ${failures}/${limit}`;
      if (record.lastWarning !== warning) {
        record.lastWarning = warning; // parallel connections to one peer say it once
        this.options.sink.emit({ event: "warning", message: warning });
      }
      this.reconnecting++;
      try {
        await abortableDelay(Math.min(8000, 250 * 2 ** failures), this.signal);
      } finally {
        this.reconnecting--;
      }
    }
  }

  /**
   * One connection: handshake, learn the peer's pieces, then keep a pipeline of block requests
   * full and assemble, verify and store the pieces that arrive.
   *
   * @returns true when at least one piece was completed on it
   */
  async runConnection(
    peer: PeerAddress,
    record: PeerRecord,
    onConnected: () => void,
  ): Promise<boolean> {
    const dialer = this.options.dialer ?? tcpDialer;
    // Until the peer has said which pieces it holds, this connection may still bring work:
    // the stall watch must not give up meanwhile.
    this.connecting++;
    let settled = false;
    const settle = () => {
      if (!settled) {
        settled = true;
        this.connecting--;
      }
    };
    let stream: ByteStream;
    try {
      stream = await dialer(
        peer,
        AbortSignal.any([this.signal, AbortSignal.timeout(CONNECT_TIMEOUT_MS)]),
      );
    } catch (err) {
      settle();
      throw err;
    }
    const secure = this.options.secure;
    // Encrypted: the gate holds the responder's messages until its proof has been checked.
    const gate = secure ? new AuthGate(stream) : undefined;
    const conn = new PeerConnection(
      gate ?? stream,
      record.key,
      this.options.timing ?? DEFAULT_TIMING,
      this.bodies,
    );
    const onAbort = () => conn.close("download ended");
    this.signal.addEventListener("abort", onAbort, { once: true });
    const assemblies = new Map<number, Assembly>();
    const verifying = new Set<Promise<void>>();
    /** Block writes of this connection not yet landed (their bytes count in the session). */
    const writing = new Set<Promise<void>>();
    let choked = true;
    let requestedBytes = 0;
    let completedHere = 0;
    let lastBlockMs = performance.now();
    /** The link's round trip, as measured by the handshake and the first unchoke. */
    let roundTripMs = 0;
    let refillTimer: ReturnType<typeof setTimeout> | undefined;
    const limiter = this.options.downloadLimiter;
    // With a rate limit, smaller blocks keep the rate even over short windows.
    const blockBytes = Math.min(
      BLOCK_BYTES,
      this.storage.layout.pieceLength,
      limiter ? Math.max(16 * 1024, 2 ** Math.floor(Math.log2(limiter.bytesPerSec / 8))) : Infinity,
    );

    const drop = (index: number) => {
      const a = assemblies.get(index);
      if (!a) return;
      for (const len of a.pending.values()) requestedBytes -= len;
      assemblies.delete(index);
      this.releaseDuplicate(a);
      this.picker.release(index);
    };
    const requestTimeoutMs = this.options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    let bitfieldCounted = false;
    const live: LiveConnection = {
      record,
      peerId: "",
      meter: new RateMeter(),
      chokingUs: () => choked,
      checkStall: (nowMs) => {
        if (requestedBytes > 0 && nowMs - lastBlockMs > requestTimeoutMs) {
          conn.close(
            `peer ${record.key} stalled mid-piece (no data for ${requestTimeoutMs / 1000}s)`,
          );
        }
      },
      peerHas: new Bitfield(this.storage.layout.pieceCount),
      close: (reason) => conn.close(reason),
      cancel: (index) => {
        const a = assemblies.get(index);
        if (!a) return;
        for (const [begin, length] of a.pending) {
          conn.send(encodeCancel(index, begin, length)).catch(() => {});
          requestedBytes -= length;
        }
        assemblies.delete(index);
        this.releaseDuplicate(a);
      },
      fill: () => {
        if (record.banned) {
          // Banned: no new requests; hang up once what is in flight has arrived.
          if (assemblies.size === 0 && verifying.size === 0) conn.close(`dropped ${record.key}`);
          return;
        }
        if (choked || conn.closed) return;
        // Blocks are all full-sized but a file's last, so a byte budget is also a request budget.
        // What the link holds, so a far peer stays busy; a slow peer (a rate-capped seeder) is
        // then not sent for pieces that other peers will have sooner.
        const pipelineTarget = pipelineBytes({
          rateBytesPerSec: live.meter.rate(performance.now()),
          roundTripMs,
          blockBytes,
          connections: this.live.size,
          maxRequests: MAX_REQUESTS_IN_FLIGHT,
        });
        // A fair share of what is left, so the first connection up does not take everything.
        const maxPieces = Math.max(
          1,
          Math.ceil(this.picker.remaining / Math.max(1, this.options.connections)),
        );
        // The requests of this refill go out in one write after the loop (which only breaks).
        const requests: BlockRange[] = [];
        while (requestedBytes < pipelineTarget && assemblies.size < maxPieces) {
          if (limiter && limiter.available(performance.now()) < 0) {
            // Over the download rate: come back when the bucket has refilled.
            if (refillTimer === undefined) {
              const waitMs = Math.ceil(
                (-limiter.available(performance.now()) * 1000) / limiter.bytesPerSec,
              );
              refillTimer = setTimeout(() => {
                refillTimer = undefined;
                live.fill();
              }, Math.max(5, waitMs));
            }
            break;
          }
          const exclude = new Set<number>([...record.failed, ...assemblies.keys()]);
          let index = this.picker.pick(live.peerHas, { exclude });
          const duplicate = index === undefined;
          // End game: only an idle connection duplicates a piece in flight elsewhere, so the
          // last pieces are not held up by one slow peer, without fetching everything twice.
          if (
            index === undefined && assemblies.size === 0 &&
            this.picker.remaining <= Math.max(2, this.live.size) &&
            this.picker.allInFlight &&
            this.duplicateBytes + this.storage.layout.pieceLength <= MAX_DUPLICATE_BYTES
          ) {
            index = this.picker.pick(live.peerHas, { exclude, endGame: true });
          }
          if (index === undefined) break;
          const size = this.storage.layout.pieceSize(index);
          const assembly: Assembly = {
            index,
            size,
            pending: new Map(),
            hasher: createHash("sha256"),
            hashedTo: 0,
            early: new Map(),
            buffer: duplicate ? new Uint8Array(size) : undefined,
            budgeted: duplicate,
          };
          if (duplicate) this.duplicateBytes += size;
          assemblies.set(index, assembly);
          if (requestedBytes === 0) lastBlockMs = performance.now(); // the stall clock starts now
          for (const block of this.storage.layout.blocks(index, blockBytes)) {
            assembly.pending.set(block.begin, block.length);
            requestedBytes += block.length;
            limiter?.reserve(block.length, performance.now());
            requests.push({ index, begin: block.begin, length: block.length });
          }
        }
        if (requests.length > 0) conn.send(encodeRequests(requests)).catch(() => {});
      },
    };

    try {
      const helloSentMs = performance.now();
      const hello = secure && gate
        ? await secureHandshakeAsInitiator(conn, {
          gate,
          infoHash: this.infoHash,
          peerId: this.peerId,
          key: secure.key,
          localFp: (stream as SecureStream).localCertFingerprint,
          peerFp: (stream as SecureStream).peerCertFingerprint,
        })
        : await conn.handshakeAsInitiator(this.infoHash, this.peerId);
      // A first estimate of the round trip; an encrypted handshake takes several, and the first
      // one of a process also waits for its X.509 library (measured: 50 ms over loopback).
      roundTripMs = performance.now() - helloSentMs;
      live.peerId = hello.peerId;
      if (this.bannedIds.has(hello.peerId)) {
        record.banned = true;
        throw new ProtocolError(
          `peer ${record.key} is banned (it sent data that failed verification)`,
        );
      }
      onConnected();
      this.live.add(live);
      this.options.sink.emit({ event: "peer_connected", peer: record.key, direction: "out" });
      if (this.options.listenPort) await conn.send(encodePort(this.options.listenPort));
      let interestedMs: number | undefined = performance.now();
      await conn.send(encodeSignal(MessageType.INTERESTED));
      while (!this.picker.done) {
        const msg = await conn.receive();
        if (msg === undefined) throw new ProtocolError(`peer ${record.key} closed the connection`);
        switch (msg.type) {
          case "bitfield":
            try {
              live.peerHas = Bitfield.fromBytes(msg.bytes, this.storage.layout.pieceCount);
            } catch (err) {
              throw new ProtocolError(`bad bitfield from ${record.key}: ${errorMessage(err)}`);
            }
            if (bitfieldCounted) this.picker.removePeer(live.peerHas);
            this.picker.addPeer(live.peerHas);
            bitfieldCounted = true;
            settle();
            break;
          case "have":
            if (msg.index >= live.peerHas.size) {
              throw new ProtocolError(`have for piece ${msg.index} out of range`);
            }
            if (!live.peerHas.has(msg.index)) {
              live.peerHas.set(msg.index);
              if (bitfieldCounted) this.picker.addHave(msg.index);
            }
            break;
          case "unchoke":
            // INTERESTED to the first UNCHOKE is one plain round trip when the peer has a free
            // slot (1.3-1.9 ms over loopback where the encrypted handshake took 50 ms); later
            // than that when it has none, which min() leaves out.
            if (interestedMs !== undefined) {
              roundTripMs = Math.min(roundTripMs, performance.now() - interestedMs);
              interestedMs = undefined;
            }
            choked = false;
            break;
          case "choke":
            choked = true;
            for (const index of [...assemblies.keys()]) drop(index);
            this.wakeAll();
            break;
          case "reject": {
            if (!assemblies.get(msg.index)?.pending.has(msg.begin)) break;
            live.peerHas.clear(msg.index);
            drop(msg.index);
            this.wakeAll();
            break;
          }
          case "piece": {
            const a = assemblies.get(msg.index);
            const expected = a?.pending.get(msg.begin);
            if (!a || expected === undefined) break; // cancelled or never asked: not trusted
            if (expected !== msg.data.length) {
              throw new ProtocolError(
                `piece ${msg.index} block at ${msg.begin}: ${msg.data.length} bytes, asked ${expected}`,
              );
            }
            // A block hashed now (in order, the usual case) goes back to the connection for
            // reuse once its write has landed too; one held in `early` is left to the GC.
            const inOrder = msg.begin === a.hashedTo;
            if (a.buffer) {
              a.buffer.set(msg.data, msg.begin);
              hashInOrder(a, msg.begin, msg.data);
              if (inOrder) conn.recycle(msg.data);
            } else {
              // Straight to disk; a write error surfaces when the piece is marked verified.
              const data = msg.data;
              const written = this.storage.writeBlock(a.index, msg.begin, data);
              hashInOrder(a, msg.begin, data);
              const settled: Promise<void> = written
                .then(() => {
                  if (inOrder) conn.recycle(data);
                }, () => {})
                .finally(() => {
                  writing.delete(settled);
                  this.writingBytes -= data.length;
                });
              writing.add(settled);
              this.writingBytes += data.length;
            }
            a.pending.delete(msg.begin);
            requestedBytes -= expected;
            lastBlockMs = performance.now();
            this.meter.add(expected, lastBlockMs);
            live.meter.add(expected, lastBlockMs);
            if (a.pending.size === 0) {
              assemblies.delete(a.index);
              const task: Promise<void> = this.finishPiece(a, record, live)
                .then((ok) => {
                  if (ok) completedHere++;
                })
                .catch((err) => this.fail(err))
                .finally(() => {
                  verifying.delete(task);
                  this.releaseDuplicate(a);
                });
              verifying.add(task);
              // Bound memory: stop reading while too many pieces wait for their hash.
              if (verifying.size >= MAX_VERIFYING_PER_CONN) await Promise.race(verifying);
            }
            // Bound memory: when the disk falls behind (writeback throttling on a large file),
            // stop reading until a write lands, rather than hold every block in RAM.
            while (this.writingBytes >= MAX_WRITE_BYTES && writing.size > 0) {
              await Promise.race(writing);
            }
            break;
          }
          case "error":
            throw new ProtocolError(`peer ${record.key} said: ${msg.message}`);
          case "handshake":
            throw new ProtocolError(`peer ${record.key} sent a second handshake`);
          default:
            break;
        }
        live.fill();
        if (
          assemblies.size === 0 && verifying.size === 0 && !this.canPickFrom(live.peerHas, record)
        ) {
          this.noteProblem(`no connected peer has the ${this.picker.remaining} missing pieces`);
        }
      }
      return completedHere > 0;
    } catch (err) {
      if (this.picker.done) return completedHere > 0;
      throw err;
    } finally {
      settle();
      clearTimeout(refillTimer);
      if (bitfieldCounted) this.picker.removePeer(live.peerHas);
      this.signal.removeEventListener("abort", onAbort);
      this.live.delete(live);
      for (const index of [...assemblies.keys()]) drop(index);
      await Promise.allSettled(verifying);
      conn.close();
      if (!this.picker.done) this.wakeAll();
    }
  }

  /** Returns an end-game duplicate's buffer to the budget (once). */
  releaseDuplicate(a: Assembly): void {
    if (!a.budgeted) return;
    a.budgeted = false;
    this.duplicateBytes -= a.size;
  }

  /**
   * Verifies an assembled piece and stores it when good. A bad piece is reported, never
   * stored, and never asked of that peer again; a peer with repeated failures is dropped.
   *
   * @returns true when the piece was stored
   */
  async finishPiece(a: Assembly, record: PeerRecord, live: LiveConnection): Promise<boolean> {
    const digest = new Uint8Array(a.hasher.digest());
    if (!this.picker.needs(a.index)) return false; // an end-game duplicate: another was faster
    if (!digestsEqual(digest, this.storage.expectedDigest(a.index))) {
      record.failed.add(a.index);
      record.hashFailures++;
      this.picker.release(a.index);
      const message = `piece ${a.index} from ${record.key} failed SHA-256 verification; discarded`;
      this.options.sink.emit({
        event: "piece_failed",
        index: a.index,
        peer: record.key,
        reason: message,
      });
      // One bad piece is enough: the peer is dropped (once what it has in flight arrived, so
      // good pieces already on the way are not wasted) and not accepted again for this share.
      if (!record.banned) {
        record.banned = true;
        if (live.peerId) {
          this.bannedIds.add(live.peerId);
          this.options.onPeerBanned?.(live.peerId);
        }
        this.options.sink.emit({
          event: "warning",
          message: `dropping peer ${record.key}: it sent data that failed verification`,
        });
      }
      this.wakeAll();
      this.noteProblem(
        `piece ${a.index} failed verification and no connected peer has a good copy`,
        true,
      );
      return false;
    }
    if (a.buffer) await this.storage.writeBlock(a.index, 0, a.buffer);
    await this.storage.markVerified(a.index);
    // Both copies of an end-game piece may verify: the first to get here counts it.
    if (!this.picker.needs(a.index)) return false;
    this.picker.complete(a.index);
    this.piecesFetched++;
    this.bytesFetched += a.size;
    for (const c of this.live) c.cancel(a.index);
    this.options.onPieceStored?.(a.index);
    if (this.picker.done) {
      this.emitProgress(); // the last progress still counts the peers that brought it
      this.finishAll();
    }
    return true;
  }
}

function hostPort(peer: PeerAddress): string {
  return peer.hostname.includes(":")
    ? `[${peer.hostname}]:${peer.port}`
    : `${peer.hostname}:${peer.port}`;
}

function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
