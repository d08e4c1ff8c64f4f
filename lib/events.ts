/**
 * @module events
 * The event stream every role emits. The terminal display, `--json` output and (later) the web
 * page all consume the same events, so each shows the same facts. Pure: no I/O.
 *
 * Every event has an `event` field; the JSON form printed by `--json` is exactly these objects.
 * Fields are only ever added, never renamed or removed: scripts may rely on them.
 */

/** One thing that happened. */
export type P2PEvent =
  | {
    event: "created";
    path: string;
    infoHash: string;
    name: string;
    bytes: number;
    pieces: number;
    pieceLength: number;
    /** True for a folder. */
    directory?: boolean;
    /** Files in the share (empty ones included, empty folders not); 1 for a single file. */
    files?: number;
  }
  | {
    event: "share";
    path: string;
    name: string;
    bytes: number;
    pieceLength: number;
    pieces: number;
    infoHash: string;
    trackers: string[];
    comment: string | null;
    createdBy: string | null;
    creationDate: string | null;
    /** True for a folder. */
    directory?: boolean;
    /**
     * Every file and empty folder, in the share's order: `path` under the share's folder (for a
     * single file, its name), `bytes`, `dir` true for an empty folder.
     */
    files?: { path: string; bytes: number; dir: boolean }[];
  }
  | {
    event: "listening";
    host: string;
    port: number;
    service: "peer" | "tracker" | "web";
    url?: string;
  }
  | { event: "ingested"; pieces: number; piecesTotal: number; source: string }
  | { event: "serving"; name: string; pieces: number; host: string; port: number; hint: string }
  | { event: "rechecking"; path: string; reason: string }
  | {
    /** A file of a directory share is complete and in its final place. */
    event: "file_complete";
    /** Where it is now, e.g. `downloads/holiday/photos/a.jpg`. */
    path: string;
    /** Its path inside the share, e.g. `photos/a.jpg`. */
    file: string;
    bytes: number;
  }
  | {
    event: "started";
    name: string;
    piecesNeeded: number;
    piecesTotal: number;
    connections: number;
    peer: string;
  }
  | {
    event: "progress";
    piecesDone: number;
    piecesTotal: number;
    bytesDone: number;
    bytesTotal: number;
    /** Download rate. */
    rateBytesPerSec: number;
    etaSeconds: number | null;
    /** Distinct peers connected, either direction. */
    peers: number;
    uploadRateBytesPerSec: number;
    /** Bytes received and sent in this run. */
    bytesDownloaded: number;
    bytesUploaded: number;
  }
  | { event: "peer_connected"; peer: string; direction: "in" | "out" }
  | { event: "peer_disconnected"; peer: string; reason: string }
  | { event: "piece_failed"; index: number; peer: string; reason: string }
  | {
    event: "complete";
    path: string;
    bytes: number;
    piecesFetched: number;
    bytesFetched: number;
    /** Bytes received and sent in this run (uploads to other peers included). */
    bytesDownloaded: number;
    bytesUploaded: number;
    piecesTotal: number;
    seconds: number;
  }
  | {
    event: "verified";
    path: string;
    ok: boolean;
    piecesGood: number;
    piecesTotal: number;
    badPieces: number[];
    /**
     * Folder shares only: files that are missing, of the wrong size, or touched by a bad piece,
     * and empty folders that are missing (paths inside the share).
     */
    badFiles?: string[];
  }
  | { event: "warning"; message: string }
  | { event: "info"; message: string }
  | { event: "error"; message: string };

/** Name of an event kind. */
export type EventName = P2PEvent["event"];

/** Where a role sends what happens. Implementations must not throw. */
export interface EventSink {
  emit(event: P2PEvent): void;
}

/** A sink that drops everything (library use, tests). */
export const NULL_SINK: EventSink = { emit() {} };
