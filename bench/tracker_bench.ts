/**
 * @module tracker_bench
 * Tracker throughput: starts `main.ts tracker` as a child process on 127.0.0.1, registers
 * 10,000 peers across 100 swarms, then measures announces per second and latency p50/p99 from
 * this process over loopback, with a bounded count and time. Does network and process I/O.
 *
 * Run alone: `deno run --allow-read --allow-net=127.0.0.1 --allow-run bench/tracker_bench.ts`
 * (add `--in-process` to serve the handler inside this process instead of a child).
 */

import { fileURLToPath } from "node:url";
import { SwarmTable } from "../lib/swarm_table.ts";
import { createTrackerHandler } from "../lib/tracker_server.ts";

/** What {@linkcode benchTracker} measured. */
export interface TrackerBenchResult {
  announcesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Peers registered before measuring. */
  peers: number;
  /** Swarms they were spread over. */
  swarms: number;
}

/** Knobs for {@linkcode benchTracker}; the defaults are the issue's workload. */
export interface TrackerBenchOptions {
  /** Serve the handler in this process instead of spawning `main.ts tracker` (default false). */
  inProcess?: boolean;
  peers?: number;
  swarms?: number;
  /** Stop measuring after this many announces... */
  maxAnnounces?: number;
  /** ...or after this many seconds, whichever comes first. */
  maxSeconds?: number;
  /** Announces in flight at once. */
  concurrency?: number;
  /** Time the child may take to print its listening line. */
  startTimeoutMs?: number;
}

interface RunningTracker {
  port: number;
  close(): Promise<void>;
}

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/**
 * Measures the tracker under load. Everything stays on 127.0.0.1; the child is always stopped.
 *
 * @param options workload and where the tracker runs
 * @returns announces per second and latency percentiles of the measured phase
 * @throws {Error} when the tracker does not start or an announce fails
 */
export async function benchTracker(options: TrackerBenchOptions = {}): Promise<TrackerBenchResult> {
  const peers = options.peers ?? 10_000;
  const swarms = options.swarms ?? 100;
  const maxAnnounces = options.maxAnnounces ?? 20_000;
  const maxMs = (options.maxSeconds ?? 20) * 1000;
  const concurrency = options.concurrency ?? 64;

  const tracker = options.inProcess
    ? startInProcess()
    : await startChild(options.startTimeoutMs ?? 30_000);
  const client = Deno.createHttpClient({});
  try {
    const base = `http://127.0.0.1:${tracker.port}/announce`;
    const infoHashes = Array.from({ length: swarms }, (_, i) => hex(i + 1, 64));
    const urlFor = (peer: number, event: string, numwant: number) => {
      const query = new URLSearchParams({
        info_hash: infoHashes[peer % swarms],
        peer_id: hex(peer + 1, 40),
        port: String(1024 + (peer % 64_000)),
        left: String(peer % 4 === 0 ? 0 : 1_000_000),
        uploaded: "0",
        downloaded: "0",
        numwant: String(numwant),
      });
      if (event) query.set("event", event);
      return `${base}?${query}`;
    };

    // Register every peer (not timed).
    await runPool(peers, concurrency, Infinity, (i) => request(client, urlFor(i, "started", 0)));

    // Measure regular re-announces from random registered peers, asking for the default 50.
    const latencies: number[] = [];
    const started = performance.now();
    const deadline = started + maxMs;
    await runPool(maxAnnounces, concurrency, deadline, async () => {
      const peer = Math.floor(Math.random() * peers);
      const t0 = performance.now();
      await request(client, urlFor(peer, "", 50));
      latencies.push(performance.now() - t0);
    });
    const elapsedSec = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      announcesPerSec: Math.round(latencies.length / elapsedSec),
      p50Ms: round(percentile(latencies, 0.5)),
      p99Ms: round(percentile(latencies, 0.99)),
      peers,
      swarms,
    };
  } finally {
    client.close();
    await tracker.close();
  }
}

async function request(client: Deno.HttpClient, url: string): Promise<void> {
  const res = await fetch(url, { client });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`announce failed: ${res.status} ${body.slice(0, 200)}`);
}

/** Runs `task(0..count-1)` with at most `concurrency` in flight, starting none after `deadline`. */
async function runPool(
  count: number,
  concurrency: number,
  deadline: number,
  task: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      await task(next++);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

function startInProcess(): RunningTracker {
  const controller = new AbortController();
  const handler = createTrackerHandler(new SwarmTable());
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    (req, info) => handler(req, info.remoteAddr),
  );
  return {
    port: server.addr.port,
    async close() {
      controller.abort();
      await server.finished;
    },
  };
}

async function startChild(startTimeoutMs: number): Promise<RunningTracker> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      MAIN,
      "tracker",
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--json",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdoutDone: Promise<void> = Promise.resolve();
  const close = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
        resolve();
      }, 5000);
    });
    await Promise.race([child.status, killed]);
    clearTimeout(timer);
    await child.status;
    await stdoutDone;
    await stderr;
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`tracker child printed no listening line within ${startTimeoutMs} ms`)),
        startTimeoutMs,
      );
    });
    const port = await Promise.race([readListeningPort(lines), timeout]);
    // Keep draining stdout so the child never blocks on a full pipe.
    stdoutDone = (async () => {
      while (!(await lines.read()).done) { /* discard */ }
    })();
    return { port, close };
  } catch (err) {
    await lines.cancel().catch(() => {});
    await close();
    const detail = (await stderr).trim().split("\n").slice(-3).join(" | ");
    throw new Error(`${(err as Error).message}${detail ? `: ${detail}` : ""}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

async function readListeningPort(lines: ReadableStreamDefaultReader<string>): Promise<number> {
  let buffered = "";
  for (;;) {
    const { done, value } = await lines.read();
    if (done) throw new Error("tracker child exited before listening");
    buffered += value;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      try {
        const event = JSON.parse(line);
        if (
          event?.event === "listening" && event.service === "tracker" &&
          Number.isInteger(event.port)
        ) {
          return event.port;
        }
      } catch {
        // Not an event line: ignore.
      }
    }
    if (buffered.length > 64 * 1024) throw new Error("tracker child printed an over-long line");
  }
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))];
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

if (import.meta.main) {
  const inProcess = Deno.args.includes("--in-process");
  const result = await benchTracker({ inProcess });
  const where = inProcess ? "in this process" : "child process";
  console.log(
    `tracker benchmark: ${result.peers} peers in ${result.swarms} swarms (${where}, loopback)`,
  );
  console.table({
    "announces/sec": result.announcesPerSec,
    "latency p50 (ms)": result.p50Ms,
    "latency p99 (ms)": result.p99Ms,
  });
}
