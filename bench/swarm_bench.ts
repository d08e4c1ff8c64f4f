/**
 * @module swarm_bench
 * Swarm distribution time against the peer-to-peer lower bound: one seeder and N downloaders
 * (8 by default) on loopback, found through a tracker, every upload capped at the same rate u.
 * Measures the time from starting the downloaders until all of them hold the file, and prints
 * it next to the Kumar–Ross bound
 *
 *     T_min = max(F / u_seed, N·F / (u_seed + Σ u_downloaders))
 *
 * with the ratio (the aim is within 1.25x) and how many copies of the file the seeder itself
 * uploaded. Does process and network I/O: every program runs as a child with its narrow role
 * permissions on 127.0.0.1; every child is stopped at the end, and the whole run is bounded.
 *
 * Run alone: `deno run -A bench/swarm_bench.ts [--downloaders 8] [--size 32M] [--rate 2M]
 * [--seed-rate R] [--piece-size 64K] [--leave-on-complete] [--timeout 180s] [--json]`
 */

import { parseArgs } from "node:util";
import { formatBytes, parseDuration, parseSize } from "../lib/units.ts";
import { assertSameFile, createMeta, randomFile, startSeeder, tempDir } from "../tests/helpers.ts";
import { pollStats, startTracker, swarmOf } from "../tests/tracker_kit.ts";
import { msLeft, startSwarmDownloader, type TimedCli, uploadedOnStop } from "../tests/swarm_kit.ts";

const MiB = 1024 * 1024;

/** Knobs for {@linkcode benchSwarm}; the defaults are the workload. */
export interface SwarmBenchOptions {
  /** Downloaders N (default 8). */
  downloaders?: number;
  /** File size F in bytes (default 32 MiB). */
  fileBytes?: number;
  /** Upload cap u of every downloader, bytes/s (default 2 MiB/s). */
  uploadBytesPerSec?: number;
  /** Upload cap of the seeder (default: the same u). */
  seedUploadBytesPerSec?: number;
  /** Piece size as `create --piece-size` takes it (default 64K). */
  pieceSize?: string;
  /**
   * Downloaders keep seeding until every one holds the file (default true), as the bound
   * assumes; false lets each leave as soon as it is complete.
   */
  keepSeeding?: boolean;
  /** Give up after this long, everything stopped (default: 4·T_min + 60 s). */
  timeoutMs?: number;
  /** Tracker re-announce interval in seconds (default 1). */
  trackerIntervalSec?: number;
}

/** What {@linkcode benchSwarm} measured. */
export interface SwarmBenchResult {
  downloaders: number;
  fileBytes: number;
  pieceBytes: number;
  uploadBytesPerSec: number;
  seedUploadBytesPerSec: number;
  keepSeeding: boolean;
  /** Starting the downloaders (spawn) until the last `complete` event, seconds. */
  seconds: number;
  /** From the first downloader's `started` event (process start-up excluded), seconds. */
  secondsFromFirstStart: number;
  /** Each downloader's completion, seconds after the spawn, sorted. */
  completionSeconds: number[];
  /** The Kumar–Ross lower bound, seconds. */
  lowerBoundSeconds: number;
  /** `seconds / lowerBoundSeconds`. */
  ratio: number;
  /** Bytes the seeder uploaded in the whole run. */
  seederUploadedBytes: number;
  /** The same, in copies of the file. */
  seederCopies: number;
  /** What the downloaders uploaded to each other by the time each completed, bytes. */
  downloadersUploadedBytes: number;
}

/** T_min = max(F/u_seed, N·F/(u_seed + N·u)), seconds. */
export function kumarRossBound(
  fileBytes: number,
  options: { downloaders: number; seedBytesPerSec: number; peerBytesPerSec: number },
): number {
  const { downloaders, seedBytesPerSec, peerBytesPerSec } = options;
  return Math.max(
    fileBytes / seedBytesPerSec,
    (downloaders * fileBytes) / (seedBytesPerSec + downloaders * peerBytesPerSec),
  );
}

/**
 * Runs one swarm and measures it. Everything stays on 127.0.0.1; every child is stopped (the
 * tracker and any straggler with SIGKILL) whatever happens.
 *
 * @param options workload (defaults: 8 downloaders, 32 MiB, 2 MiB/s everywhere)
 * @returns the time until all hold the file, the bound and the seeder's share
 * @throws {Error} when a child fails, a copy differs, or the run exceeds its time limit
 */
