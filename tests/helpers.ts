/**
 * @module helpers
 * Shared kit for the end-to-end tests: temp folders, random files, running the real CLI under
 * narrow permission flags, a seeder child read event by event, a gate proxy that stalls a
 * download at a chosen point, and waits that always end (a timeout with a clear message,
 * never a sleep). Does I/O.
 *
 * Everything started here has an owner that closes it, because the ops and resources
 * sanitizers are on: children are awaited, their streams read to the end, timers cleared.
 */

import assert from "node:assert/strict";
import { join } from "node:path";

/** The CLI under test. */
export const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Default limit for one CLI run. */
const RUN_TIMEOUT_MS = 60_000;
/** Default limit for a seeder to ingest and start serving. */
const SERVE_TIMEOUT_MS = 30_000;
/** Grace after SIGTERM before a stuck child is killed outright. */
const STOP_GRACE_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Waiting

/**
 * Resolves with the promise's value, or with the first truthy value of the predicate (checked
 * now and then every 10 ms), and rejects after `timeoutMs` with `timed out after N ms waiting
 * for WHAT`. The timer is always cleared.
 */
export async function waitFor<T>(
  condition: Promise<T> | (() => T | Promise<T>),
  timeoutMs: number,
  what: string,
): Promise<NonNullable<T>> {
  const started = performance.now();
  const timeoutError = () => new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  if (typeof condition !== "function") {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const value = await Promise.race([
        condition,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(timeoutError()), timeoutMs);
        }),
      ]);
      return value as NonNullable<T>;
    } finally {
      clearTimeout(timer);
    }
  }
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (performance.now() - started > timeoutMs) throw timeoutError();
    await new Promise<void>((resolve) => setTimeout(resolve, 10));
  }
}

// ---------------------------------------------------------------------------------------------
// Files

/** A temp folder removed (with everything in it) on `await using` exit. */
export interface TempDir extends AsyncDisposable {
  path: string;
  /** A path inside the folder. */
  join(...parts: string[]): string;
}

/** Makes a temp folder; dispose it with `await using` (or call `[Symbol.asyncDispose]`). */
export async function tempDir(prefix = "p2p_e2e_"): Promise<TempDir> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    join: (...parts) => join(path, ...parts),
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Largest buffer `crypto.getRandomValues` fills at once. */
const RANDOM_CHUNK_BYTES = 64 * 1024;

/** Writes `bytes` random bytes to `path` (filled 64 KiB at a time, written 1 MiB at a time). */
export async function randomFile(path: string, bytes: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const buf = new Uint8Array(1024 * 1024);
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, buf.length);
    for (let at = 0; at < n; at += RANDOM_CHUNK_BYTES) {
      crypto.getRandomValues(buf.subarray(at, Math.min(n, at + RANDOM_CHUNK_BYTES)));
    }
    let done = 0;
    while (done < n) done += await file.write(buf.subarray(done, n));
    left -= n;
  }
}

/** Asserts that two files hold the same bytes, naming the first offset that differs. */
export async function assertSameFile(actual: string, expected: string): Promise<void> {
  const [a, b] = [await Deno.stat(actual), await Deno.stat(expected)];
  assert.equal(a.size, b.size, `${actual} is ${a.size} bytes, expected ${b.size}`);
  using fa = await Deno.open(actual);
  using fb = await Deno.open(expected);
  const bufA = new Uint8Array(1024 * 1024);
  const bufB = new Uint8Array(1024 * 1024);
  let offset = 0;
  while (offset < a.size) {
    const n = Math.min(bufA.length, a.size - offset);
    await readExactly(fa, bufA.subarray(0, n));
    await readExactly(fb, bufB.subarray(0, n));
    for (let i = 0; i < n; i++) {
      if (bufA[i] !== bufB[i]) {
        assert.fail(`${actual} differs from ${expected} at byte ${offset + i}`);
      }
    }
    offset += n;
  }
}

async function readExactly(file: Deno.FsFile, buf: Uint8Array): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const n = await file.read(buf.subarray(done));
    if (n === null) throw new RangeError(`file ended ${buf.length - done} bytes early`);
    done += n;
  }
}

