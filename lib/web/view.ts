/**
 * @module web/view
 * What the web monitor sends to the page: snapshots trimmed to a bounded size (the piece
 * states travel separately, compacted by `piece_map`), and events with long fields cut.
 * Pure: values in, values out.
 */

import type { P2PEvent } from "../events.ts";
import type { PeerSnapshot, ShareSnapshot, TrackerSnapshot } from "../snapshot.ts";

/** Most peers listed on the page (the busiest first); `peerCount` gives them all. */
export const MAX_PEERS_SENT = 100;
/** Most swarms listed on the tracker page (the busiest first); `swarmCount` gives them all. */
export const MAX_SWARMS_SENT = 1000;
/** Longest text field of an event sent to the page. */
export const MAX_EVENT_TEXT_CHARS = 300;
/** Most entries of an array field of an event sent to the page. */
export const MAX_EVENT_ARRAY_ITEMS = 50;

/** A share as the page sees it: the snapshot without its piece states, peers bounded. */
export interface ShareView extends Omit<ShareSnapshot, "pieceStates" | "peers"> {
  /** Connected peers, all of them; `peers` lists at most {@linkcode MAX_PEERS_SENT}. */
  peerCount: number;
  peers: PeerSnapshot[];
  /** The piece states (see `piece_map`): full in `hello`, a delta or absent in updates. */
  pieceMap?: string;
}

/** A tracker as the page sees it. */
export interface TrackerView {
  role: "tracker";
  swarmCount: number;
  seeders: number;
  leechers: number;
  swarms: TrackerSnapshot["swarms"];
}

/** Either view. */
export type MonitorView = ShareView | TrackerView;

/** An event with the wall-clock time (ms since 1970) the monitor received it. */
export interface StampedEvent {
  time: number;
  event: Record<string, unknown> & { event: string };
}

/** One rate sample: seconds on the monitor's clock, download and upload bytes per second. */
export type RateSample = [t: number, down: number, up: number];

/** The first message of every stream: everything needed to draw the page. */
export interface HelloMessage {
  t: number;
  /** `null` while the program cannot give a snapshot yet. */
  view: MonitorView | null;
  history: RateSample[];
  events: StampedEvent[];
  /** The `complete` event, once the download has finished. */
  summary: StampedEvent | null;
}

/** A changed snapshot (`pieceMap`, when present, is a delta or a full map). */
export interface SnapshotMessage {
  t: number;
  view: MonitorView;
}

/** Nothing changed since the last snapshot message; `t` moves the clock on. */
export interface TickMessage {
  t: number;
}

function finite(value: number): number {
  return Number.isFinite(value) ? value : 0;
}

/** The share's view, with no piece map (the caller adds the one it chose). */
export function shareView(snapshot: ShareSnapshot): ShareView {
  const peers = [...snapshot.peers]
    .sort((a, b) =>
      (b.downloadRateBytesPerSec + b.uploadRateBytesPerSec) -
        (a.downloadRateBytesPerSec + a.uploadRateBytesPerSec) ||
      (a.address < b.address ? -1 : a.address > b.address ? 1 : 0)
    )
    .slice(0, MAX_PEERS_SENT)
    .map((p) => ({
      address: String(p.address).slice(0, 100),
      direction: p.direction === "in" ? "in" as const : "out" as const,
      piecesHeld: finite(p.piecesHeld),
      downloadRateBytesPerSec: finite(p.downloadRateBytesPerSec),
      uploadRateBytesPerSec: finite(p.uploadRateBytesPerSec),
      choked: p.choked === true,
      chokingUs: p.chokingUs === true,
      interested: p.interested === true,
    }));
  const eta = snapshot.etaSeconds;
  return {
    role: snapshot.role,
    name: snapshot.name,
    infoHash: snapshot.infoHash,
    bytesTotal: finite(snapshot.bytesTotal),
    pieceLength: finite(snapshot.pieceLength),
    piecesTotal: finite(snapshot.piecesTotal),
    piecesDone: finite(snapshot.piecesDone),
    bytesDone: finite(snapshot.bytesDone),
    downloadRateBytesPerSec: finite(snapshot.downloadRateBytesPerSec),
    uploadRateBytesPerSec: finite(snapshot.uploadRateBytesPerSec),
    bytesDownloaded: finite(snapshot.bytesDownloaded),
    bytesUploaded: finite(snapshot.bytesUploaded),
    etaSeconds: eta !== null && Number.isFinite(eta) && eta >= 0 ? eta : null,
    complete: snapshot.complete === true,
    peerCount: snapshot.peers.length,
    peers,
  };
}

/** The tracker's view: totals, and the busiest swarms. */
export function trackerView(snapshot: TrackerSnapshot): TrackerView {
  let seeders = 0;
  let leechers = 0;
  for (const s of snapshot.swarms) {
    seeders += s.seeders;
    leechers += s.leechers;
  }
  const swarms = [...snapshot.swarms]
    .sort((a, b) =>
      (b.seeders + b.leechers) - (a.seeders + a.leechers) ||
      (a.infoHash < b.infoHash ? -1 : a.infoHash > b.infoHash ? 1 : 0)
    )
    .slice(0, MAX_SWARMS_SENT)
    .map((s) => ({
      infoHash: s.infoHash,
      ...(s.name === undefined ? {} : { name: s.name }),
      seeders: s.seeders,
      leechers: s.leechers,
      completed: s.completed,
    }));
  return { role: "tracker", swarmCount: snapshot.swarms.length, seeders, leechers, swarms };
}

/**
 * A copy of `event` safe to send to a page: text fields cut to
 * {@linkcode MAX_EVENT_TEXT_CHARS} characters, arrays to {@linkcode MAX_EVENT_ARRAY_ITEMS}
 * items (a hostile peer's error message must not bloat every open page).
 */
export function trimEvent(event: P2PEvent): StampedEvent["event"] {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(event)) {
    if (typeof value === "string") {
      out[key] = value.length > MAX_EVENT_TEXT_CHARS
        ? `${value.slice(0, MAX_EVENT_TEXT_CHARS)}...`
        : value;
    } else if (Array.isArray(value)) {
      out[key] = value.slice(0, MAX_EVENT_ARRAY_ITEMS);
    } else {
      out[key] = value;
    }
  }
  return { ...out, event: event.event };
}
