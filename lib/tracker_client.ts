/**
 * @module tracker_client
 * Talking to trackers: normalising tracker addresses people type, one announce over `fetch`
 * (over {@linkcode trackerFetch} for `https:` trackers, with the chosen certificate trust), and
 * the {@linkcode Announcer} that keeps a seeder or downloader registered for as long as it runs.
 * Shell: does network I/O and owns timers (all cleared on stop).
 *
 * A tracker's answer is hostile input: its size is bounded, its JSON checked field by field,
 * and peers with unusable addresses are dropped rather than trusted.
 */

import { errorMessage, UsageError } from "./errors.ts";
import type { EventSink } from "./events.ts";
import {
  parsePin,
  TrackerCertificateError,
  trackerFetch,
  type TrackerTrust,
} from "./https_trust.ts";
import { normalizeIp } from "./swarm_table.ts";

/** Port assumed when a tracker is given as a bare host with no scheme and no port. */
export const DEFAULT_TRACKER_PORT = 7000;
/** Largest tracker answer read, in bytes (200 peers take about 20 KiB). */
export const MAX_RESPONSE_BYTES = 256 * 1024;
/** Most peers taken from one answer. */
export const MAX_PEERS_PER_RESPONSE = 1000;
/** Default time one announce may take. */
export const DEFAULT_ANNOUNCE_TIMEOUT_MS = 10_000;
/** Time the goodbye (`stopped`) may take, so that shutting down stays quick. */
export const STOP_TIMEOUT_MS = 2_000;
/** Backoff after a failed announce: first wait, doubling up to the cap. */
export const BACKOFF_INITIAL_MS = 1_000;
export const BACKOFF_MAX_MS = 60_000;
/** Bounds on the re-announce interval a tracker may ask for, in seconds. */
export const MIN_INTERVAL_SEC = 1;
export const MAX_INTERVAL_SEC = 3600;
/** Longest name sent along (the tracker refuses longer ones). */
export const MAX_NAME_CHARS = 255;

/** What a peer tells a tracker about itself. */
export interface AnnounceParams {
  /** 64 lower-case hex characters. */
  infoHash: string;
  /** 40 hex characters (20 bytes). */
  peerId: string;
  /** The port this peer accepts connections on. */
  port: number;
  left: number;
  uploaded: number;
  downloaded: number;
  /** File name, shown on the tracker's page. */
  name?: string;
}

/** An announce event; `""` is a regular re-announce. */
export type ClientAnnounceEvent = "started" | "completed" | "stopped" | "";

/** A peer as a tracker lists it. */
export interface TrackerPeer {
  host: string;
  port: number;
  peerId?: string;
}

/** A checked tracker answer. */
export interface AnnounceResult {
  /** Seconds until the next announce, clamped to [1, 3600]. */
  intervalSec: number;
  /** Seconds to wait at least between announces. */
  minIntervalSec: number;
  seeders: number;
  leechers: number;
  peers: TrackerPeer[];
}

/** Options for one {@linkcode announce}. */
export interface AnnounceOptions {
  event?: ClientAnnounceEvent;
  /** Peers wanted (the tracker caps it). */
  numwant?: number;
  signal?: AbortSignal;
  timeoutMs?: number;
  /**
   * How an `https:` tracker's certificate is trusted: a CA file (`--tracker-ca`), a pinned
   * SHA-256 fingerprint (`--tracker-pin`), or neither (the system roots). Unused for `http:`.
   */
  trust?: TrackerTrust;
}

/**
 * Turns a tracker address as people type it into the announce URL.
 *
 * `127.0.0.1:7000`, `http://127.0.0.1:7000` and `http://127.0.0.1:7000/announce` all give
 * `http://127.0.0.1:7000/announce`; a bare host gets port 7000. A path is kept only when it ends
 * in `/announce` (a tracker behind a proxy prefix).
 *
 * @param text the address from a flag or a metadata file
 * @returns the normalised announce URL
 * @throws {UsageError} when it is not an http(s) address with a valid port
 * @example normalizeTrackerUrl("10.0.0.5:7000") === "http://10.0.0.5:7000/announce"
 */
