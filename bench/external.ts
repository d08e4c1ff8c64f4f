/**
 * @module external
 * The established tools p2p-share is measured against, on the same file and machine:
 * `aria2c` over BitTorrent from a local `aria2c` seeder, `aria2c -x4` over HTTP and `curl` from a
 * local nginx, and `openssl dgst -sha256`. Each figure is the median of N runs; a figure whose
 * tool is not installed (see `bench/setup.sh`) or that fails comes back with `skipped` and the
 * reason instead of throwing, so the rest of the benchmark still runs.
 *
 * For BitTorrent it brings its own pieces: a bencode encoder, a single-file `.torrent` maker
 * (SHA-1 piece hashes with `node:crypto`) and a tiny HTTP tracker (`Deno.serve`, compact peer
 * lists) — no package needed. Everything listens on and talks to 127.0.0.1 only (DHT, local peer
 * discovery and peer exchange are off); every child is killed when its figure is done, and every
 * run is bounded in time. Does process, file and network I/O.
 */

import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { concatBytes } from "../lib/units.ts";
import { settleBeforeRun } from "./settle.ts";

/** One external figure. */
export interface ExternalResult {
  /** What ran, e.g. `aria2c -x4 HTTP (nginx)`. */
  name: string;
  /** Median wall time of the runs, seconds (0 when skipped). */
  seconds: number;
  /** File bytes / seconds / 1e6 (0 when skipped). */
  mbPerSec: number;
  /** Why the figure is missing: the tool is not installed, or it failed. */
  skipped?: string;
}

/** Options shared by the external figures. */
export interface ExternalOptions {
  /** Runs per figure; the median is reported (default 5). */
  runs?: number;
  /** Scratch folder for downloads, configs and logs (default: a new temp folder, removed). */
  workDir?: string;
  /** Limit for one run of a tool, ms (default: 60 s + 1 s per 20 MB of file). */
  runTimeoutMs?: number;
}

const MiB = 1024 * 1024;
/** Piece length of the generated .torrent (aria2 and most clients handle 1 MiB well). */
export const TORRENT_PIECE_BYTES = MiB;
/** aria2c options that keep a BitTorrent client on this machine and quiet. */
const ARIA2_BT_LOCAL = [
  "--enable-dht=false",
  "--enable-dht6=false",
  "--bt-enable-lpd=false",
  "--enable-peer-exchange=false",
  "--disable-ipv6=true",
  "--interface=127.0.0.1",
  "--bt-save-metadata=false",
];
/** aria2c options common to every run: quiet, no proxy, no config file, no allocation pass. */
const ARIA2_COMMON = [
  "--no-conf=true",
  "--quiet=true",
  "--summary-interval=0",
  "--console-log-level=error",
  "--no-proxy=127.0.0.1",
  "--allow-overwrite=true",
  "--auto-file-renaming=false",
  // falloc is aria2's own advice for ext4/xfs/btrfs; "prealloc" (its default) would write the
  // whole file with zeros first and handicap it.
  "--file-allocation=falloc",
];

// ---------------------------------------------------------------------------------------------
// Bencode and .torrent

/** A value bencode can carry. Strings are UTF-8; byte strings are Uint8Array. */
export type Bencodable = number | string | Uint8Array | Bencodable[] | {
  [key: string]: Bencodable;
};

const utf8 = new TextEncoder();

/**
 * Bencodes a value: integers `i42e`, byte strings `4:spam`, lists `l…e`, dictionaries `d…e`
 * with keys in raw byte order as the format requires.
 *
 * @param value an integer, string, byte string, list or dictionary
 * @returns the encoding
 * @throws {TypeError} for a non-integer number or an unsupported value
 * @example
 * ```ts
 * bencode({ spam: ["a", 1] }); // bytes of "d4:spaml1:ai1eee"
 * ```
 */
export function bencode(value: Bencodable): Uint8Array {
  const parts: Uint8Array[] = [];
  encodeInto(value, parts);
  return concatBytes(parts);
}