export async function benchSwarm(options: SwarmBenchOptions = {}): Promise<SwarmBenchResult> {
  const downloaders = options.downloaders ?? 8;
  const fileBytes = options.fileBytes ?? 32 * MiB;
  const u = options.uploadBytesPerSec ?? 2 * MiB;
  const uSeed = options.seedUploadBytesPerSec ?? u;
  const pieceSize = options.pieceSize ?? "64K";
  const keepSeeding = options.keepSeeding ?? true;
  const lowerBoundSeconds = kumarRossBound(fileBytes, {
    downloaders,
    seedBytesPerSec: uSeed,
    peerBytesPerSec: u,
  });
  const timeoutMs = options.timeoutMs ?? 4 * lowerBoundSeconds * 1000 + 60_000;
  const deadline = performance.now() + timeoutMs;

  await using dir = await tempDir("p2p_swarm_bench_");
  const source = dir.join("artifact.bin");
  await randomFile(source, fileBytes);
  const { meta, created } = await createMeta(source, { pieceSize });
  const infoHash = String(created.infoHash);
  await using tracker = await startTracker({ interval: options.trackerIntervalSec ?? 1 });
  await using seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--tracker", tracker.address, "--max-upload-rate", String(uSeed)],
    timeoutMs: msLeft(deadline),
  });
  await pollStats(tracker.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
    timeoutMs: Math.min(15_000, msLeft(deadline)),
    what: "the seeder in /stats",
  });

  await using stack = new AsyncDisposableStack();
  const startedMs = performance.now();
  const peers: TimedCli[] = [];
  for (let i = 0; i < downloaders; i++) {
    const peer = startSwarmDownloader({
      meta,
      workdir: dir.join(`dl${i}`),
      tracker: tracker.address,
      extraArgs: [
        "--max-upload-rate",
        String(u),
        ...(keepSeeding ? ["--keep-seeding"] : []),
      ],
    });
    stack.use(peer);
    peers.push(peer);
  }
  const completes = await Promise.all(peers.map(async (peer, i) => {
    try {
      return await peer.log.next("complete", {
        timeoutMs: msLeft(deadline),
        what: `downloader ${i}'s complete event`,
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${peer.stderr()}`);
    }
  }));
  const completedAt = peers.map((peer) =>
    peer.timed.find((t) => t.event.event === "complete")?.atMs ?? performance.now()
  );
  const firstStart = Math.min(
    ...peers.map((peer) => peer.timed.find((t) => t.event.event === "started")?.atMs ?? startedMs),
  );
  const lastDone = Math.max(...completedAt);

  // All hold the file: stop everyone, then read what the seeder sent in all.
  const seederResult = await seeder.stop();
  if (seederResult.code !== 0) {
    throw new Error(`seeder exited ${seederResult.code}: ${seederResult.stderr}`);
  }
  const seederUploadedBytes = uploadedOnStop(seederResult);
  for (const [i, peer] of peers.entries()) {
    const result = keepSeeding ? await peer.stop() : await peer.finished();
    if (result.code !== 0) {
      throw new Error(`downloader ${i} exited ${result.code}: ${result.stderr}`);
    }
  }
  for (let i = 0; i < downloaders; i++) {
    await assertSameFile(dir.join(`dl${i}`, "artifact.bin"), source);
  }

  const seconds = (lastDone - startedMs) / 1000;
  return {
    downloaders,
    fileBytes,
    pieceBytes: Number(created.pieceLength),
    uploadBytesPerSec: u,
    seedUploadBytesPerSec: uSeed,
    keepSeeding,
    seconds,
    secondsFromFirstStart: (lastDone - firstStart) / 1000,
    completionSeconds: completedAt.map((t) => (t - startedMs) / 1000).sort((a, b) => a - b),
    lowerBoundSeconds,
    ratio: seconds / lowerBoundSeconds,
    seederUploadedBytes,
    seederCopies: seederUploadedBytes / fileBytes,
    downloadersUploadedBytes: completes.reduce((sum, c) => sum + Number(c.bytesUploaded), 0),
  };
}

/** The result as rows for people. */
export function formatSwarmBench(r: SwarmBenchResult): string {
  const rate = (bytesPerSec: number) => `${formatBytes(bytesPerSec)}/s`;
  const rows: [string, string][] = [
    ["downloaders N", String(r.downloaders)],
    ["file F", `${formatBytes(r.fileBytes)} (pieces of ${formatBytes(r.pieceBytes)})`],
    ["upload cap u (each downloader)", rate(r.uploadBytesPerSec)],
    ["upload cap u_seed", rate(r.seedUploadBytesPerSec)],
    ["downloaders after completion", r.keepSeeding ? "seed on" : "leave"],
    ["time until all hold the file", `${r.seconds.toFixed(2)} s`],
    ["  without process start-up", `${r.secondsFromFirstStart.toFixed(2)} s`],
    [
      "  each downloader done at",
      r.completionSeconds.map((s) => s.toFixed(1)).join(", ") + " s",
    ],
    ["Kumar–Ross lower bound T_min", `${r.lowerBoundSeconds.toFixed(2)} s`],
    ["ratio T / T_min", `${r.ratio.toFixed(2)}x (aim: within 1.25x)`],
    [
      "seeder uploaded",
      `${formatBytes(r.seederUploadedBytes)} = ${r.seederCopies.toFixed(2)} copies of F`,
    ],
    [
      "downloaders uploaded to each other",
      `${formatBytes(r.downloadersUploadedBytes)} = ${
        (r.downloadersUploadedBytes / r.fileBytes).toFixed(2)
      } copies of F`,
    ],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      downloaders: { type: "string" },
      size: { type: "string" },
      rate: { type: "string" },
      "seed-rate": { type: "string" },
      "piece-size": { type: "string" },
      "leave-on-complete": { type: "boolean" },
      timeout: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const result = await benchSwarm({
    downloaders: values.downloaders === undefined ? undefined : Number(values.downloaders),
    fileBytes: values.size === undefined ? undefined : parseSize(values.size),
    uploadBytesPerSec: values.rate === undefined ? undefined : parseSize(values.rate),
    seedUploadBytesPerSec: values["seed-rate"] === undefined
      ? undefined
      : parseSize(values["seed-rate"]),
    pieceSize: values["piece-size"],
    keepSeeding: !values["leave-on-complete"],
    timeoutMs: values.timeout === undefined ? undefined : parseDuration(values.timeout),
  });
  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log("swarm benchmark: 1 seeder + N downloaders through a tracker on 127.0.0.1");
    console.log(formatSwarmBench(result));
  }
}