export function normalizeTrackerUrl(text: string): string {
  const trimmed = text.trim();
  if (trimmed === "") throw new UsageError("tracker address is empty");
  const hasScheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(trimmed);
  let url: URL;
  try {
    url = new URL(hasScheme ? trimmed : `http://${trimmed}`);
  } catch (err) {
    throw new UsageError(
      `invalid tracker address "${trimmed}" (expected HOST:PORT or http://HOST:PORT/announce)`,
      {
        cause: err,
      },
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(
      `tracker address "${trimmed}" must use http or https, not ${url.protocol.slice(0, -1)}`,
    );
  }
  if (url.hostname === "") throw new UsageError(`tracker address "${trimmed}" has no host`);
  if (url.username !== "" || url.password !== "") {
    throw new UsageError(`tracker address "${trimmed}" must not contain a user name or password`);
  }
  if (url.search !== "" || url.hash !== "") {
    throw new UsageError(`tracker address "${trimmed}" must not contain a query or fragment`);
  }
  const authority = hasScheme ? "" : trimmed.split("/")[0];
  if (!hasScheme && !/:\d+$/.test(authority)) url.port = String(DEFAULT_TRACKER_PORT);
  if (url.port === "0") {
    throw new UsageError(`tracker address "${trimmed}" has port 0`);
  }
  if (url.pathname === "/" || url.pathname === "") {
    url.pathname = "/announce";
  } else if (!url.pathname.endsWith("/announce")) {
    throw new UsageError(
      `tracker address "${trimmed}" has path ${url.pathname}; expected /announce`,
    );
  }
  return url.href;
}

/**
 * Sends one announce and checks the answer.
 *
 * @param url an announce URL (see {@linkcode normalizeTrackerUrl})
 * @param params who we are and how far along
 * @param options the event, `numwant`, a signal, a timeout (default 10 s), and for an `https:`
 *   tracker how its certificate is trusted
 * @returns the tracker's interval, counts and peers (unusable peer entries dropped)
 * @throws {TrackerCertificateError} `tracker https://HOST:PORT/announce: certificate refused:
 *   REASON` when an `https:` tracker's certificate is untrusted, expired, not yet valid, for
 *   another host or not the pinned one (nothing was sent to it);
 *   {UsageError} for an unreadable `trust.caFile` or a malformed `trust.pinSha256`;
 *   {Error} with a one-line message naming the tracker when it is unreachable, slow,
 *   answers with an error, or answers something malformed; the signal's reason when aborted
 */
export async function announce(
  url: string,
  params: AnnounceParams,
  options: AnnounceOptions = {},
): Promise<AnnounceResult> {
  const target = new URL(url);
  const query = target.searchParams;
  query.set("info_hash", params.infoHash);
  query.set("peer_id", params.peerId);
  query.set("port", String(params.port));
  query.set("left", String(params.left));
  query.set("uploaded", String(params.uploaded));
  query.set("downloaded", String(params.downloaded));
  if (options.event) query.set("event", options.event);
  if (options.numwant !== undefined) query.set("numwant", String(options.numwant));
  const name = params.name === undefined ? "" : sanitizeName(params.name);
  if (name !== "") query.set("name", name);

  const timeoutMs = options.timeoutMs ?? DEFAULT_ANNOUNCE_TIMEOUT_MS;
  const timeout = new AbortController();
  const timer = setTimeout(
    () => timeout.abort(new DOMException(`no answer within ${timeoutMs} ms`, "TimeoutError")),
    timeoutMs,
  );
  const signal = options.signal
    ? AbortSignal.any([options.signal, timeout.signal])
    : timeout.signal;
  const label = `tracker ${url}`;
  try {
    let res: Response;
    try {
      res = target.protocol === "https:"
        ? await trackerFetch(target, { signal, redirect: "manual" }, options.trust ?? {}, {
          maxBodyBytes: MAX_RESPONSE_BYTES,
        })
        : await fetch(target, { signal, redirect: "manual" });
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (timeout.signal.aborted) {
        throw new Error(`${label}: ${errorMessage(timeout.signal.reason)}`);
      }
      if (err instanceof TrackerCertificateError) {
        // Its message names the tracker's origin; name the announce URL like every other line.
        const reason = err.message.replace(/^.*?: certificate refused: /s, "");
        throw new TrackerCertificateError(`${label}: certificate refused: ${reason}`, {
          cause: err,
        });
      }
      if (err instanceof UsageError) throw err;
      if (/tracker answer larger than/.test(errorMessage(err))) {
        throw new Error(`${label}: answer too large (over ${MAX_RESPONSE_BYTES} bytes)`, {
          cause: err,
        });
      }
      throw new Error(`${label}: unreachable (${describeFetchError(err)})${schemeHint(url, err)}`, {
        cause: err,
      });
    }
    let text: string;
    try {
      text = await readBounded(res, MAX_RESPONSE_BYTES);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (timeout.signal.aborted) {
        throw new Error(`${label}: ${errorMessage(timeout.signal.reason)}`);
      }
      throw new Error(`${label}: ${errorMessage(err)}`, { cause: err });
    }
    if (!res.ok) {
      const reason = errorField(text) ?? (res.statusText || "no reason given");
      throw new Error(`${label} refused the announce: ${res.status} ${reason}`);
    }
    return parseAnnounceBody(text, params.peerId, label);
  } finally {
    clearTimeout(timer);
  }
}

/** Trims a name to what the tracker accepts (control characters would get the announce refused). */
function sanitizeName(name: string): string {
  return [...name.replace(/[\p{Cc}\uFFFD]/gu, "?")].slice(0, MAX_NAME_CHARS).join("");
}

/**
 * A hint when the failure looks like the wrong scheme: TLS spoken to a plain HTTP tracker, or
 * plain HTTP to an HTTPS one. Empty otherwise.
 */
function schemeHint(url: string, err: unknown): string {
  const inner = err instanceof Error && err.cause instanceof Error ? err.cause : undefined;
  const text = `${errorMessage(err)} ${inner ? errorMessage(inner) : ""}`;
  const https = url.startsWith("https:");
  if (https && /InvalidContentType|wrong version number/.test(text)) {
    return `; the tracker seems to serve plain HTTP: use ${url.replace(/^https:/, "http:")}`;
  }
  if (!https && /invalid HTTP version/i.test(text)) {
    return `; the tracker seems to serve HTTPS: use ${url.replace(/^http:/, "https:")}`;
  }
  return "";
}

/** The useful end of a fetch error: `Connection refused (os error 111)` rather than the URL. */
function describeFetchError(err: unknown): string {
  const inner = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const message = errorMessage(inner);
  const parts = message.split(": ");
  return (parts[parts.length - 1] || message).slice(0, 200);
}

async function readBounded(res: Response, maxBytes: number): Promise<string> {
  const declared = res.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) {
    await res.body?.cancel();
    throw new RangeError(`answer too large (${declared} bytes, limit ${maxBytes})`);
  }
  if (res.body === null) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel();
        throw new RangeError(`answer too large (over ${maxBytes} bytes)`);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw new SyntaxError("answer is not valid UTF-8", { cause: err });
  }
}