/** True when `path` exists (any kind of entry). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Sorted names in a folder. */
export async function listDir(path: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(path)) names.push(entry.name);
  return names.sort();
}

/** Reads `length` bytes at `offset` of a file. */
export async function readAt(path: string, offset: number, length: number): Promise<Uint8Array> {
  using file = await Deno.open(path);
  await file.seek(offset, Deno.SeekMode.Start);
  const buf = new Uint8Array(length);
  await readExactly(file, buf);
  return buf;
}

/** Inverts every byte of `[offset, offset + length)` in place (the file keeps its inode). */
export async function damageFile(path: string, offset: number, length: number): Promise<void> {
  const bytes = await readAt(path, offset, length);
  for (let i = 0; i < bytes.length; i++) bytes[i] ^= 0xff;
  using file = await Deno.open(path, { write: true });
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
  await file.syncData();
}

/** Parses a state file's `have` text (`0-99,150`) into sorted piece indexes. */
export function parseRanges(text: string): number[] {
  if (text === "") return [];
  const out: number[] = [];
  for (const part of text.split(",")) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    assert.ok(match, `malformed piece range "${part}" in "${text}"`);
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    assert.ok(last >= first, `backwards piece range "${part}"`);
    for (let i = first; i <= last; i++) out.push(i);
  }
  return out;
}

/** The pieces a state file lists as verified, or `undefined` when it is missing or unreadable. */
export async function stateHave(statePath: string): Promise<number[] | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(statePath);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  try {
    const state = JSON.parse(text) as { have?: unknown };
    return typeof state.have === "string" ? parseRanges(state.have) : undefined;
  } catch {
    return undefined; // caught mid-replace would be a bug; callers assert on what they need
  }
}

// ---------------------------------------------------------------------------------------------
// Events

/** One `--json` event line. */
export type JsonEvent = { event: string } & Record<string, unknown>;

/**
 * Yields the JSON object of every line of `stream` (a `--json` stdout).
 *
 * @throws {SyntaxError} on a line that is not a JSON object with an `event` field: `--json`
 *   promises nothing else on stdout
 */