function encodeInto(value: Bencodable, parts: Uint8Array[]): void {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new TypeError(`Cannot bencode number ${value}`);
    parts.push(utf8.encode(`i${value}e`));
  } else if (typeof value === "string") {
    encodeInto(utf8.encode(value), parts);
  } else if (value instanceof Uint8Array) {
    parts.push(utf8.encode(`${value.length}:`), value);
  } else if (Array.isArray(value)) {
    parts.push(utf8.encode("l"));
    for (const item of value) encodeInto(item, parts);
    parts.push(utf8.encode("e"));
  } else if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value).map((k) => ({ k, bytes: utf8.encode(k) }));
    keys.sort((a, b) => compareBytes(a.bytes, b.bytes));
    parts.push(utf8.encode("d"));
    for (const { k, bytes } of keys) {
      encodeInto(bytes, parts);
      encodeInto(value[k], parts);
    }
    parts.push(utf8.encode("e"));
  } else {
    throw new TypeError(`Cannot bencode ${typeof value}`);
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/** A single-file .torrent and its info hash. */
export interface Torrent {
  /** The bencoded metainfo file. */
  bytes: Uint8Array;
  /** SHA-1 of the bencoded `info` dictionary (20 bytes). */
  infoHash: Uint8Array;
  /** The file's name in the torrent (its basename). */
  name: string;
  pieceLength: number;
  length: number;
}

/**
 * Makes a single-file BitTorrent v1 metainfo for `file`: SHA-1 of every piece, read in large
 * chunks.
 *
 * @param file the file to describe
 * @param options `announce`: the tracker URL; `pieceLength` (default 1 MiB)
 * @returns the .torrent bytes and the info hash
 * @throws {Error} when the file cannot be read
 */
export async function makeTorrent(
  file: string,
  options: { announce: string; pieceLength?: number },
): Promise<Torrent> {
  const pieceLength = options.pieceLength ?? TORRENT_PIECE_BYTES;
  const handle = await open(file, "r");
  try {
    const length = (await handle.stat()).size;
    const count = Math.ceil(length / pieceLength);
    const pieces = new Uint8Array(20 * count);
    const chunk = new Uint8Array(Math.max(pieceLength, 8 * MiB) - (8 * MiB) % pieceLength);
    let index = 0;
    for (let pos = 0; pos < length;) {
      let filled = 0;
      const want = Math.min(chunk.length, length - pos);
      while (filled < want) {
        const { bytesRead } = await handle.read(chunk, filled, want - filled, pos + filled);
        if (bytesRead === 0) throw new Error(`Cannot hash ${file}: it shrank while being read`);
        filled += bytesRead;
      }
      for (let at = 0; at < filled; at += pieceLength) {
        const piece = chunk.subarray(at, Math.min(at + pieceLength, filled));
        pieces.set(createHash("sha1").update(piece).digest(), 20 * index++);
      }
      pos += filled;
    }
    const name = basename(file);
    const info = { length, name, "piece length": pieceLength, pieces };
    const infoHash = new Uint8Array(createHash("sha1").update(bencode(info)).digest());
    const bytes = bencode({ announce: options.announce, "created by": "p2p-share bench", info });
    return { bytes, infoHash, name, pieceLength, length };
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Tracker

/** Swarm state of the bench tracker: peers by peer id, for one info hash. */
export interface TrackerState {
  infoHashHex: string;
  peers: Map<string, { ip: string; port: number; seeder: boolean }>;
  /** Resolves when the first seeder (left=0) has announced. */
  seederSeen: Promise<void>;
  markSeeder: () => void;
}

/** A new, empty swarm for `infoHash` (settable later: `infoHashHex`). */
export function newTrackerState(infoHash?: Uint8Array): TrackerState {
  const { promise, resolve } = Promise.withResolvers<void>();
  return {
    infoHashHex: infoHash ? hex(infoHash) : "",
    peers: new Map(),
    seederSeen: promise,
    markSeeder: resolve,
  };
}

/**
 * The bench tracker as a `Request -> Response` function: answers BitTorrent HTTP announces for
 * the one info hash in `state` with a bencoded compact peer list (every other IPv4 peer), and
 * forgets a peer on `event=stopped`. Query values are percent-decoded to raw bytes, since
 * `info_hash` and `peer_id` are binary.
 *
 * @param request the announce (`GET /announce?info_hash=…&peer_id=…&port=…&left=…`)
 * @param state the swarm
 * @param remoteIp the caller's address, used when the query has no `ip`
 * @returns a bencoded reply (a `failure reason` for a bad or foreign announce)
 */
export function handleAnnounce(request: Request, state: TrackerState, remoteIp: string): Response {
  const reply = (body: Bencodable) =>
    new Response(bencode(body) as Uint8Array<ArrayBuffer>, {
      headers: { "content-type": "text/plain" },
    });
  const url = new URL(request.url);
  if (url.pathname !== "/announce") return new Response("not found", { status: 404 });
  const query = rawQuery(url.search);
  const infoHash = query.get("info_hash");
  const peerId = query.get("peer_id");
  const port = Number(latin1(query.get("port")));
  if (!infoHash || hex(infoHash) !== state.infoHashHex) {
    return reply({ "failure reason": "unknown info_hash" });
  }
  if (!peerId || !Number.isInteger(port) || port < 1 || port > 65535) {
    return reply({ "failure reason": "bad peer_id or port" });
  }
  const id = hex(peerId);
  const event = latin1(query.get("event"));
  if (event === "stopped") {
    state.peers.delete(id);
    return reply({ interval: 60, peers: new Uint8Array(0) });
  }
  const ip = latin1(query.get("ip")) || remoteIp;
  const seeder = latin1(query.get("left")) === "0";
  state.peers.set(id, { ip, port, seeder });
  if (seeder) state.markSeeder();
  const others = [...state.peers].filter(([other, p]) => other !== id && isIpv4(p.ip));
  const compact = new Uint8Array(6 * others.length);
  others.forEach(([, p], i) => {
    compact.set(p.ip.split(".").map(Number), 6 * i);
    compact[6 * i + 4] = p.port >> 8;
    compact[6 * i + 5] = p.port & 0xff;
  });
  const seeders = [...state.peers.values()].filter((p) => p.seeder).length;
  return reply({
    complete: seeders,
    incomplete: state.peers.size - seeders,
    interval: 60,
    "min interval": 1,
    peers: compact,
  });
}

/** A running bench tracker; dispose it to stop it. */
export interface BenchTracker extends AsyncDisposable {
  announceUrl: string;
  state: TrackerState;
}

/**
 * Serves {@linkcode handleAnnounce} on 127.0.0.1, on a port the system picks.
 *
 * @param infoHash the one torrent it tracks (or set `state.infoHashHex` later)
 * @returns the announce URL and the swarm state; `await using` stops the server
 */
export function startBenchTracker(infoHash?: Uint8Array): Promise<BenchTracker> {
  const state = newTrackerState(infoHash);
  const controller = new AbortController();
  const { promise, resolve } = Promise.withResolvers<number>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onListen: ({ port }) => resolve(port),
  }, (request, info) => handleAnnounce(request, state, info.remoteAddr.hostname));
  return promise.then((port) => ({
    announceUrl: `http://127.0.0.1:${port}/announce`,
    state,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await server.finished;
    },
  }));
}

