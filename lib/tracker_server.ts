/**
 * @module tracker_server
 * The tracker's HTTP edge: a `Request -> Response` handler over a {@linkcode SwarmTable}. It
 * parses every hostile query into a checked record, answers JSON (and one HTML page for people),
 * and never calls `Deno.serve` itself, so tests need no socket. No I/O of its own; reads a
 * monotonic clock unless one is injected.
 *
 * Routes: `GET /announce`, `GET /scrape?info_hash=...`, `GET /stats`, `GET /`. Every failure is
 * a 4xx with a JSON body `{"error": "..."}`; the handler never throws. See docs/PROTOCOL.md, section 4.
 */

import {
  type AnnounceEvent,
  type AnnounceRecord,
  normalizeIp,
  type SwarmStats,
  type SwarmTable,
} from "./swarm_table.ts";

/** Longest request target (path and query) accepted, in bytes. */
export const MAX_URL_BYTES = 2048;
/** Peers returned when the announce gives no `numwant`. */
export const DEFAULT_NUMWANT = 50;
/** Most peers returned by one announce, whatever `numwant` says. */
export const MAX_NUMWANT = 200;
/** Longest display name accepted on announce (the metadata's own limit is 255 bytes). */
export const MAX_NAME_CHARS = 255;
/** Most info hashes in one scrape. */
export const MAX_SCRAPE_HASHES = 20;
/** Default re-announce interval, in seconds. */
export const DEFAULT_INTERVAL_SEC = 60;

/** Settings for {@linkcode createTrackerHandler}. */
export interface TrackerHandlerOptions {
  /** Re-announce interval handed to peers, in seconds (default 60). */
  intervalSec?: number;
  /** Shortest re-announce interval peers should use, in seconds (default: half the interval). */
  minIntervalSec?: number;
  /**
   * Remote addresses whose announces may name another address in the `ip` parameter, for
   * peers behind the same host or NAT as a trusted relay. From anywhere else `ip` is ignored:
   * otherwise anybody could point a swarm at a third party.
   */
  allowIpFrom?: readonly string[];
  /** Monotonic clock in milliseconds (default `performance.now`); injectable for tests. */
  now?: () => number;
}

/** A tracker request handler: the remote address is the one the connection came from. */
export type TrackerHandler = (req: Request, remote: { hostname: string }) => Response;

/** An announce answer, as sent to peers. */
export interface AnnounceResponseBody {
  /** Seconds until the peer should announce again. */
  interval: number;
  /** Seconds the peer should wait at least between announces. */
  minInterval: number;
  /** Seeders in the swarm. */
  complete: number;
  /** Leechers in the swarm. */
  incomplete: number;
  peers: { ip: string; port: number; peerId: string }[];
}

class BadRequest extends Error {
  override name = "BadRequest";
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const HASH_RE = /^[0-9a-fA-F]{64}$/;
const PEER_ID_RE = /^[0-9a-fA-F]{40}$/;
const INTEGER_RE = /^\d{1,16}$/;
const ANNOUNCE_PARAMS = [
  "info_hash",
  "peer_id",
  "port",
  "event",
  "left",
  "uploaded",
  "downloaded",
  "numwant",
  "ip",
  "name",
];

/**
 * Makes the tracker's request handler.
 *
 * Why a factory: the table and options are bound once, and the result plugs into `Deno.serve`
 * (`(req, info) => handler(req, info.remoteAddr)`) or is called directly in tests.
 *
 * @param table the peer table, shared with whatever runs expiry
 * @param options interval, the `ip` allow-list and the clock
 * @returns a handler that never throws and never reads a request body
 * @throws {RangeError} when an interval or an allow-list entry is invalid
 * @example
 * ```ts
 * const handler = createTrackerHandler(new SwarmTable(), { intervalSec: 60 });
 * Deno.serve((req, info) => handler(req, info.remoteAddr));
 * ```
 */
export function createTrackerHandler(
  table: SwarmTable,
  options: TrackerHandlerOptions = {},
): TrackerHandler {
  const intervalSec = options.intervalSec ?? DEFAULT_INTERVAL_SEC;
  if (!Number.isSafeInteger(intervalSec) || intervalSec < 1) {
    throw new RangeError(`intervalSec must be a positive integer, got ${intervalSec}`);
  }
  const minIntervalSec = options.minIntervalSec ?? Math.max(1, Math.floor(intervalSec / 2));
  if (!Number.isSafeInteger(minIntervalSec) || minIntervalSec < 1 || minIntervalSec > intervalSec) {
    throw new RangeError(
      `minIntervalSec must be an integer from 1 to ${intervalSec}, got ${minIntervalSec}`,
    );
  }
  const allowIpFrom = new Set<string>();
  for (const entry of options.allowIpFrom ?? []) {
    const ip = normalizeIp(entry);
    if (ip === undefined) throw new RangeError(`allowIpFrom: "${entry}" is not an IP address`);
    allowIpFrom.add(ip);
  }
  const now = options.now ?? (() => performance.now());
  const settings = { intervalSec, minIntervalSec, allowIpFrom, now };

  return (req, remote) => {
    try {
      return route(table, settings, req, remote);
    } catch (err) {
      if (err instanceof BadRequest) return jsonError(err.status, err.message);
      return jsonError(500, "internal error");
    }
  };
}

interface Settings {
  intervalSec: number;
  minIntervalSec: number;
  allowIpFrom: Set<string>;
  now: () => number;
}

function route(
  table: SwarmTable,
  settings: Settings,
  req: Request,
  remote: { hostname: string },
): Response {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return jsonError(400, "malformed request URL");
  }
  const targetBytes = new TextEncoder().encode(url.pathname + url.search).length;
  if (targetBytes > MAX_URL_BYTES) {
    return jsonError(414, `request URL too long (${targetBytes} bytes, limit ${MAX_URL_BYTES})`);
  }
  const handlers: Record<string, () => Response> = {
    "/announce": () => announce(table, settings, url.searchParams, remote),
    "/scrape": () => scrape(table, url.searchParams),
    "/stats": () => json(200, statsBody(table)),
    "/": () => html(renderPage(table.stats().swarms, req.headers.get("host"))),
  };
  const handler = Object.hasOwn(handlers, url.pathname) ? handlers[url.pathname] : undefined;
  if (!handler) return jsonError(404, `no such path: ${truncate(url.pathname, 100)}`);
  if (req.method !== "GET") {
    const res = jsonError(405, `method ${truncate(req.method, 20)} not allowed (use GET)`);
    res.headers.set("allow", "GET");
    return res;
  }
  if (hasBody(req)) return jsonError(413, "request body not allowed");
  return handler();
}

