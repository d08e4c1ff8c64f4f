/**
 * @module cli/render
 * Turns events into text for people: log lines, and the live progress line drawn on a
 * terminal. Pure: events in, strings out, so the display is tested by comparing text.
 */

import type { P2PEvent } from "../events.ts";
import { formatBytes, formatSeconds } from "../units.ts";

/** Which program role is speaking; it prefixes every line, as in the original design. */
export type Role = "create" | "seed" | "client" | "tracker" | "verify" | "info";

/** A rendered line and the stream it belongs on. */
export interface Line {
  text: string;
  stream: "out" | "err";
}

/** Formats a rate as megabytes per second. */
export function formatRate(bytesPerSec: number): string {
  return `${(bytesPerSec / 1e6).toFixed(1)} MB/s`;
}

/**
 * A log line for `event`, or `undefined` for events that have no line of their own (progress
 * is drawn separately).
 */
export function renderLine(event: P2PEvent, role: Role): Line | undefined {
  const out = (text: string): Line => ({ text: `[${role}] ${text}`, stream: "out" });
  const err = (text: string): Line => ({ text: `[${role}] ${text}`, stream: "err" });
  switch (event.event) {
    case "created": {
      const what = event.directory
        ? `${event.name}/, ${formatBytes(event.bytes)} in ${event.files ?? 0} files`
        : `${event.name}, ${formatBytes(event.bytes)}`;
      return out(
        `wrote ${event.path} (${what}, ${event.pieces} pieces of ${
          formatBytes(event.pieceLength)
        })\n[${role}] info hash ${event.infoHash}`,
      );
    }
    case "share":
      return {
        text: [
          event.path,
          `  name:         ${event.name}`,
          `  size:         ${formatBytes(event.bytes)} (${event.bytes} bytes)`,
          `  pieces:       ${event.pieces} of ${formatBytes(event.pieceLength)}`,
          `  info hash:    ${event.infoHash}`,
          `  trackers:     ${event.trackers.length ? event.trackers.join(", ") : "(none)"}`,
          ...(event.comment ? [`  comment:      ${event.comment}`] : []),
          ...(event.createdBy ? [`  created by:   ${event.createdBy}`] : []),
          ...(event.creationDate ? [`  created:      ${event.creationDate}`] : []),
          ...(event.directory && event.files ? fileListing(event.files) : []),
        ].join("\n"),
        stream: "out",
      };
    case "listening":
      if (event.service === "tracker") {
        return { text: `tracker listening on ${event.host}:${event.port}`, stream: "out" };
      }
      if (event.service === "web") {
        return out(`web monitor on ${event.url ?? `${event.host}:${event.port}`}`);
      }
      return undefined; // the serving line says it for peers
    case "ingested":
      return out(
        `ingested ${event.pieces}/${event.piecesTotal} verified pieces from ${event.source}`,
      );
    case "serving":
      return out(
        `serving ${event.name} (pieces=${event.pieces}) on ${event.host}:${event.port}\n[${role}] hint: on downloader → ${event.hint}`,
      );
    case "rechecking":
      return out(`rechecking ${event.path}: ${event.reason}`);
    case "file_complete":
      return out(`file complete: ${event.path} (${formatBytes(event.bytes)})`);
    case "started":
      return out(
        `requesting ${event.piecesNeeded} pieces with ${event.connections} workers from ${event.peer}`,
      );
    case "progress":
      return out(progressText(event));
    case "peer_connected":
      return role === "client" ? undefined : out(`peer ${event.peer} connected`);
    case "peer_disconnected":
      return role === "client"
        ? undefined
        : out(`peer ${event.peer} disconnected: ${event.reason}`);
    case "piece_failed":
      return err(`warning: ${event.reason}`);
    case "complete":
      return out(
        `download complete → ${event.path} (${
          formatBytes(event.bytes)
        }, fetched ${event.piecesFetched}/${event.piecesTotal} pieces in ${
          event.seconds.toFixed(2)
        }s${
          event.seconds > 0 && event.piecesFetched > 0
            ? `, ${formatRate(event.bytesFetched / event.seconds)}`
            : ""
        })`,
      );
    case "verified": {
      if (event.ok) {
        return out(
          `OK: ${event.path} matches (${event.piecesGood}/${event.piecesTotal} pieces verified)`,
        );
      }
      const pieces = event.badPieces.length > 0
        ? `: ${event.badPieces.slice(0, 50).join(", ")}${
          event.badPieces.length > 50 ? ", ..." : ""
        }`
        : "";
      const files = event.badFiles && event.badFiles.length > 0
        ? `; bad files: ${event.badFiles.slice(0, 20).join(", ")}${
          event.badFiles.length > 20 ? ", ..." : ""
        }`
        : "";
      return err(
        `FAILED: ${event.path} has ${event.badPieces.length} bad pieces of ${event.piecesTotal}${pieces}${files}`,
      );
    }
    case "warning":
      return err(`warning: ${event.message}`);
    case "info":
      return out(event.message);
    case "error":
      return { text: `error: ${event.message}`, stream: "err" };
  }
}

/** The `files:` section of `info` for a folder: a count, then one line per entry. */
function fileListing(files: { path: string; bytes: number; dir: boolean }[]): string[] {
  const folders = files.filter((f) => f.dir).length;
  const count = `${files.length - folders} files${
    folders > 0 ? `, ${folders} empty folder${folders === 1 ? "" : "s"}` : ""
  }`;
  return [
    `  files:        ${count}`,
    ...files.map((f) =>
      f.dir
        ? `    ${"folder".padStart(10)}  ${f.path}/`
        : `    ${formatBytes(f.bytes).padStart(10)}  ${f.path}`
    ),
  ];
}

/** The progress summary: pieces, bytes, rate, ETA, peers. */
export function progressText(event: Extract<P2PEvent, { event: "progress" }>): string {
  const percent = event.bytesTotal > 0 ? (100 * event.bytesDone) / event.bytesTotal : 100;
  const mb = (bytesPerSec: number) => (bytesPerSec / 1e6).toFixed(1);
  const eta = event.etaSeconds === null ? "--" : formatSeconds(event.etaSeconds);
  return `${event.piecesDone}/${event.piecesTotal} pieces ${formatBytes(event.bytesDone)}/${
    formatBytes(event.bytesTotal)
  } (${percent.toFixed(1)}%) ↓${mb(event.rateBytesPerSec)} ↑${
    mb(event.uploadRateBytesPerSec)
  } MB/s ETA ${eta} peers ${event.peers}`;
}

/** The live progress line for a terminal `columns` wide: a bar, then the summary. */
export function renderProgressBar(
  event: Extract<P2PEvent, { event: "progress" }>,
  role: Role,
  columns: number,
): string {
  // The line must stay shorter than the terminal, or it wraps and `\r` can no longer redraw it.
  const limit = Math.max(columns - 1, 0);
  const head = `[${role}] `;
  const summary = progressText(event);
  const room = limit - head.length - summary.length - 3; // "[", "] "
  const width = Math.min(30, room);
  const fraction = event.bytesTotal > 0 ? event.bytesDone / event.bytesTotal : 1;
  const filled = Math.round(width * fraction);
  const bar = width >= 5 ? `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ` : "";
  return `${head}${bar}${summary}`.slice(0, limit);
}
