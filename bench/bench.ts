/**
 * `deno task bench`: end-to-end figures on this machine, with baselines measured in the same run.
 *
 * - create: hashing throughput of `p2p-share create`, beside `openssl dgst -sha256` when present
 * - download over loopback with --parallel 1, 4 and 8: wall time from start to verified file in
 *   place, MB/s, and the downloader's and seeder's peak RSS
 * - baselines: a plain `cp` of the file, and a minimal Deno TCP copy that hashes every piece
 *
 * Flags: `--size 1G` (file size), `--runs 3` (runs per figure, median reported),
 * `--out bench/results.json`. Everything talks to 127.0.0.1 only; the benchmark installs nothing.
 * It runs with --allow-all only because Deno grants reading a child's /proc/PID/status (its peak
 * RSS) to nothing less; the programs it measures run with their narrow role permissions.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parseSize } from "../lib/units.ts";
import { benchSwarm } from "./swarm_bench.ts";
import { benchTracker } from "./tracker_bench.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const main = join(root, "main.ts");
const { values } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "1G" },
    runs: { type: "string", default: "3" },
    out: { type: "string" },
  },
});
const size = parseSize(values.size!);
const runs = Math.max(1, Number(values.runs));
const outPath = values.out ?? join(root, "bench", "results.json");

interface Measured {
  seconds: number;
  peakRssBytes: number;
}

/** Runs a command to completion, sampling its peak RSS (VmHWM) from /proc while it runs. */
async function measure(
  cmd: string,
  args: string[],
  opts: { quiet?: boolean } = {},
): Promise<Measured> {
  const start = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    stdout: opts.quiet === false ? "inherit" : "null",
    stderr: "piped",
  }).spawn();
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, readHwm(child.pid))), 50);
  const { code, stderr } = await child.output();
  clearInterval(sampler);
  const seconds = (performance.now() - start) / 1000;
  if (code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${code}: ${new TextDecoder().decode(stderr)}`);
  }
  return { seconds, peakRssBytes: peak };
}

function readHwm(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = /VmHWM:\s+(\d+) kB/.exec(status);
    return kb ? Number(kb[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function which(name: string): Promise<string | undefined> {
  try {
    const { code, stdout } = await new Deno.Command("sh", {
      args: ["-c", `command -v ${name}`],
      stdout: "piped",
    }).output();
    return code === 0 ? new TextDecoder().decode(stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function medianOf(n: number, fn: () => Promise<Measured>): Promise<Measured> {
  const all: Measured[] = [];
  for (let i = 0; i < n; i++) all.push(await fn());
  return {
    seconds: median(all.map((m) => m.seconds)),
    peakRssBytes: Math.max(...all.map((m) => m.peakRssBytes)),
  };
}

const mbps = (bytes: number, s: number) => bytes / s / 1e6;
const deno = Deno.execPath();
const dir = await Deno.makeTempDir({ dir: root, prefix: ".bench-" });
const rows: {
  name: string;
  seconds: number;
  mbPerSec: number;
  peakRssMB?: number;
  ratio?: string;
}[] = [];
const skipped: string[] = [];
const seeder: { child?: Deno.ChildProcess } = {};
try {
  const file = join(dir, "payload.bin");
  console.log(`bench: writing ${size} random bytes to ${file}`);
  {
    using f = await Deno.open(file, { write: true, create: true, truncate: true });
    const chunk = new Uint8Array(1024 * 1024);
    for (let done = 0; done < size;) {
      for (let i = 0; i < chunk.length; i += 65536) {
        crypto.getRandomValues(chunk.subarray(i, i + 65536));
      }
      const n = Math.min(chunk.length, size - done);
      let w = 0;
      while (w < n) w += await f.write(chunk.subarray(w, n));
      done += n;
    }
  }
  const meta = join(dir, "payload.bin.p2pmeta");

  // create vs openssl
  const create = await medianOf(
    runs,
    () =>
      measure(deno, [
        "run",
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        main,
        "create",
        file,
        "-o",
        meta,
      ]),
  );
  rows.push({
    name: "create (hash 1 file)",
    seconds: create.seconds,
    mbPerSec: mbps(size, create.seconds),
    peakRssMB: create.peakRssBytes / 1e6,
  });
  const openssl = await which("openssl");
  if (openssl) {
    const o = await medianOf(runs, () => measure(openssl, ["dgst", "-sha256", file]));
    rows.push({
      name: "openssl dgst -sha256",
      seconds: o.seconds,
      mbPerSec: mbps(size, o.seconds),
      ratio: `create at ${(100 * o.seconds / create.seconds).toFixed(0)}% of openssl`,
    });
  } else skipped.push("openssl (not installed)");

  // baselines
  const cp = await medianOf(runs, () => measure("cp", [file, join(dir, "cp.bin")]));
  rows.push({ name: "baseline: cp", seconds: cp.seconds, mbPerSec: mbps(size, cp.seconds) });
  const metaJson = JSON.parse(await Deno.readTextFile(meta));
  const pieceLength = metaJson.info.pieceLength as number;
  const baseline = await medianOf(runs, async () => {
    const portFile = join(dir, "port.txt");
    await Deno.remove(portFile).catch(() => {});
    const start = performance.now();
    const recv = new Deno.Command(deno, {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        join(root, "bench", "baseline_copy.ts"),
        "recv",
        portFile,
        join(dir, "tcp.bin"),
        String(pieceLength),
      ],
    }).spawn();
    let port = "";
    for (let i = 0; i < 200 && !port; i++) {
      port = await Deno.readTextFile(portFile).catch(() => "");
      if (!port) await new Promise((r) => setTimeout(r, 25));
    }
    await measure(deno, [
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      join(root, "bench", "baseline_copy.ts"),
      "send",
      port,
      file,
    ]);
    await recv.status;
    return { seconds: (performance.now() - start) / 1000, peakRssBytes: 0 };
  });
  rows.push({
    name: "baseline: Deno TCP copy + SHA-256",
    seconds: baseline.seconds,
    mbPerSec: mbps(size, baseline.seconds),
  });

  // seeder
  const data = join(dir, "data");
  const seedStart = performance.now();
  seeder.child = new Deno.Command(deno, {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      `--allow-write=${data}`,
      main,
      "seed",
      "--meta",
      meta,
      "--source",
      file,
      "--workdir",
      data,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--json",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let port = 0;
  const lines = seeder.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  while (!port) {
    const { value, done } = await lines.read();
    if (done) throw new Error("seeder exited before serving");
    buffered += value;
    for (const line of buffered.split("\n")) {
      if (line.includes('"serving"')) port = JSON.parse(line).port;
    }
    buffered = buffered.slice(buffered.lastIndexOf("\n") + 1);
  }
  const ingestSeconds = (performance.now() - seedStart) / 1000;
  rows.push({
    name: "seed: ingest (verify + copy)",
    seconds: ingestSeconds,
    mbPerSec: mbps(size, ingestSeconds),
  });
  const drain = (async () => {
    while (!(await lines.read()).done) { /* keep the pipe flowing */ }
  })();

  for (const parallel of [1, 4, 8]) {
    const m = await medianOf(runs, async () => {
      const work = join(dir, `dl-${parallel}`);
      await Deno.remove(work, { recursive: true }).catch(() => {});
      return await measure(deno, [
        "run",
        "--allow-net=127.0.0.1",
        `--allow-read=${dir}`,
        `--allow-write=${work}`,
        main,
        "download",
        "--meta",
        meta,
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--workdir",
        work,
        "--parallel",
        String(parallel),
      ]);
    });
    rows.push({
      name: `download --parallel ${parallel}`,
      seconds: m.seconds,
      mbPerSec: mbps(size, m.seconds),
      peakRssMB: m.peakRssBytes / 1e6,
      ratio: `${(100 * baseline.seconds / m.seconds).toFixed(0)}% of TCP baseline`,
    });
  }
  const seederRss = readHwm(seeder.child.pid);
  rows.push({ name: "seeder peak RSS", seconds: 0, mbPerSec: 0, peakRssMB: seederRss / 1e6 });
  seeder.child.kill("SIGTERM");
  await seeder.child.status;
  await drain;

  const swarm = await benchSwarm();
  rows.push({
    name: `swarm: 1 seeder + ${swarm.downloaders} downloaders`,
    seconds: swarm.seconds,
    mbPerSec: 0,
    ratio: `${(swarm.seconds / swarm.lowerBoundSeconds).toFixed(2)}x the Kumar-Ross bound ${
      swarm.lowerBoundSeconds.toFixed(1)
    } s (F=${swarm.fileBytes / 2 ** 20} MiB, u=${swarm.uploadBytesPerSec / 2 ** 20} MiB/s each)`,
  });
  const tracker = await benchTracker();
  rows.push({
    name: `tracker: ${tracker.peers} peers, ${tracker.swarms} swarms`,
    seconds: 0,
    mbPerSec: 0,
    ratio: `${tracker.announcesPerSec.toFixed(0)} announces/s, p50 ${
      tracker.p50Ms.toFixed(2)
    } ms, p99 ${tracker.p99Ms.toFixed(2)} ms`,
  });

  const machine =
    `${Deno.build.os} ${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`;
  console.log(
    `\np2p-share benchmark: ${
      (size / 2 ** 20).toFixed(0)
    } MiB file, loopback, warm cache, median of ${runs}; ${machine}\n`,
  );
  console.log(
    `${"figure".padEnd(36)} ${"seconds".padStart(8)} ${"MB/s".padStart(8)} ${
      "peak RSS MB".padStart(12)
    }  compared`,
  );
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(36)} ${r.seconds ? r.seconds.toFixed(2).padStart(8) : "".padStart(8)} ${
        r.mbPerSec ? r.mbPerSec.toFixed(0).padStart(8) : "".padStart(8)
      } ${r.peakRssMB ? r.peakRssMB.toFixed(0).padStart(12) : "".padStart(12)}  ${r.ratio ?? ""}`,
    );
  }
  if (skipped.length) console.log(`\nskipped: ${skipped.join(", ")}`);
  await Deno.writeTextFile(
    outPath,
    JSON.stringify(
      { date: new Date().toISOString(), machine, sizeBytes: size, runs, rows, skipped },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nwrote ${outPath}`);
} finally {
  try {
    seeder.child?.kill("SIGKILL");
  } catch { /* already gone */ }
  await Deno.remove(dir, { recursive: true });
}
