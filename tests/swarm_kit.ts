/**
 * @module swarm_kit
 * Helpers for swarm end-to-end tests and the swarm benchmark: CLI children whose `--json` events
 * are stamped with the time they arrived (so a rate can be measured from the events' own byte
 * counts), swarm downloaders that listen on 127.0.0.1, rates over a window of progress events,
 * and the byte counts a finished seeder or downloader reported. Does I/O.
 *
 * Builds on tests/helpers.ts (EventLog, readJsonEvents, perms, MAIN). Every child started here
 * has an owner that stops and awaits it, because the ops and resources sanitizers are on.
 */

import assert from "node:assert/strict";
import {
  type CliResult,
  EventLog,
  type JsonEvent,
  MAIN,
  parseEvents,
  perms,
  readJsonEvents,
} from "./helpers.ts";

/** Grace after a polite signal before a stuck child is killed outright. */
const STOP_GRACE_MS = 10_000;
/** Default limit for a child to print its `listening` event. */
const LISTEN_TIMEOUT_MS = 15_000;

/** A `--json` event and when this process read it (`performance.now()`, ms). */
export interface TimedEvent {
  atMs: number;
  event: JsonEvent;
}

/** A CLI child read event by event, each event stamped with its arrival time. */
export interface TimedCli extends AsyncDisposable {
  child: Deno.ChildProcess;
  /** Events as they come, with waits (see {@linkcode EventLog.next}). */
  log: EventLog;
  /** Every event so far with the time it arrived. */
  timed: TimedEvent[];
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Waits for the exit and for both streams to be read to the end. */
  finished(): Promise<CliResult>;
  /** Sends `signal` (default SIGTERM) unless it exited, then waits; SIGKILL after a grace. */
  stop(signal?: Deno.Signal): Promise<CliResult>;
  /** The port of its first `listening` event for peers. */
  listenPort(timeoutMs?: number): Promise<number>;
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

/**
 * Starts the CLI (with `--json` among `args`) under narrow permission flags and reads its
 * output as it comes; its stdout is read twice (a tee): once by an {@linkcode EventLog} for
 * waits, once to stamp every event with its arrival time.
 */
export function spawnTimed(args: string[], options: { perms: string[] }): TimedCli {
  for (const flag of options.perms) {
    assert.match(flag, /^--allow-[a-z]+=./, `permission flag ${flag} is not narrow`);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...options.perms, MAIN, ...args],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const [forLog, forTimes] = child.stdout.tee();
  const log = new EventLog(forLog);
  const timed: TimedEvent[] = [];
  const timesDone = (async () => {
    for await (const event of readJsonEvents(forTimes)) {
      timed.push({ atMs: performance.now(), event });
    }
  })().catch(() => {}); // a bad line is reported by the EventLog
  let stderrText = "";
  const stderrDone = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderrText += decoder.decode(chunk, { stream: true });
    stderrText += decoder.decode();
  })();
  let result: Promise<CliResult> | undefined;
  const finished = (): Promise<CliResult> => {
    result ??= (async () => {
      const [status] = await Promise.all([
        child.status,
        stderrDone,
        log.done.catch(() => {}),
        timesDone,
      ]);
      return {
        code: status.code,
        signal: status.signal,
        stdout: log.events.map((e) => JSON.stringify(e)).join("\n"),
        stderr: stderrText,
      };
    })();
    return result;
  };
  const stop = async (signal: Deno.Signal = "SIGTERM"): Promise<CliResult> => {
    killQuietly(child, signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      timer = setTimeout(() => killQuietly(child, "SIGKILL"), STOP_GRACE_MS);
      return await finished();
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    child,
    log,
    timed,
    stderr: () => stderrText,
    finished,
    stop,
    async listenPort(timeoutMs = LISTEN_TIMEOUT_MS) {
      const listening = await log.next("listening", {
        match: (e) => e.service === "peer",
        timeoutMs,
        what: "the peer listening event",
      });
      assert.equal(typeof listening.port, "number", JSON.stringify(listening));
      assert.ok((listening.port as number) > 0, `listening on port ${listening.port}`);
      return listening.port as number;
    },
    [Symbol.asyncDispose]: async () => {
      await stop("SIGKILL");
    },
  };
}