export async function* readJsonEvents(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<JsonEvent> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  let finished = false;
  const parse = (line: string): JsonEvent => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new SyntaxError(`not a JSON line on a --json stdout: ${JSON.stringify(line)}`);
    }
    if (
      typeof value !== "object" || value === null ||
      typeof (value as { event?: unknown }).event !== "string"
    ) {
      throw new SyntaxError(`JSON line without an "event" field: ${line}`);
    }
    return value as JsonEvent;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        finished = true;
        buffered += decoder.decode();
        break;
      }
      buffered += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line !== "") yield parse(line);
      }
    }
    if (buffered.trim() !== "") yield parse(buffered.trim());
  } finally {
    // Stopped early (or a bad line): close our end so the child is not blocked on a full pipe.
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** Parses a finished run's `--json` stdout. */
export function parseEvents(stdout: string): JsonEvent[] {
  return stdout.split("\n").filter((l) => l.trim() !== "").map((line) => {
    try {
      const value = JSON.parse(line);
      assert.equal(typeof value?.event, "string", `no "event" field: ${line}`);
      return value as JsonEvent;
    } catch (err) {
      throw new SyntaxError(`not a JSON event line: ${JSON.stringify(line)}`, { cause: err });
    }
  });
}

/** The only event named `name` in `events`; fails when there is none or more than one. */
export function onlyEvent(events: JsonEvent[], name: string): JsonEvent {
  const found = events.filter((e) => e.event === name);
  assert.equal(
    found.length,
    1,
    `expected one "${name}" event, got ${found.length}: ${
      JSON.stringify(events.map((e) => e.event))
    }`,
  );
  return found[0];
}

/** A child's `--json` stdout, collected as it arrives, with waits for particular events. */
export class EventLog {
  readonly events: JsonEvent[] = [];
  /** Settles when the stream ended (rejects on a line that is not a JSON event). */
  readonly done: Promise<void>;
  #ended = false;
  #error: unknown;
  #waiters = new Set<() => void>();

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.#pump(stream);
    this.done.catch(() => {}); // reported to waiters and to whoever awaits `done`
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const event of readJsonEvents(stream)) {
        this.events.push(event);
        for (const wake of this.#waiters) wake();
      }
    } catch (err) {
      this.#error = err;
      throw err;
    } finally {
      this.#ended = true;
      for (const wake of this.#waiters) wake();
    }
  }

  /**
   * The first event (already seen or still to come) named `name` for which `match` holds.
   *
   * @throws {Error} when the stream ends first, or after `timeoutMs`
   */
  async next(
    name: string,
    options: { match?: (event: JsonEvent) => boolean; timeoutMs?: number; what?: string } = {},
  ): Promise<JsonEvent> {
    const what = options.what ?? `a "${name}" event`;
    const find = () => this.events.find((e) => e.event === name && (options.match?.(e) ?? true));
    let wake = () => {};
    const found = new Promise<JsonEvent>((resolve, reject) => {
      wake = () => {
        const event = find();
        if (event) resolve(event);
        else if (this.#ended) {
          reject(
            new Error(
              `stream ended without ${what}${
                this.#error ? ` (${(this.#error as Error).message})` : ""
              }; events: ${JSON.stringify(this.events.map((e) => e.event))}`,
            ),
          );
        }
      };
    });
    this.#waiters.add(wake);
    try {
      wake();
      return await waitFor(found, options.timeoutMs ?? RUN_TIMEOUT_MS, what);
    } finally {
      this.#waiters.delete(wake);
    }
  }

  /** All events named `name` seen so far. */
  all(name: string): JsonEvent[] {
    return this.events.filter((e) => e.event === name);
  }
}

// ---------------------------------------------------------------------------------------------
// Running the CLI

/** Narrow permission flags for each role, as the README documents them. */
export const perms = {
  create: (file: string, outDir: string): string[] => [
    `--allow-read=${file}`,
    `--allow-write=${outDir}`,
  ],
  seed: (meta: string, source: string | undefined, workdir: string): string[] => [
    "--allow-net=127.0.0.1",
    `--allow-read=${[meta, ...(source === undefined ? [] : [source]), workdir].join(",")}`,
    `--allow-write=${workdir}`,
  ],
  download: (meta: string, workdir: string): string[] => [
    "--allow-net=127.0.0.1",
    `--allow-read=${meta},${workdir}`,
    `--allow-write=${workdir}`,
  ],
  verify: (meta: string, file: string): string[] => [`--allow-read=${meta},${file}`],
};

/** What a finished CLI run gave. */
export interface CliResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

function cliCommand(args: string[], options: { perms: string[]; cwd?: string }): Deno.Command {
  for (const flag of options.perms) {
    // -A or a bare --allow-x would hide a missing narrow grant: the tests must not use them.
    assert.match(flag, /^--allow-[a-z]+=./, `permission flag ${flag} is not narrow`);
  }
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...options.perms, MAIN, ...args],
    cwd: options.cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/**
 * Runs the CLI to the end under the given permission flags.
 *
 * @throws {Error} when it runs longer than `timeoutMs` (it is killed first)
 */
export async function runCli(
  args: string[],
  options: { perms: string[]; cwd?: string; timeoutMs?: number },
): Promise<CliResult> {
  const child = cliCommand(args, options).spawn();
  const timeoutMs = options.timeoutMs ?? RUN_TIMEOUT_MS;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, timeoutMs);
  try {
    const out = await child.output();
    const decoder = new TextDecoder();
    const result: CliResult = {
      code: out.code,
      signal: out.signal,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
    if (timedOut) {
      throw new Error(
        `p2p-share ${
          args.join(" ")
        } still running after ${timeoutMs} ms; stderr:\n${result.stderr}`,
      );
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/** A CLI child still running, its `--json` stdout read as it comes. */
export interface RunningCli {
  child: Deno.ChildProcess;
  log: EventLog;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Waits for the exit and for both streams to be read to the end. */
  finished(): Promise<CliResult>;
}

/** Starts the CLI (with `--json` among `args`) and reads its output as it comes. */
export function spawnCli(args: string[], options: { perms: string[]; cwd?: string }): RunningCli {
  const child = cliCommand(args, options).spawn();
  const log = new EventLog(child.stdout);
  let stderrText = "";
  const stderrDone = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderrText += decoder.decode(chunk, { stream: true });
    stderrText += decoder.decode();
  })();
  let result: Promise<CliResult> | undefined;
  return {
    child,
    log,
    stderr: () => stderrText,
    finished() {
      result ??= (async () => {
        const [status] = await Promise.all([
          child.status,
          stderrDone,
          log.done.catch(() => {}),
        ]);
        return {
          code: status.code,
          signal: status.signal,
          stdout: log.events.map((e) => JSON.stringify(e)).join("\n"),
          stderr: stderrText,
        };
      })();
      return result;
    },
  };
}

/** Sends `signal` to a child unless it already exited. */
function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

/** A running seeder. */
export interface Seeder extends AsyncDisposable {
  port: number;
  child: Deno.ChildProcess;
  /** Every event it printed so far (more arrive while it runs). */
  events: JsonEvent[];
  log: EventLog;
  stderr(): string;
  /** SIGTERM, then waits for the exit and the end of its output. */
  stop(): Promise<CliResult>;
}

/**
 * Starts `seed --host 127.0.0.1 --port 0 --json` and waits for its `serving` event.
 *
 * @param options `source` to ingest (omit to seed what `workdir` holds); `extraArgs`;
 *   `readPaths` more files the seeder may read (e.g. a `--tracker-ca` file)
 * @throws {Error} when it exits or stays silent instead of serving
 */
export async function startSeeder(options: {
  meta: string;
  workdir: string;
  source?: string;
  extraArgs?: string[];
  readPaths?: string[];
  timeoutMs?: number;
}): Promise<Seeder> {
  const args = [
    "seed",
    "--meta",
    options.meta,
    "--workdir",
    options.workdir,
    ...(options.source === undefined ? [] : ["--source", options.source]),
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--json",
    ...(options.extraArgs ?? []),
  ];
  const seedPerms = perms.seed(options.meta, options.source, options.workdir);
  const extraRead = options.readPaths ?? [];
  const running = spawnCli(args, {
    perms: extraRead.length === 0
      ? seedPerms
      : seedPerms.map((p) => p.startsWith("--allow-read=") ? `${p},${extraRead.join(",")}` : p),
  });
  const stop = async (): Promise<CliResult> => {
    killQuietly(running.child, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      timer = setTimeout(() => killQuietly(running.child, "SIGKILL"), STOP_GRACE_MS);
      return await running.finished();
    } finally {
      clearTimeout(timer);
    }
  };
  let serving: JsonEvent;
  try {
    serving = await running.log.next("serving", {
      timeoutMs: options.timeoutMs ?? SERVE_TIMEOUT_MS,
      what: "the seeder's serving event",
    });
  } catch (err) {
    const result = await stop();
    throw new Error(
      `seeder did not start serving (exit ${result.code}): ${
        (err as Error).message
      }\n${result.stderr}`,
    );
  }
  assert.equal(
    typeof serving.port,
    "number",
    `serving event without a port: ${JSON.stringify(serving)}`,
  );
  assert.ok((serving.port as number) > 0, "serving on port 0");
  return {
    port: serving.port as number,
    child: running.child,
    events: running.log.events,
    log: running.log,
    stderr: running.stderr,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/** Runs `create FILE --piece-size SIZE --json` and returns the metadata path and its event. */
export async function createMeta(
  file: string,
  options: { pieceSize?: string; output?: string; extraArgs?: string[] } = {},
): Promise<{ meta: string; created: JsonEvent }> {
  const meta = options.output ?? `${file}.p2pmeta`;
  const outDir = meta.slice(0, meta.lastIndexOf("/")) || "/";
  const result = await runCli([
    "create",
    file,
    ...(options.pieceSize ? ["--piece-size", options.pieceSize] : []),
    ...(options.output ? ["-o", options.output] : []),
    ...(options.extraArgs ?? []),
    "--json",
  ], { perms: perms.create(file, outDir) });
  assert.equal(result.code, 0, `create failed: ${result.stderr}`);
  return { meta, created: onlyEvent(parseEvents(result.stdout), "created") };
}

/** Runs `download --json` to the end; returns the result and its parsed events. */
export async function runDownload(options: {
  meta: string;
  workdir: string;
  port: number;
  parallel?: number;
  timeoutMs?: number;
}): Promise<CliResult & { events: JsonEvent[] }> {
  const result = await runCli([
    "download",
    "--meta",
    options.meta,
    "--host",
    "127.0.0.1",
    "--port",
    String(options.port),
    "--workdir",
    options.workdir,
    ...(options.parallel === undefined ? [] : ["--parallel", String(options.parallel)]),
    "--json",
  ], { perms: perms.download(options.meta, options.workdir), timeoutMs: options.timeoutMs });
  return { ...result, events: parseEvents(result.stdout) };
}

/** The download command line (for {@linkcode spawnCli}). */
export function downloadArgs(meta: string, workdir: string, port: number, parallel = 4): string[] {
  return [
    "download",
    "--meta",
    meta,
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--workdir",
    workdir,
    "--parallel",
    String(parallel),
    "--json",
  ];
}

// ---------------------------------------------------------------------------------------------
// Network

/** A local port nobody listens on: bound on port 0, noted, then closed. */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A TCP proxy that forwards everything until `passBytes` have gone downstream, then stalls. */
export interface GateProxy extends AsyncDisposable {
  port: number;
  /** Bytes passed from the target to clients so far. */
  passed(): number;
  /** Closes the listener and every connection, and waits for every task. */
  stop(): Promise<void>;
}

/**
 * Starts a proxy on 127.0.0.1 to `targetPort` that passes the first `passBytes` bytes coming
 * back from the target (over all connections together) and then holds the rest, so a download
 * through it stops part-way and stays there: a deterministic "in the middle" without timing.
 */
export function startGateProxy(targetPort: number, passBytes: number): GateProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let passed = 0;
  let release = () => {};
  const stopped = new Promise<void>((resolve) => (release = resolve));
  const closeConn = (conn: Deno.Conn) => {
    if (!conns.delete(conn)) return;
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };
  const pump = async (from: Deno.Conn, to: Deno.Conn, gated: boolean) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) return;
        let allowed = n;
        if (gated) {
          allowed = Math.max(0, Math.min(n, passBytes - passed));
          passed += allowed;
        }
        let done = 0;
        while (done < allowed) done += await to.write(buf.subarray(done, allowed));
        if (allowed < n) {
          await stopped; // hold: nothing more goes through until the proxy stops
          return;
        }
      }
    } catch {
      // A side went away (the downloader was killed, or the proxy is stopping).
    }
  };
  const serveOne = async (client: Deno.Conn) => {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
    } catch {
      closeConn(client);
      return;
    }
    conns.add(upstream);
    const up = pump(client, upstream, false);
    const down = pump(upstream, client, true);
    await Promise.race([up, down]);
    // One direction ended: close both so the other direction's read ends too.
    closeConn(client);
    closeConn(upstream);
    await Promise.all([up, down]);
  };
  const acceptLoop = (async () => {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch {
        return; // listener closed
      }
      conns.add(client);
      const task = serveOne(client).finally(() => tasks.delete(task));
      tasks.add(task);
    }
  })();
  const stop = async () => {
    release();
    try {
      listener.close();
    } catch {
      // Already closed.
    }
    await acceptLoop;
    for (const conn of [...conns]) closeConn(conn);
    while (tasks.size > 0) await Promise.allSettled([...tasks]);
  };
  return {
    port: (listener.addr as Deno.NetAddr).port,
    passed: () => passed,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
