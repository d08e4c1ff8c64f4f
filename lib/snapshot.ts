/**
 * @module snapshot
 * Point-in-time views of a running share and of a tracker, for displays that poll (the web
 * monitor) rather than follow the event stream. Pure types and helpers: no I/O.
 */

import type { EventSink, P2PEvent } from "./events.ts";

/** Per-piece state in {@linkcode ShareSnapshot.pieceStates}. */
export const PieceState = { MISSING: 0, IN_FLIGHT: 1, VERIFIED: 2 } as const;

/** One connected peer. */
export interface PeerSnapshot {
  address: string;
  /** "out": we connected to it; "in": it connected to us. */
  direction: "in" | "out";
  /** Pieces the peer says it holds. */
  piecesHeld: number;
  /** Bytes per second we receive from it / send to it. */
  downloadRateBytesPerSec: number;
  uploadRateBytesPerSec: number;
  /** We refuse to upload to it right now. */
  choked: boolean;
  /** It refuses to upload to us right now. */
  chokingUs: boolean;
  /** It wants pieces we hold. */
  interested: boolean;
}

/** A share being seeded or downloaded. */
export interface ShareSnapshot {
  role: "seed" | "download";
  name: string;
  infoHash: string;
  bytesTotal: number;
  pieceLength: number;
  piecesTotal: number;
  piecesDone: number;
  bytesDone: number;
  /** One byte per piece, a {@linkcode PieceState} value. */
  pieceStates: Uint8Array;
  downloadRateBytesPerSec: number;
  uploadRateBytesPerSec: number;
  bytesDownloaded: number;
  bytesUploaded: number;
  etaSeconds: number | null;
  peers: PeerSnapshot[];
  complete: boolean;
}

/** A tracker's swarms. */
export interface TrackerSnapshot {
  role: "tracker";
  swarms: {
    infoHash: string;
    name?: string;
    seeders: number;
    leechers: number;
    completed: number;
  }[];
}

/** What a display polls. */
export interface SnapshotSource {
  snapshot(): ShareSnapshot | TrackerSnapshot;
}

/** An EventSink that forwards every event to several sinks (terminal and web page alike). */
export class TeeSink implements EventSink {
  readonly sinks: EventSink[];
  constructor(...sinks: EventSink[]) {
    this.sinks = sinks;
  }
  emit(event: P2PEvent): void {
    for (const sink of this.sinks) {
      try {
        sink.emit(event);
      } catch {
        // One display failing must not stop the others or the transfer.
      }
    }
  }
}