/** True when the request carries (or announces) a body; a tracker request never needs one. */
function hasBody(req: Request): boolean {
  if (req.body !== null) return true;
  const length = req.headers.get("content-length");
  if (length !== null && length.trim() !== "0") return true;
  return req.headers.has("transfer-encoding");
}

function announce(
  table: SwarmTable,
  settings: Settings,
  query: URLSearchParams,
  remote: { hostname: string },
): Response {
  const record = parseAnnounce(query, remote.hostname, settings.allowIpFrom);
  const outcome = table.announce(record, settings.now());
  if (!outcome.ok) {
    const res = jsonError(429, outcome.message);
    res.headers.set("retry-after", String(settings.intervalSec));
    return res;
  }
  const body: AnnounceResponseBody = {
    interval: settings.intervalSec,
    minInterval: settings.minIntervalSec,
    complete: outcome.seeders,
    incomplete: outcome.leechers,
    peers: outcome.peers,
  };
  return json(200, body);
}

/**
 * Turns an announce query into a checked record, or throws {@linkcode BadRequest}.
 * The peer's address is the connection's, except from an allow-listed relay.
 */
function parseAnnounce(
  query: URLSearchParams,
  remoteHost: string,
  allowIpFrom: Set<string>,
): AnnounceRecord {
  for (const name of ANNOUNCE_PARAMS) {
    if (query.getAll(name).length > 1) throw new BadRequest(400, `${name} given more than once`);
  }
  const infoHash = hexParam(query, "info_hash", HASH_RE, 64);
  const peerId = hexParam(query, "peer_id", PEER_ID_RE, 40);
  const port = integerParam(query, "port", undefined);
  if (port < 1 || port > 65535) {
    throw new BadRequest(400, `port must be from 1 to 65535, got ${port}`);
  }
  const left = integerParam(query, "left", undefined);
  const uploaded = integerParam(query, "uploaded", 0);
  const downloaded = integerParam(query, "downloaded", 0);
  const numwant = Math.min(MAX_NUMWANT, integerParam(query, "numwant", DEFAULT_NUMWANT));
  const event = eventParam(query.get("event"));
  const name = nameParam(query.get("name"));

  const remoteIp = normalizeIp(remoteHost);
  if (remoteIp === undefined) throw new BadRequest(400, "cannot tell the peer's address");
  let ip = remoteIp;
  const claimed = query.get("ip");
  if (claimed !== null && allowIpFrom.has(remoteIp)) {
    const checked = normalizeIp(claimed);
    if (checked === undefined) {
      throw new BadRequest(
        400,
        `ip must be an IPv4 or IPv6 address, got "${truncate(claimed, 50)}"`,
      );
    }
    ip = checked;
  }
  const record: AnnounceRecord = {
    infoHash,
    peerId,
    ip,
    port,
    left,
    uploaded,
    downloaded,
    event,
    numwant,
  };
  if (name !== undefined) record.name = name;
  return record;
}

function hexParam(query: URLSearchParams, name: string, pattern: RegExp, length: number): string {
  const value = query.get(name);
  if (value === null || value === "") throw new BadRequest(400, `${name} is required`);
  if (!pattern.test(value)) {
    throw new BadRequest(
      400,
      `${name} must be ${length} hex characters, got ${value.length} characters` +
        (value.length === length ? " with a non-hex one" : ""),
    );
  }
  return value.toLowerCase();
}