function errorField(text: string): string | undefined {
  try {
    const body: unknown = JSON.parse(text);
    if (isObject(body) && typeof body.error === "string") {
      return body.error.replace(/[\p{Cc}]/gu, " ").slice(0, 300);
    }
  } catch {
    // Not JSON: fall back to the status text.
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function count(value: unknown): number {
  return Number.isSafeInteger(value) && (value as number) >= 0 ? value as number : 0;
}

function parseAnnounceBody(text: string, ownPeerId: string, label: string): AnnounceResult {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${label}: answer is not JSON`);
  }
  if (!isObject(body)) throw new Error(`${label}: answer is not a JSON object`);
  const interval = body.interval;
  if (typeof interval !== "number" || !Number.isFinite(interval) || interval <= 0) {
    throw new Error(`${label}: answer has no valid interval`);
  }
  if (!Array.isArray(body.peers)) throw new Error(`${label}: answer has no peers list`);
  const intervalSec = clamp(Math.round(interval), MIN_INTERVAL_SEC, MAX_INTERVAL_SEC);
  const minInterval = body.minInterval;
  const minIntervalSec = typeof minInterval === "number" && Number.isFinite(minInterval)
    ? clamp(Math.round(minInterval), MIN_INTERVAL_SEC, intervalSec)
    : MIN_INTERVAL_SEC;
  const own = ownPeerId.toLowerCase();
  const peers: TrackerPeer[] = [];
  for (const entry of body.peers.slice(0, MAX_PEERS_PER_RESPONSE)) {
    const peer = checkPeer(entry);
    if (peer && peer.peerId !== own) peers.push(peer);
  }
  return {
    intervalSec,
    minIntervalSec,
    seeders: count(body.complete),
    leechers: count(body.incomplete),
    peers,
  };
}

/** A usable peer entry, or `undefined`: only IP literals (never names to resolve) and real ports. */
function checkPeer(entry: unknown): TrackerPeer | undefined {
  if (!isObject(entry) || typeof entry.ip !== "string") return undefined;
  const host = normalizeIp(entry.ip);
  const port = entry.port;
  if (
    host === undefined || !Number.isInteger(port) || (port as number) < 1 ||
    (port as number) > 65535
  ) {
    return undefined;
  }
  const peer: TrackerPeer = { host, port: port as number };
  if (typeof entry.peerId === "string" && /^[0-9a-fA-F]{40}$/.test(entry.peerId)) {
    peer.peerId = entry.peerId.toLowerCase();
  }
  return peer;
}

function peerCount(peers: readonly TrackerPeer[]): string {
  return peers.length === 1 ? "1 peer" : `${peers.length} peers`;
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

/** Waits `ms`, or less when any signal aborts; never rejects, never leaves a timer behind. */
function pause(ms: number, signals: AbortSignal[]): Promise<void> {
  return new Promise((resolve) => {
    if (signals.some((s) => s.aborted)) return resolve();
    const done = () => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const s of signals) s.addEventListener("abort", done, { once: true });
  });
}

/** Settings for an {@linkcode Announcer}. */
export interface AnnouncerOptions {
  /** Announce URLs (normalised or not); each tracker is announced to independently. */
  urls: string[];
  /** Called before every announce, so `left`/`uploaded`/`downloaded` are current. */
  params: () => AnnounceParams;
  /** Receives one `warning` per outage, an `info` when a tracker answers (first time, or again). */
  sink: EventSink;
  /** Receives the peers of every successful answer; must not throw (it is guarded anyway). */
  onPeers?: (peers: TrackerPeer[]) => void;
  /** Peers asked for per announce (default: the tracker's default). */
  numwant?: number;
  /** Time one announce may take (default 10 s). */
  timeoutMs?: number;
  /**
   * How `https:` trackers' certificates are trusted (`--tracker-ca FILE`, `--tracker-pin
   * SHA256`); neither: the system roots. A refused certificate is one `warning` per outage
   * (`tracker URL: certificate refused: REASON; ...`), and announcing goes on retrying with
   * backoff, since the certificate or the trust may be fixed while this runs.
   */
  trust?: TrackerTrust;
  /** Backoff after a failure (defaults 1 s doubling to 60 s); tests shorten it. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

interface TrackerState {
  url: string;
  /** An announce has been sent (so a goodbye is owed). */
  attempted: boolean;
  /** `started` was acknowledged; until then every attempt is a `started`. */
  started: boolean;
  completedPending: boolean;
  failures: number;
  outage: boolean;
  /** What the current outage's warning said: a refused certificate or any other failure. */
  outageKind: "certificate" | "other" | undefined;
  /** Aborted to cut the current wait short (after `completed()`). */
  wake: AbortController;
  /** Resolved after the next attempt ends. */
  waiters: (() => void)[];
}

/**
 * Keeps one share registered with its trackers.
 *
 * `start` announces `started`, then re-announces at the interval each tracker asks for, handing
 * new peers to `onPeers`. An unreachable or refusing tracker costs nothing but a warning: the
 * share keeps its known peers while the announcer retries with exponential backoff, saying so in
 * one `warning` per outage and one `info` when the tracker is back.
 *
 * Call pattern (the owner awaits everything it starts):
 * ```ts
 * const announcer = new Announcer({ urls, params: () => ({ ...current }), sink, onPeers });
 * const running = announcer.start(signal);
 * try {
 *   // ... run the share; when the download finishes: await announcer.completed();
 * } finally {
 *   await announcer.stop(); // sends `stopped` (2 s at most), clears every timer
 *   await running;
 * }
 * ```
 */
export class Announcer {
  #options: AnnouncerOptions;
  #trackers: TrackerState[];
  #halt = new AbortController();
  #loops: Promise<void> | undefined;
  #ended = false;
  #stopping: Promise<void> | undefined;

  /**
   * @param options trackers, the parameter source, the event sink, the peer callback and the
   *   certificate trust for `https:` trackers
   * @throws {UsageError} when a URL is not a tracker address or the pin is malformed
   */
  constructor(options: AnnouncerOptions) {
    if (options.trust?.pinSha256 !== undefined) parsePin(options.trust.pinSha256);
    this.#options = options;
    const urls = [...new Set(options.urls.map(normalizeTrackerUrl))];
    this.#trackers = urls.map((url) => ({
      url,
      attempted: false,
      started: false,
      completedPending: false,
      failures: 0,
      outage: false,
      outageKind: undefined,
      wake: new AbortController(),
      waiters: [],
    }));
  }

  /** The normalised announce URLs, without duplicates. */
  get urls(): string[] {
    return this.#trackers.map((t) => t.url);
  }

  /**
   * Starts announcing to every tracker.
   *
   * @param signal ends the announcing (no goodbye is sent: call {@linkcode stop} for that)
   * @returns a promise that resolves when every tracker loop has ended; it never rejects
   * @throws {Error} when called twice
   */
  start(signal: AbortSignal): Promise<void> {
    if (this.#loops) throw new Error("Announcer.start() called twice");
    const halt = AbortSignal.any([signal, this.#halt.signal]);
    this.#loops = Promise.all(this.#trackers.map((t) => this.#run(t, halt))).then(() => {
      this.#ended = true;
      for (const t of this.#trackers) this.#release(t);
    });
    return this.#loops;
  }

  /**
   * Tells every tracker the download finished, now rather than at the next interval. A tracker
   * that is down gets it with its first successful announce.
   *
   * @returns a promise that resolves after each tracker's next attempt (success or not)
   */
  completed(): Promise<void> {
    const running = this.#loops !== undefined && !this.#ended && !this.#halt.signal.aborted;
    const waits: Promise<void>[] = [];
    for (const t of this.#trackers) {
      t.completedPending = true;
      if (!running) continue;
      waits.push(new Promise((resolve) => t.waiters.push(resolve)));
      t.wake.abort();
    }
    return Promise.all(waits).then(() => {});
  }

  /**
   * Stops announcing and says goodbye (`stopped`) to each tracker announced to, waiting at most
   * about two seconds. Never rejects; safe to call more than once and before `start`.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#halt.abort();
      await this.#loops;
      const goodbyes = this.#trackers.filter((t) => t.attempted).map(async (t) => {
        try {
          await announce(t.url, this.#options.params(), {
            event: "stopped",
            numwant: 0,
            timeoutMs: STOP_TIMEOUT_MS,
            trust: this.#options.trust,
          });
        } catch {
          // Best effort: the tracker drops us after its grace period anyway.
        }
      });
      await Promise.all(goodbyes);
    })();
    return this.#stopping;
  }

  async #run(t: TrackerState, halt: AbortSignal): Promise<void> {
    const initialMs = this.#options.backoffInitialMs ?? BACKOFF_INITIAL_MS;
    const maxMs = this.#options.backoffMaxMs ?? BACKOFF_MAX_MS;
    while (!halt.aborted) {
      const waiting = t.waiters.splice(0);
      const event: ClientAnnounceEvent = !t.started
        ? "started"
        : t.completedPending
        ? "completed"
        : "";
      let delayMs: number;
      try {
        t.attempted = true;
        const result = await announce(t.url, this.#options.params(), {
          event,
          numwant: this.#options.numwant,
          signal: halt,
          timeoutMs: this.#options.timeoutMs,
          trust: this.#options.trust,
        });
        if (event === "completed") t.completedPending = false;
        const first = !t.started;
        t.started = true;
        if (t.outage) {
          this.#emit("info", `tracker ${t.url} is reachable again (${peerCount(result.peers)})`);
        } else if (first) {
          this.#emit("info", `announced to tracker ${t.url} (${peerCount(result.peers)})`);
        }
        t.outage = false;
        t.outageKind = undefined;
        t.failures = 0;
        this.#deliver(result.peers);
        delayMs = t.completedPending ? 0 : result.intervalSec * 1000;
      } catch (err) {
        if (halt.aborted) {
          for (const resolve of waiting) resolve();
          break;
        }
        // One warning per outage; a second only when its cause turns into (or out of) a refused
        // certificate, so a certificate problem is never hidden behind an earlier "unreachable".
        const kind = err instanceof TrackerCertificateError ? "certificate" : "other";
        if (!t.outage || t.outageKind !== kind) {
          t.outage = true;
          t.outageKind = kind;
          this.#emit(
            "warning",
            `${errorMessage(err)}; retrying with backoff, carrying on with known peers`,
          );
        }
        delayMs = Math.min(maxMs, initialMs * 2 ** Math.min(t.failures, 30));
        t.failures++;
      }
      for (const resolve of waiting) resolve();
      // Someone is waiting on an attempt (completed() raced the one just made): go again now.
      if ((t.completedPending || t.waiters.length > 0) && !t.outage) delayMs = 0;
      if (delayMs > 0) await pause(delayMs, [halt, t.wake.signal]);
      if (t.wake.signal.aborted) t.wake = new AbortController();
    }
  }

  #release(t: TrackerState): void {
    for (const resolve of t.waiters.splice(0)) resolve();
  }

  #deliver(peers: TrackerPeer[]): void {
    if (!this.#options.onPeers || peers.length === 0) return;
    try {
      this.#options.onPeers(peers);
    } catch (err) {
      this.#emit("warning", `handling peers from a tracker failed: ${errorMessage(err)}`);
    }
  }

  #emit(kind: "warning" | "info", message: string): void {
    try {
      this.#options.sink.emit({ event: kind, message });
    } catch {
      // A sink must not throw; if one does, announcing goes on regardless.
    }
  }
}