function rawQuery(search: string): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const pair of search.replace(/^\?/, "").split("&")) {
    if (!pair) continue;
    const eq = pair.indexOf("=");
    const key = percentDecode(eq < 0 ? pair : pair.slice(0, eq));
    out.set(new TextDecoder().decode(key), percentDecode(eq < 0 ? "" : pair.slice(eq + 1)));
  }
  return out;
}

function percentDecode(text: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "%" && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      out.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === "+") {
      out.push(0x20);
    } else {
      out.push(...utf8.encode(c));
    }
  }
  return new Uint8Array(out);
}

function latin1(bytes: Uint8Array | undefined): string {
  return bytes ? String.fromCharCode(...bytes) : "";
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function isIpv4(ip: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(ip);
}

// ---------------------------------------------------------------------------------------------
// Processes and ports

/**
 * A port on 127.0.0.1 that was free a moment ago: bound with port 0, read back, released. For
 * tools that must be told their port (aria2c, nginx).
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Full path of `name` on the PATH, or undefined. */
export async function which(name: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const info = await Deno.stat(join(dir, name));
      if (info.isFile && (info.mode ?? 0o111) & 0o111) return join(dir, name);
    } catch { /* not here */ }
  }
  return undefined;
}

/** A started child that is killed (SIGTERM, then SIGKILL after a grace) on dispose. */
interface Daemon extends AsyncDisposable {
  child: Deno.ChildProcess;
  /** Everything it printed so far (stdout and stderr, capped). */
  output: () => string;
}

function spawnDaemon(cmd: string, args: string[]): Daemon {
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).spawn();
  let text = "";
  const collect = async (stream: ReadableStream<Uint8Array<ArrayBuffer>>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      if (text.length < 16_000) text += chunk;
    }
  };
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)]);
  return {
    child,
    output: () => text,
    async [Symbol.asyncDispose]() {
      await stopChild(child, 3000);
      await drained.catch(() => {});
    },
  };
}