function integerParam(query: URLSearchParams, name: string, fallback: number | undefined): number {
  const value = query.get(name);
  if (value === null || value === "") {
    if (fallback === undefined) throw new BadRequest(400, `${name} is required`);
    return fallback;
  }
  const number = Number(value);
  if (!INTEGER_RE.test(value) || !Number.isSafeInteger(number)) {
    throw new BadRequest(
      400,
      `${name} must be a non-negative integer, got "${truncate(value, 30)}"`,
    );
  }
  return number;
}

function eventParam(value: string | null): AnnounceEvent {
  if (value === null || value === "" || value === "empty") return "";
  if (value === "started" || value === "completed" || value === "stopped") return value;
  throw new BadRequest(
    400,
    `event must be started, completed, stopped or empty, got "${truncate(value, 30)}"`,
  );
}

function nameParam(value: string | null): string | undefined {
  if (value === null || value === "") return undefined;
  const chars = [...value].length;
  if (chars > MAX_NAME_CHARS) {
    throw new BadRequest(400, `name longer than ${MAX_NAME_CHARS} characters (${chars})`);
  }
  if (/[\p{Cc}\uFFFD]/u.test(value)) {
    throw new BadRequest(400, "name contains a control character or invalid UTF-8");
  }
  return value;
}

function scrape(table: SwarmTable, query: URLSearchParams): Response {
  const hashes = query.getAll("info_hash");
  if (hashes.length === 0) {
    throw new BadRequest(400, "info_hash is required (for all swarms use /stats)");
  }
  if (hashes.length > MAX_SCRAPE_HASHES) {
    throw new BadRequest(
      400,
      `at most ${MAX_SCRAPE_HASHES} info_hash values per scrape, got ${hashes.length}`,
    );
  }
  const swarms: SwarmStats[] = [];
  for (const value of hashes) {
    if (!HASH_RE.test(value)) {
      throw new BadRequest(
        400,
        `info_hash must be 64 hex characters, got ${value.length} characters`,
      );
    }
    swarms.push(table.scrape(value.toLowerCase()));
  }
  return json(200, { swarms });
}

function statsBody(table: SwarmTable) {
  const stats = table.stats();
  return { swarmCount: stats.swarmCount, peerCount: stats.peerCount, swarms: stats.swarms };
}

const COMMON_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
};

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...COMMON_HEADERS, "content-type": "application/json; charset=utf-8" },
  });
}

function jsonError(status: number, message: string): Response {
  return json(status, { error: message });
}

function html(page: string): Response {
  return new Response(page, {
    status: 200,
    headers: {
      ...COMMON_HEADERS,
      "content-type": "text/html; charset=utf-8",
      // Everything the page needs is inline: forbid any other load.
      "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    },
  });
}

function truncate(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars)}...`;
}

const HTML_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

/**
 * Renders the page people see at `/`: each shared file with its seeders and downloaders.
 * Pure, so it can be tested by comparing text.
 *
 * @param swarms the table's stats
 * @param hostHeader the request's `Host` header (hostile: only ever escaped), for the usage hint
 * @returns a complete HTML document with no external assets
 */
export function renderPage(swarms: readonly SwarmStats[], hostHeader: string | null): string {
  const host = hostHeader && hostHeader.length <= 300 ? hostHeader : "HOST:PORT";
  const seeders = swarms.reduce((sum, s) => sum + s.seeders, 0);
  const leechers = swarms.reduce((sum, s) => sum + s.leechers, 0);
  const rows = swarms.map((s) => {
    const title = s.name === undefined
      ? `<code>${escapeHtml(s.infoHash)}</code>`
      : `<bdi>${escapeHtml(s.name)}</bdi><br><code class="hash">${escapeHtml(s.infoHash)}</code>`;
    return `<tr><td>${title}</td><td class="n">${s.seeders}</td><td class="n">${s.leechers}</td>` +
      `<td class="n">${s.completed}</td></tr>`;
  });
  const table = swarms.length === 0 ? "<p>Nothing is being shared through this tracker yet.</p>" : [
    "<table>",
    "<thead><tr><th>File</th><th>Seeders</th><th>Downloading</th><th>Completed</th></tr></thead>",
    `<tbody>${rows.join("\n")}</tbody>`,
    "</table>",
  ].join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30">
<link rel="icon" href="data:,">
<title>p2p-share tracker</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
td.n, th:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: .85em; word-break: break-all; }
code.hash { color: #666; }
.hint { color: #555; }
</style>
</head>
<body>
<h1>p2p-share tracker</h1>
<p>${swarms.length} shared ${swarms.length === 1 ? "file" : "files"}, ${seeders} ${
    seeders === 1 ? "seeder" : "seeders"
  }, ${leechers} downloading. Names are given by the peers and are not verified.</p>
${table}
<p class="hint">Share through this tracker with <code>seed ... --tracker ${escapeHtml(host)}</code>.
The same figures as JSON: <a href="/stats">/stats</a>.</p>
</body>
</html>
`;
}