/** What a swarm downloader is told. */
export interface SwarmDownloadOptions {
  meta: string;
  workdir: string;
  /** `HOST:PORT` of a tracker to find peers through. */
  tracker?: string;
  /** Ports on 127.0.0.1 given with `--peer` (repeated). */
  peerPorts?: number[];
  /** More flags (rates, slots, `--keep-seeding`...). */
  extraArgs?: string[];
}

/** The `download` command line of a swarm member that serves others on 127.0.0.1. */
export function swarmDownloadArgs(options: SwarmDownloadOptions): string[] {
  return [
    "download",
    "--meta",
    options.meta,
    "--workdir",
    options.workdir,
    "--listen-host",
    "127.0.0.1",
    ...(options.tracker === undefined ? [] : ["--tracker", options.tracker]),
    ...(options.peerPorts ?? []).flatMap((port) => ["--peer", `127.0.0.1:${port}`]),
    ...(options.extraArgs ?? []),
    "--json",
  ];
}

/**
 * Starts a downloader that also serves (`--listen-host 127.0.0.1`, any free port) under
 * `--allow-net=127.0.0.1` and read/write access to its metadata and work folder only.
 */
export function startSwarmDownloader(options: SwarmDownloadOptions): TimedCli {
  return spawnTimed(swarmDownloadArgs(options), {
    perms: perms.download(options.meta, options.workdir),
  });
}

/** One point of a byte counter: its value and when it was read. */
export interface ByteSample {
  atMs: number;
  bytes: number;
}

/** The `field` counter of every `progress` event, with its arrival time. */
export function progressSamples(
  timed: readonly TimedEvent[],
  field: "bytesDownloaded" | "bytesUploaded" | "bytesDone",
): ByteSample[] {
  return timed
    .filter((t) => t.event.event === "progress" && typeof t.event[field] === "number")
    .map((t) => ({ atMs: t.atMs, bytes: t.event[field] as number }));
}

/** A rate measured between two samples. */
export interface WindowRate {
  bytesPerSec: number;
  bytes: number;
  windowMs: number;
  from: ByteSample;
  to: ByteSample;
}

/**
 * The rate between the first sample at or above `fromBytes` (skipping start-up) and the last
 * sample at or below `toBytes` (skipping the tail, where a transfer runs out of work).
 *
 * @throws {Error} when fewer than two samples fall in that range
 */
export function windowRate(
  samples: readonly ByteSample[],
  options: { fromBytes: number; toBytes: number },
): WindowRate {
  const from = samples.find((s) => s.bytes >= options.fromBytes);
  const to = samples.findLast((s) => s.bytes <= options.toBytes);
  if (!from || !to || to.atMs <= from.atMs) {
    throw new Error(
      `no window from ${options.fromBytes} to ${options.toBytes} bytes in ${samples.length} samples: ${
        JSON.stringify(samples.map((s) => s.bytes))
      }`,
    );
  }
  const bytes = to.bytes - from.bytes;
  const windowMs = to.atMs - from.atMs;
  return { bytesPerSec: (bytes * 1000) / windowMs, bytes, windowMs, from, to };
}

/**
 * Bytes a seeder uploaded in all, from the `stopped; uploaded N bytes` info it prints when
 * stopped (SIGTERM or Ctrl-C); a downloader seeding on says `stopped seeding; uploaded N bytes
 * in all`, which is read too.
 *
 * @throws {Error} when the run printed neither
 */
export function uploadedOnStop(result: CliResult): number {
  for (const event of parseEvents(result.stdout)) {
    if (event.event !== "info") continue;
    const match = /^stopped(?: seeding)?; uploaded (\d+) bytes/.exec(String(event.message));
    if (match) return Number(match[1]);
  }
  throw new Error(
    `no "stopped; uploaded N bytes" info in the output (exit ${result.code}):\n${result.stdout}\n${result.stderr}`,
  );
}

/** Milliseconds left until `deadlineMs` (a `performance.now()` time), at least 1. */
export function msLeft(deadlineMs: number): number {
  return Math.max(1, Math.round(deadlineMs - performance.now()));
}
