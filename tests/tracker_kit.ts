/**
 * @module tracker_kit
 * Helpers for the tracker end-to-end tests: a `tracker` child read event by event (its port
 * taken from the `listening` event), its `/stats` JSON fetched and polled until a condition
 * holds (a bounded loop on an observable, never a bare sleep), and small HTTP helpers. Does I/O.
 *
 * Builds on tests/helpers.ts (spawnCli, waitFor); every child started here is stopped and
 * awaited by its owner, because the ops and resources sanitizers are on.
 */

import assert from "node:assert/strict";
import { trackerFetch, type TrackerTrust } from "../lib/https_trust.ts";
import { type CliResult, type EventLog, spawnCli } from "./helpers.ts";

/** Limit for a tracker to print its `listening` event. */
const LISTEN_TIMEOUT_MS = 15_000;
/** Grace after SIGTERM before a stuck tracker is killed outright. */
const STOP_GRACE_MS = 5_000;
/** Gap between two `/stats` polls. */
const POLL_MS = 50;

/** One swarm as `/stats` lists it. */
export interface SwarmRow {
  infoHash: string;
  name?: string;
  seeders: number;
  leechers: number;
  completed: number;
}

/** The `/stats` body. */
export interface TrackerStats {
  swarmCount: number;
  peerCount: number;
  swarms: SwarmRow[];
}

/** A running `tracker --json` child. */
export interface TrackerProcess extends AsyncDisposable {
  port: number;
  /** `http://127.0.0.1:PORT` (`https://` with `tls`) */
  base: string;
  /** `127.0.0.1:PORT`, as `--tracker` takes it (with `tls`: `https://127.0.0.1:PORT/announce`). */
  address: string;
  child: Deno.ChildProcess;
  log: EventLog;
  stderr(): string;
  /** Sends `signal` (default SIGTERM), then waits for the exit and the end of its output. */
  stop(signal?: Deno.Signal): Promise<CliResult>;
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

/**
 * Starts `tracker --host 127.0.0.1 --port PORT --json` under `--allow-net=127.0.0.1` and waits
 * for its `listening` event.
 *
 * @param options `port` (default 0: any free one), `interval` in seconds, `tls` certificate and
 *   key files for `--tls-cert`/`--tls-key` (read permission is granted for those two only)
 * @throws {Error} when it exits or stays silent instead of listening
 */
export async function startTracker(
  options: { port?: number; interval?: number; tls?: { certFile: string; keyFile: string } } = {},
): Promise<TrackerProcess> {
  const tls = options.tls;
  const running = spawnCli([
    "tracker",
    "--host",
    "127.0.0.1",
    "--port",
    String(options.port ?? 0),
    ...(options.interval === undefined ? [] : ["--interval", String(options.interval)]),
    ...(tls ? ["--tls-cert", tls.certFile, "--tls-key", tls.keyFile] : []),
    "--json",
  ], {
    perms: [
      "--allow-net=127.0.0.1",
      ...(tls ? [`--allow-read=${tls.certFile},${tls.keyFile}`] : []),
    ],
  });
  const scheme = tls ? "https" : "http";
  const stop = async (signal: Deno.Signal = "SIGTERM"): Promise<CliResult> => {
    killQuietly(running.child, signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      timer = setTimeout(() => killQuietly(running.child, "SIGKILL"), STOP_GRACE_MS);
      return await running.finished();
    } finally {
      clearTimeout(timer);
    }
  };
  let port: number;
  try {
    const listening = await running.log.next("listening", {
      match: (e) => e.service === "tracker",
      timeoutMs: LISTEN_TIMEOUT_MS,
      what: "the tracker's listening event",
    });
    assert.equal(listening.host, "127.0.0.1");
    assert.equal(typeof listening.port, "number");
    port = listening.port as number;
    assert.ok(port > 0, `tracker listening on port ${port}`);
    assert.equal(listening.url, `${scheme}://127.0.0.1:${port}/announce`);
  } catch (err) {
    const result = await stop("SIGKILL");
    throw new Error(
      `tracker did not start (exit ${result.code}): ${(err as Error).message}\n${result.stderr}`,
    );
  }
  return {
    port,
    base: `${scheme}://127.0.0.1:${port}`,
    address: tls ? `https://127.0.0.1:${port}/announce` : `127.0.0.1:${port}`,
    child: running.child,
    log: running.log,
    stderr: running.stderr,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop("SIGKILL");
    },
  };
}

/** A fetched answer: status, headers and the whole body as text (the body is always read). */
export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
}

/** Fetches `url` and reads the body to the end (an unread body would leak a resource). */
export async function fetchText(url: string, init?: RequestInit): Promise<HttpAnswer> {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/**
 * The tracker's `/stats`, checked to be a 200 JSON answer.
 *
 * @param base `http://HOST:PORT`, or `https://HOST:PORT` fetched with `trust`
 * @param trust for an HTTPS tracker: its CA file or pin
 */
export async function fetchStats(base: string, trust?: TrackerTrust): Promise<TrackerStats> {
  const answer = trust === undefined
    ? await fetchText(`${base}/stats`)
    : await trackerFetch(`${base}/stats`, {}, trust).then(async (res) => ({
      status: res.status,
      headers: res.headers,
      text: await res.text(),
    }));
  assert.equal(answer.status, 200, `/stats answered ${answer.status}: ${answer.text}`);
  assert.match(answer.headers.get("content-type") ?? "", /^application\/json/);
  return JSON.parse(answer.text) as TrackerStats;
}

/** The row for `infoHash` in `stats`, if any. */
export function swarmOf(stats: TrackerStats, infoHash: string): SwarmRow | undefined {
  return stats.swarms.find((s) => s.infoHash === infoHash);
}

/**
 * Polls `/stats` every 50 ms until `condition` holds, and returns those stats (an HTTPS
 * tracker's with `options.trust`).
 *
 * @throws {Error} after `timeoutMs`, naming `what` and the last stats seen
 */
export async function pollStats(
  base: string,
  condition: (stats: TrackerStats) => boolean,
  options: { timeoutMs: number; what: string; trust?: TrackerTrust },
): Promise<TrackerStats> {
  const deadline = performance.now() + options.timeoutMs;
  let last: TrackerStats | undefined;
  for (;;) {
    last = await fetchStats(base, options.trust);
    if (condition(last)) return last;
    if (performance.now() >= deadline) {
      throw new Error(
        `timed out after ${options.timeoutMs} ms waiting for ${options.what}; last /stats: ${
          JSON.stringify(last)
        }`,
      );
    }
    await new Promise<void>((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/**
 * Sends raw bytes to `127.0.0.1:port` and returns everything the server answers until it
 * closes (for requests `fetch` cannot make, such as a GET with a body).
 */
export async function rawHttp(port: number, request: string): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const bytes = new TextEncoder().encode(request);
  let done = 0;
  while (done < bytes.length) done += await conn.write(bytes.subarray(done));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(16 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return new TextDecoder().decode(
    chunks.reduce((all, c) => {
      const joined = new Uint8Array(all.length + c.length);
      joined.set(all);
      joined.set(c, all.length);
      return joined;
    }, new Uint8Array(0)),
  );
}

/** A random lower-case hex string of `chars` characters (an info hash: 64, a peer id: 40). */
export function randomHex(chars: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(chars / 2)));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, chars);
}