/**
 * Rejects when the daemon exits, for racing against its readiness. The rejection is marked
 * handled, so a daemon stopped later (after the race) is not an unhandled rejection.
 */
function failOnExit(daemon: Daemon, what: string): Promise<never> {
  const exited = daemon.child.status.then((s): never => {
    throw new Error(`${what} exited ${s.code}: ${daemon.output().trim().slice(-400)}`);
  });
  exited.catch(() => {});
  return exited;
}

async function stopChild(child: Deno.ChildProcess, graceMs: number): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    return; // already exited
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
      resolve();
    }, graceMs);
  });
  await Promise.race([child.status, killed]);
  clearTimeout(timer);
  await child.status;
}

/**
 * Runs a command to completion and returns its wall time in seconds. Killed after `timeoutMs`.
 *
 * @throws {Error} when it exits non-zero or times out, with the end of its stderr
 */
export async function timeRun(
  cmd: string,
  args: string[],
  options: { timeoutMs: number },
): Promise<number> {
  const start = performance.now();
  const child = new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    stopChild(child, 2000).catch(() => {});
  }, options.timeoutMs);
  try {
    const { code, stderr } = await child.output();
    const seconds = (performance.now() - start) / 1000;
    if (timedOut) throw new Error(`${basename(cmd)} timed out after ${options.timeoutMs} ms`);
    if (code !== 0) {
      const tail = new TextDecoder().decode(stderr).trim().slice(-400);
      throw new Error(`${basename(cmd)} exited ${code}${tail ? `: ${tail}` : ""}`);
    }
    return seconds;
  } finally {
    clearTimeout(timer);
  }
}

