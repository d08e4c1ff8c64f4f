/**
 * @module web_kit
 * Helpers for the web monitor tests: a fake share whose progress the test moves by hand, and a
 * reader that pulls server-sent events out of a response body until a condition holds (with a
 * timeout, never a sleep). Does no I/O of its own beyond reading the given streams.
 */

import type { PeerSnapshot, ShareSnapshot, SnapshotSource } from "../lib/snapshot.ts";
import { type ParsedSseEvent, parseSse } from "../lib/web/sse.ts";

/** A share whose state the test sets: `setDone(n)` marks pieces 0..n-1 verified. */
export class FakeShare implements SnapshotSource {
  readonly states: Uint8Array;
  readonly pieceLength: number;
  role: "seed" | "download" = "download";
  name = "holiday-video.mkv";
  infoHash = "c0ffee".padEnd(64, "0");
  peers: PeerSnapshot[] = [];
  downloadRate = 0;
  uploadRate = 0;
  bytesDownloaded = 0;
  bytesUploaded = 0;
  snapshots = 0;

  constructor(pieces: number, pieceLength = 256 * 1024) {
    this.states = new Uint8Array(pieces);
    this.pieceLength = pieceLength;
  }

  get piecesTotal(): number {
    return this.states.length;
  }

  get bytesTotal(): number {
    return this.states.length * this.pieceLength - Math.floor(this.pieceLength / 3);
  }

  get piecesDone(): number {
    return this.states.reduce((n, s) => n + (s === 2 ? 1 : 0), 0);
  }

  /** Pieces `[0, done)` verified, the next `inFlight` in flight, the rest missing. */
  setDone(done: number, inFlight = 0): void {
    this.states.fill(0);
    this.states.fill(2, 0, done);
    this.states.fill(1, done, Math.min(this.states.length, done + inFlight));
  }

  snapshot(): ShareSnapshot {
    this.snapshots++;
    const piecesDone = this.piecesDone;
    const complete = piecesDone === this.piecesTotal;
    const bytesDone = complete ? this.bytesTotal : piecesDone * this.pieceLength;
    const left = this.bytesTotal - bytesDone;
    return {
      role: this.role,
      name: this.name,
      infoHash: this.infoHash,
      bytesTotal: this.bytesTotal,
      pieceLength: this.pieceLength,
      piecesTotal: this.piecesTotal,
      piecesDone,
      bytesDone,
      pieceStates: this.states,
      downloadRateBytesPerSec: this.downloadRate,
      uploadRateBytesPerSec: this.uploadRate,
      bytesDownloaded: this.bytesDownloaded,
      bytesUploaded: this.bytesUploaded,
      etaSeconds: complete ? 0 : this.downloadRate > 0 ? left / this.downloadRate : null,
      peers: this.peers,
      complete,
    };
  }
}

/** A peer row for the fake share. */
export function fakePeer(address: string, overrides: Partial<PeerSnapshot> = {}): PeerSnapshot {
  return {
    address,
    direction: "out",
    piecesHeld: 0,
    downloadRateBytesPerSec: 0,
    uploadRateBytesPerSec: 0,
    choked: true,
    chokingUs: false,
    interested: false,
    ...overrides,
  };
}

/** Reads server-sent events from a stream as they come. */
export class SseReader {
  readonly events: ParsedSseEvent[] = [];
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #decoder = new TextDecoder();
  #rest = "";
  #ended = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** True once the stream ended. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Reads until `count` events of type `type` have arrived in total (or the stream ends).
   *
   * @throws {Error} after `timeoutMs`
   */
  async until(type: string, count = 1, timeoutMs = 5000): Promise<ParsedSseEvent[]> {
    const matching = () => this.events.filter((e) => e.event === type);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${count} "${type}" events`)),
        timeoutMs,
      );
    });
    try {
      while (matching().length < count && !this.#ended) {
        const { value, done } = await Promise.race([this.#reader.read(), timeout]);
        if (done) {
          this.#ended = true;
          this.#rest += this.#decoder.decode();
        } else {
          this.#rest += this.#decoder.decode(value, { stream: true });
        }
        const parsed = parseSse(this.#rest);
        this.events.push(...parsed.events);
        this.#rest = parsed.rest;
      }
      return matching();
    } finally {
      clearTimeout(timer);
    }
  }

  /** The data of every event of `type` so far, parsed as JSON. */
  json<T = Record<string, unknown>>(type: string): T[] {
    return this.events.filter((e) => e.event === type).map((e) => JSON.parse(e.data) as T);
  }

  /** Stops reading (the server sees the page go away). */
  async cancel(): Promise<void> {
    if (!this.#ended) await this.#reader.cancel().catch(() => {});
    this.#reader.releaseLock();
  }
}