/** Connects to 127.0.0.1:port until it answers or `timeoutMs` passes. */
async function waitForPort(port: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      if (performance.now() > deadline) {
        throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Median of `runs` timed runs. Each starts from {@linkcode settleBeforeRun} (untimed): no run
 * pays for the writeback of the previous run's downloaded file, and all start from the same
 * kind of free memory.
 */
async function medianSeconds(runs: number, once: (i: number) => Promise<number>) {
  const all: number[] = [];
  for (let i = 0; i < runs; i++) {
    await settleBeforeRun();
    all.push(await once(i));
  }
  return median(all);
}

/** Scratch folder: the caller's, or a fresh temp folder removed on dispose. */
async function scratch(workDir: string | undefined, prefix: string) {
  const path = await Deno.makeTempDir({ dir: workDir, prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

function settle(
  name: string,
  sizeBytes: number,
  work: () => Promise<number>,
): Promise<ExternalResult> {
  return work().then(
    (seconds) => ({ name, seconds, mbPerSec: sizeBytes / seconds / 1e6 }),
    (error) => ({
      name,
      seconds: 0,
      mbPerSec: 0,
      skipped: `failed: ${error instanceof Error ? error.message : String(error)}`,
    }),
  );
}

function missing(name: string, tool: string): ExternalResult {
  return {
    name,
    seconds: 0,
    mbPerSec: 0,
    skipped: `${tool} not installed; bench/setup.sh installs it`,
  };
}

function limits(sizeBytes: number, options: ExternalOptions) {
  return {
    runs: Math.max(1, options.runs ?? 5),
    timeoutMs: options.runTimeoutMs ?? 60_000 + sizeBytes / 20e6 * 1000,
  };
}

// ---------------------------------------------------------------------------------------------
// Figures

/**
 * `openssl dgst -sha256 FILE`: the hashing bar for `p2p-share create`.
 *
 * @param file the file (warm in the page cache for a fair figure)
 * @param options runs and limits
 * @returns the median time, or `skipped` when openssl is missing or fails
 */
export async function benchOpensslSha256(
  file: string,
  options: ExternalOptions = {},
): Promise<ExternalResult> {
  const name = "openssl dgst -sha256";
  const openssl = await which("openssl");
  if (!openssl) return missing(name, "openssl");
  const size = (await Deno.stat(file)).size;
  const { runs, timeoutMs } = limits(size, options);
  return settle(
    name,
    size,
    () => medianSeconds(runs, () => timeRun(openssl, ["dgst", "-sha256", file], { timeoutMs })),
  );
}

/** A running nginx serving one folder on 127.0.0.1; dispose it to stop it. */
export interface StaticServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT/` */
  baseUrl: string;
}

/**
 * Starts nginx in the foreground as one process (`daemon off`, `master_process off`, so it
 * needs no privileges and drops none) with a minimal config in `confDir`: listen on
 * 127.0.0.1:PORT, `root` = `root`, sendfile on, no access log, pid, logs and temp paths in
 * `confDir`.
 *
 * @param nginx the nginx binary
 * @param options `root`: the folder to serve; `confDir`: where its config and logs go
 * @returns the base URL; `await using` stops it
 * @throws {Error} when it does not start listening within 10 s
 */
export async function startNginx(
  nginx: string,
  options: { root: string; confDir: string },
): Promise<StaticServer> {
  const { root, confDir } = options;
  const port = freePort();
  const q = (path: string) => JSON.stringify(path);
  const conf = `# written by bench/external.ts for one benchmark run
daemon off;
master_process off;
worker_processes 1;
pid ${q(join(confDir, "nginx.pid"))};
error_log ${q(join(confDir, "error.log"))} warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path ${q(join(confDir, "client_body"))};
  proxy_temp_path ${q(join(confDir, "proxy"))};
  fastcgi_temp_path ${q(join(confDir, "fastcgi"))};
  uwsgi_temp_path ${q(join(confDir, "uwsgi"))};
  scgi_temp_path ${q(join(confDir, "scgi"))};
  server {
    listen 127.0.0.1:${port};
    root ${q(root)};
    location / { }
  }
}
`;
  const confFile = join(confDir, "nginx.conf");
  await Deno.writeTextFile(confFile, conf);
  const daemon = spawnDaemon(nginx, [
    "-p",
    confDir,
    "-c",
    confFile,
    "-e",
    join(confDir, "error.log"),
  ]);
  try {
    await Promise.race([waitForPort(port, 10_000, "nginx"), failOnExit(daemon, "nginx")]);
  } catch (error) {
    await daemon[Symbol.asyncDispose]();
    throw error;
  }
  return {
    baseUrl: `http://127.0.0.1:${port}/`,
    [Symbol.asyncDispose]: () => daemon[Symbol.asyncDispose](),
  };
}

/**
 * `curl` and `aria2c -x4` downloading the file over HTTP from a local nginx (started once,
 * stopped at the end). curl writes straight to a file and verifies nothing; aria2c uses four
 * connections of ranged requests.
 *
 * @param file the file to serve (its folder becomes nginx's root)
 * @param options runs and limits
 * @returns `[curl, aria2c -x4]`, each skipped with a reason when its tool or nginx is missing
 */
export async function benchHttp(
  file: string,
  options: ExternalOptions = {},
): Promise<[ExternalResult, ExternalResult]> {
  const curlName = "curl HTTP (nginx, no verification)";
  const ariaName = "aria2c -x4 HTTP (nginx)";
  const [nginx, curl, aria2c] = await Promise.all(
    ["nginx", "curl", "aria2c"].map((t) => which(t)),
  );
  if (!nginx) return [missing(curlName, "nginx"), missing(ariaName, "nginx")];
  const size = (await Deno.stat(file)).size;
  const { runs, timeoutMs } = limits(size, options);
  const url = `${encodeURIComponent(basename(file))}`;
  await using dir = await scratch(options.workDir, "http-");
  let server: StaticServer;
  try {
    server = await startNginx(nginx, { root: dirname(file), confDir: dir.path });
  } catch (error) {
    const why = `failed: ${error instanceof Error ? error.message : String(error)}`;
    return [
      { name: curlName, seconds: 0, mbPerSec: 0, skipped: why },
      { name: ariaName, seconds: 0, mbPerSec: 0, skipped: why },
    ];
  }
  await using _server = server;
  const out = join(dir.path, "out.bin");
  const check = async (seconds: number) => {
    const got = (await Deno.stat(out)).size;
    await Deno.remove(out);
    if (got !== size) throw new Error(`downloaded ${got} bytes, expected ${size}`);
    return seconds;
  };
  const curlResult = curl
    ? await settle(curlName, size, () =>
      medianSeconds(runs, async () =>
        check(
          await timeRun(
            curl,
            ["-sS", "--fail", "--noproxy", "*", "-o", out, server.baseUrl + url],
            {
              timeoutMs,
            },
          ),
        )))
    : missing(curlName, "curl");
  const ariaResult = aria2c
    ? await settle(ariaName, size, () =>
      medianSeconds(runs, async () =>
        check(
          await timeRun(aria2c, [
            ...ARIA2_COMMON,
            "-x4",
            "-s4",
            `--dir=${dir.path}`,
            "--out=out.bin",
            server.baseUrl + url,
          ], { timeoutMs }),
        )))
    : missing(ariaName, "aria2c");
  return [curlResult, ariaResult];
}

/**
 * `aria2c` downloading the file over BitTorrent from a local `aria2c` seeder: a .torrent made
 * here (1 MiB pieces), a tracker served here, DHT, LPD and peer exchange off, both clients bound
 * to 127.0.0.1. The seeder checks the file (`-V`) and announces once; each run then times a fresh
 * downloader from start to exit (`--seed-time=0`: every piece SHA-1-checked, file complete).
 *
 * @param file the file to share
 * @param options runs and limits
 * @returns the median download time, or `skipped` when aria2c is missing or fails
 */
export async function benchAria2BitTorrent(
  file: string,
  options: ExternalOptions = {},
): Promise<ExternalResult> {
  const name = "aria2c BitTorrent (aria2c seeder)";
  const aria2c = await which("aria2c");
  if (!aria2c) return missing(name, "aria2c");
  const size = (await Deno.stat(file)).size;
  const { runs, timeoutMs } = limits(size, options);
  return await settle(name, size, async () => {
    await using dir = await scratch(options.workDir, "bt-");
    // The announce URL goes into the torrent, so the tracker starts first and is told the info
    // hash once the torrent is made.
    await using tracker = await startBenchTracker();
    const torrent = await makeTorrent(file, { announce: tracker.announceUrl });
    tracker.state.infoHashHex = hex(torrent.infoHash);
    const torrentFile = join(dir.path, "payload.torrent");
    await Deno.writeFile(torrentFile, torrent.bytes);
    await using seeder = spawnDaemon(aria2c, [
      ...ARIA2_COMMON,
      ...ARIA2_BT_LOCAL,
      `--torrent-file=${torrentFile}`,
      `--dir=${dirname(file)}`,
      "--check-integrity=true",
      "--seed-ratio=0.0",
      `--listen-port=${freePort()}`,
      "--console-log-level=warn",
    ]);
    await Promise.race([
      waitFor(tracker.state.seederSeen, timeoutMs, "the aria2c seeder's announce"),
      failOnExit(seeder, "aria2c seeder"),
    ]);
    return await medianSeconds(runs, async (i) => {
      const runDir = join(dir.path, `dl${i}`);
      const seconds = await timeRun(aria2c, [
        ...ARIA2_COMMON,
        ...ARIA2_BT_LOCAL,
        `--torrent-file=${torrentFile}`,
        `--dir=${runDir}`,
        "--seed-time=0",
        `--listen-port=${freePort()}`,
      ], { timeoutMs });
      const got = (await Deno.stat(join(runDir, torrent.name))).size;
      await Deno.remove(runDir, { recursive: true });
      if (got !== size) throw new Error(`downloaded ${got} bytes, expected ${size}`);
      return seconds;
    });
  });
}

async function waitFor(promise: Promise<void>, timeoutMs: number, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Every external figure on one file, one after the other (never concurrently, so they do not
 * compete for the two cores): openssl, curl, aria2c -x4 HTTP, aria2c BitTorrent.
 *
 * @param file the file (the same one p2p-share is measured on)
 * @param options runs and limits
 * @returns the figures, skipped ones included with their reasons
 */
export async function benchExternal(
  file: string,
  options: ExternalOptions = {},
): Promise<ExternalResult[]> {
  const openssl = await benchOpensslSha256(file, options);
  const [curl, aria2Http] = await benchHttp(file, options);
  const aria2Bt = await benchAria2BitTorrent(file, options);
  return [openssl, curl, aria2Http, aria2Bt];
}

if (import.meta.main) {
  const [file, runs] = Deno.args;
  if (!file) {
    console.error("usage: deno run -A bench/external.ts FILE [RUNS]");
    Deno.exit(2);
  }
  for (const r of await benchExternal(file, { runs: Number(runs ?? 3) })) {
    console.log(
      r.skipped
        ? `${r.name}: skipped (${r.skipped})`
        : `${r.name}: ${r.seconds.toFixed(2)} s, ${r.mbPerSec.toFixed(0)} MB/s`,
    );
  }
}
