/**
 * `deno task bench`: every figure of the performance issue on this machine, each beside the
 * baseline it is held to, as ratios measured in the same run, with every target marked met or
 * not met. One table on stdout, the same as JSON in `bench/results.json` (or `--out PATH`) so
 * figures can be compared across commits.
 *
 * Measured on one file of each size in `--sizes` (default `1G,4G`; `--quick` keeps only the
 * first), warm in the page cache, everything on 127.0.0.1:
 * - first size: `create` against `openssl dgst -sha256`; `download --parallel 1, 4, 8` (start to
 *   verified file in place, exit 0) against `aria2c -x4` over HTTP from a local nginx, `aria2c`
 *   over BitTorrent from a local aria2c seeder, and a minimal Deno TCP copy that SHA-256-checks
 *   and writes every piece (`bench/baseline_copy.ts`, the faster of its two variants); `curl` from the same nginx, `cp`, Deno's
 *   SHA-256 speed and Deno's bare loopback TCP speed beside them; peak RSS of seeder and
 *   downloader.
 * - first size, encrypted: `download --parallel 4` with `--encrypt` from a `seed --encrypt`
 *   (TLS 1.3 and the share proof), held to at least 60% of the plaintext `--parallel 4` speed
 *   measured in the same run; beside it the raw transport copy of `bench/transport_bench.ts`
 *   (plain TCP against TLS 1.3 through the peer adapter, no p2p-share logic), reported.
 * - every further size: the seeder's and the downloaders' peak RSS again (one run each), which
 *   must stay under the limit and not grow with the file.
 * - the tracker under load (announces/s, p50/p99) and the swarm against the Kumar-Ross bound.
 *
 * Flags: `--sizes 1G,4G`, `--quick`, `--runs 5` (median reported), `--out PATH`; `--size X` is
 * `--sizes X`. `--encryption-only` measures just the encryption figures (plaintext and encrypted
 * `--parallel 4` on the first size, and the transport copy); such a partial run writes its JSON
 * only when `--out` is given, so it never replaces a full `bench/results.json`. It installs
 * nothing: `aria2c`, `curl`, `nginx` and `openssl` are used when on the PATH (`bench/setup.sh`
 * installs them) and the table says which were skipped. Before every timed run, untimed, a
 * `sync` writes back the previous run's dirty pages and a child touches twice the file's size
 * of free memory plus 1 GiB (at most half of what is available), so every run starts from free
 * memory the machine hands out at full speed (`settle.ts` says why; `--no-pretouch` skips the
 * touching). Every child is stopped at the end and every run is bounded in time.
 *
 * It runs with --allow-all only because Deno grants reading a child's /proc/PID/status (its peak
 * RSS) to nothing less; the programs it measures run with their narrow role permissions.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { formatBytes, parseSize } from "../lib/units.ts";
import {
  benchAria2BitTorrent,
  benchHttp,
  benchOpensslSha256,
  type ExternalResult,
  which,
} from "./external.ts";
import { benchSwarm } from "./swarm_bench.ts";
import { benchTracker } from "./tracker_bench.ts";
import { setPretouch, settleBeforeRun } from "./settle.ts";
import { benchTransport } from "./transport_bench.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const main = join(root, "main.ts");
const baselineScript = join(root, "bench", "baseline_copy.ts");
const { values } = parseArgs({
  args: Deno.args,
  options: {
    sizes: { type: "string" },
    size: { type: "string" },
    quick: { type: "boolean", default: false },
    "encryption-only": { type: "boolean", default: false },
    runs: { type: "string", default: "5" },
    out: { type: "string" },
    "no-pretouch": { type: "boolean", default: false },
  },
});
const sizeTexts = (values.sizes ?? values.size ?? "1G,4G").split(",").map((s) => s.trim())
  .filter(Boolean);
const allSizes = sizeTexts.map((s) => parseSize(s));
const encryptionOnly = values["encryption-only"] === true;
const sizes = values.quick || encryptionOnly ? allSizes.slice(0, 1) : allSizes;
const runs = Math.max(1, Math.floor(Number(values.runs)) || 1);
/** Where the JSON goes; an `--encryption-only` run writes it only to an explicit `--out`. */
const outPath = values.out ?? (encryptionOnly ? undefined : join(root, "bench", "results.json"));
/** Peak RSS limit of the issue, MB (10^6 bytes, as every MB in the table). */
const RSS_LIMIT_MB = 150;
/** "The same for 4 GiB as for 1 GiB": at most this much above the smaller file's peak. */
const RSS_GROWTH_LIMIT = 0.10;
const SWARM_RATIO_AIM = 1.25;
/** Encrypted download speed, at least this fraction of the plaintext one (same run). */
const ENCRYPTED_RATIO_AIM = 0.6;
/** The `--parallel` the encrypted download is measured (and compared) at. */
const ENCRYPTED_PARALLEL = 4;

// ---------------------------------------------------------------------------------------------
// Running and measuring children

/** Every child still running, so the `finally` below can stop them whatever happened. */
const live = new Set<Deno.ChildProcess>();

interface Measured {
  seconds: number;
  peakRssBytes: number;
}

/** Limit for one measured run: a minute plus a second per 20 MB of the file. */
const runLimitMs = (bytes: number) => 60_000 + bytes / 20e6 * 1000;

/**
 * Runs a command to completion, sampling its peak RSS (VmHWM) from /proc every 20 ms while it
 * runs; killed after `timeoutMs`.
 */
async function measure(cmd: string, args: string[], timeoutMs: number): Promise<Measured> {
  const start = performance.now();
  const child = new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).spawn();
  live.add(child);
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, readHwm(child.pid))), 20);
  let timedOut = false;
  const killer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  try {
    const { code, stderr } = await child.output();
    const seconds = (performance.now() - start) / 1000;
    if (timedOut) throw new Error(`${cmd} ${args.join(" ")} timed out after ${timeoutMs} ms`);
    if (code !== 0) {
      throw new Error(
        `${cmd} ${args.join(" ")} exited ${code}: ${new TextDecoder().decode(stderr).slice(-2000)}`,
      );
    }
    return { seconds, peakRssBytes: peak };
  } finally {
    clearInterval(sampler);
    clearTimeout(killer);
    live.delete(child);
  }
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Median time and the highest peak RSS of `n` runs, each after a `sync`. */
async function medianOf(n: number, once: () => Promise<Measured>): Promise<Measured> {
  const all: Measured[] = [];
  for (let i = 0; i < n; i++) {
    await settleBeforeRun();
    all.push(await once());
  }
  return summarise(all);
}

/** A figure's time, speed and peak RSS from a measurement of `size` bytes. */
function timed(size: number, m: Measured): Pick<Figure, "seconds" | "mbPerSec" | "peakRssMB"> {
  return { seconds: m.seconds, mbPerSec: mbps(size, m.seconds), peakRssMB: m.peakRssBytes / 1e6 };
}

/** Median time and highest peak RSS of some runs. */
function summarise(all: Measured[]): Measured {
  return {
    seconds: median(all.map((m) => m.seconds)),
    peakRssBytes: Math.max(...all.map((m) => m.peakRssBytes)),
  };
}

/** A child whose stdout is read line by line: `next(pred)` waits for a matching line. */
function spawnLines(cmd: string, args: string[]) {
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit" }).spawn();
  live.add(child);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let draining: Promise<void> | undefined;
  return {
    child,
    async next(pred: (line: string) => boolean, timeoutMs: number, what: string) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const lines = buffered.split("\n");
        buffered = lines.pop() ?? "";
        const hit = lines.find(pred);
        if (hit !== undefined) return hit;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const chunk = await Promise.race([
          reader.read(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
              Math.max(0, deadline - performance.now()),
            );
          }),
        ]).finally(() => clearTimeout(timer));
        if (chunk.done) throw new Error(`${what}: the process ended first`);
        buffered += chunk.value;
      }
    },
    /** From now on, reads and drops the rest of stdout in the background, so the pipe never fills. */
    drain() {
      draining ??= (async () => {
        while (!(await reader.read()).done) { /* keep the pipe flowing */ }
      })();
    },
    /** SIGTERM (SIGKILL 10 s later if still running), then waits for the exit. */
    async stop() {
      const kill = (signal: Deno.Signal) => {
        try {
          child.kill(signal);
        } catch { /* already gone */ }
      };
      kill("SIGTERM");
      const timer = setTimeout(() => kill("SIGKILL"), 10_000);
      try {
        this.drain();
        await draining;
        await child.status;
      } finally {
        clearTimeout(timer);
        live.delete(child);
      }
    },
  };
}

async function writeRandomFile(path: string, bytes: number): Promise<void> {
  using f = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1024 * 1024);
  for (let done = 0; done < bytes;) {
    for (let i = 0; i < chunk.length; i += 65536) {
      crypto.getRandomValues(chunk.subarray(i, i + 65536));
    }
    const n = Math.min(chunk.length, bytes - done);
    for (let w = 0; w < n;) w += await f.write(chunk.subarray(w, n));
    done += n;
  }
}

/** SHA-256 in memory with node:crypto, 1 MiB updates: the hashing speed of one core. */
function hashSecondsInMemory(bytes: number): number {
  const block = new Uint8Array(64 * 1024 * 1024);
  for (let i = 0; i < block.length; i += 65536) {
    crypto.getRandomValues(block.subarray(i, i + 65536));
  }
  const start = performance.now();
  const hash = createHash("sha256");
  for (let done = 0; done < bytes;) {
    const at = done % block.length;
    const n = Math.min(1024 * 1024, bytes - done, block.length - at);
    hash.update(block.subarray(at, at + n));
    done += n;
  }
  hash.digest();
  return (performance.now() - start) / 1000;
}

// ---------------------------------------------------------------------------------------------
// The table

/** One measured figure. */
interface Figure {
  name: string;
  /** File size the figure was measured on, bytes. */
  sizeBytes?: number;
  seconds?: number;
  mbPerSec?: number;
  peakRssMB?: number;
  /** What the figure is, when not a plain time: e.g. the tracker's rates. */
  detail?: string;
  /** Why the figure is missing. */
  skipped?: string;
}

/** One target: a figure held to a baseline or a limit. */
interface Check {
  /** The figure checked (its `name`). */
  figure: string;
  /** What it is held to, e.g. `aria2c -x4 HTTP (nginx) 1.75 s`. */
  against: string;
  /** The measured ratio or value, e.g. `1.94x` (its speed over theirs), `78%`, `138 MB`. */
  measured: string;
  /** The target, e.g. `> 1x`, `>= 70%`, `< 150 MB`. */
  target: string;
  /** Met, not met, or null when a figure it needs is missing. */
  met: boolean | null;
}

const figures: Figure[] = [];
const checks: Check[] = [];
const skipped: string[] = [];
const mbps = (bytes: number, s: number) => bytes / s / 1e6;
const sizeLabel = (bytes: number) => formatBytes(bytes).replace(/\.0+ /, " ");

function addExternal(r: ExternalResult, sizeBytes: number): Figure {
  const figure: Figure = r.skipped ? { name: r.name, sizeBytes, skipped: r.skipped } : {
    name: r.name,
    sizeBytes,
    seconds: r.seconds,
    mbPerSec: r.mbPerSec,
  };
  if (r.skipped) skipped.push(`${r.name}: ${r.skipped}`);
  figures.push(figure);
  return figure;
}

/** Checks `ours` against `theirs` by speed: `theirs.seconds / ours.seconds >= min`. */
function checkSpeed(
  ours: Figure,
  theirs: Figure,
  opts: { min: number; strict?: boolean; percent?: boolean },
): void {
  const target = opts.percent
    ? `>= ${(100 * opts.min).toFixed(0)}%`
    : `${opts.strict ? ">" : ">="} ${opts.min}x`;
  if (!ours.seconds || !theirs.seconds) {
    checks.push({
      figure: ours.name,
      against: theirs.name,
      measured: "n/a",
      target,
      met: null,
    });
    return;
  }
  const ratio = theirs.seconds / ours.seconds;
  checks.push({
    figure: ours.name,
    against: `${theirs.name} ${theirs.seconds.toFixed(2)} s`,
    measured: opts.percent ? `${(100 * ratio).toFixed(0)}%` : `${ratio.toFixed(2)}x`,
    target,
    met: opts.strict ? ratio > opts.min : ratio >= opts.min,
  });
}

function checkRss(figure: Figure, what: string): void {
  const mb = figure.peakRssMB;
  checks.push({
    figure: figure.name,
    against: `${what} peak RSS limit`,
    measured: mb ? `${mb.toFixed(0)} MB` : "n/a",
    target: `< ${RSS_LIMIT_MB} MB`,
    met: mb ? mb < RSS_LIMIT_MB : null,
  });
}

function checkRssGrowth(bigger: Figure, smaller: Figure | undefined): void {
  if (!smaller) return;
  const a = smaller.peakRssMB;
  const b = bigger.peakRssMB;
  checks.push({
    figure: bigger.name,
    against: `${smaller.name}: ${a ? a.toFixed(0) : "?"} MB`,
    measured: a && b ? `${b >= a ? "+" : ""}${(100 * (b / a - 1)).toFixed(0)}%` : "n/a",
    target: `<= +${(100 * RSS_GROWTH_LIMIT).toFixed(0)}%`,
    met: a && b ? b <= a * (1 + RSS_GROWTH_LIMIT) : null,
  });
}

function renderTable(): string {
  const num = (x: number | undefined, digits: number) => (x ? x.toFixed(digits) : "");
  const header = ["figure", "seconds", "MB/s", "RSS MB", "held to", "measured", "target", ""];
  const rows: string[][] = [];
  for (const f of figures) {
    rows.push([
      f.name,
      num(f.seconds, 2),
      num(f.mbPerSec, 0),
      num(f.peakRssMB, 0),
      f.skipped ? `skipped: ${f.skipped}` : (f.detail ?? ""),
      "",
      "",
      "",
    ]);
    for (const c of checks.filter((c) => c.figure === f.name)) {
      rows.push([
        "",
        "",
        "",
        "",
        c.against,
        c.measured,
        c.target,
        c.met === null ? "n/a" : c.met ? "met" : "NOT MET",
      ]);
    }
  }
  const widths = header.map((h, i) =>
    Math.min(i === 4 ? 48 : 60, Math.max(h.length, ...rows.map((r) => r[i].length)))
  );
  const right = new Set([1, 2, 3]);
  const line = (r: string[]) =>
    r.map((cell, i) => right.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))
      .join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

async function machine() {
  const osRelease = await Deno.readTextFile("/etc/os-release").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const memKb = /MemTotal:\s+(\d+) kB/.exec(meminfo);
  return {
    os: /PRETTY_NAME="?([^"\n]*)"?/.exec(osRelease)?.[1] ?? Deno.build.os,
    kernel: Deno.osRelease(),
    arch: Deno.build.arch,
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    cores: navigator.hardwareConcurrency,
    memTotalBytes: memKb ? Number(memKb[1]) * 1024 : null,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
  };
}

async function gitCommit() {
  const git = async (...args: string[]) => {
    const { code, stdout } = await new Deno.Command("git", {
      args: ["-C", root, ...args],
      stdout: "piped",
      stderr: "null",
    }).output();
    return code === 0 ? new TextDecoder().decode(stdout).trim() : undefined;
  };
  try {
    return {
      commit: await git("rev-parse", "HEAD"),
      dirty: !!(await git("status", "--porcelain")),
    };
  } catch {
    return { commit: undefined, dirty: undefined };
  }
}

/** The first line of an error, for the table. */
function failure(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return `failed: ${text.split("\n")[0].slice(0, 300)}`;
}

/** Free memory touched before each timed run of each size (see `settle.ts`). */
const pretouchBytesBySize = new Map<number, number>();

/** Things that went wrong but did not stop the run (a crashed seeder, restarted). */
const problems: string[] = [];

/**
 * The p2p-share seeder the downloads of one size fetch from. Its peak RSS is sampled while it
 * runs; if it dies between downloads, that is recorded and it is started again (it resumes from
 * its work folder), so one crash costs one figure, not the whole benchmark.
 */
class SeederRun {
  peakRssBytes = 0;
  problems: string[] = [];
  #seeder?: ReturnType<typeof spawnLines>;
  #exited?: Deno.CommandStatus;
  #port = 0;
  #sampler?: ReturnType<typeof setInterval>;

  /**
   * @param source the file to ingest, or `undefined` to seed what `workdir` already holds
   * @param extraArgs more `seed` flags, e.g. `--encrypt`
   */
  constructor(
    readonly dir: string,
    readonly meta: string,
    readonly source: string | undefined,
    readonly workdir: string,
    readonly limitMs: number,
    readonly extraArgs: string[] = [],
  ) {}

  /** Starts the seeder and waits until it serves; returns the seconds that took (ingest). */
  async start(): Promise<number> {
    const started = performance.now();
    const seeder = spawnLines(Deno.execPath(), [
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${this.dir}`,
      `--allow-write=${this.workdir}`,
      main,
      "seed",
      "--meta",
      this.meta,
      ...(this.source === undefined ? [] : ["--source", this.source]),
      "--workdir",
      this.workdir,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--json",
      ...this.extraArgs,
    ]);
    this.#seeder = seeder;
    this.#exited = undefined;
    seeder.child.status.then((status) => {
      if (this.#seeder === seeder) this.#exited = status;
    });
    this.#sampler ??= setInterval(() => {
      if (this.#seeder && !this.#exited) {
        this.peakRssBytes = Math.max(this.peakRssBytes, readHwm(this.#seeder.child.pid));
      }
    }, 50);
    const serving = await seeder.next(
      (l) => l.includes('"serving"'),
      this.limitMs,
      "the seeder's serving event",
    );
    this.#port = JSON.parse(serving).port;
    seeder.drain();
    return (performance.now() - started) / 1000;
  }

  /** The seeder's port; a seeder found dead is recorded (`when`) and started again. */
  async ensure(when: string): Promise<number> {
    if (this.#exited) {
      this.problems.push(
        `exited with code ${this.#exited.code}${
          this.#exited.signal ? ` (${this.#exited.signal})` : ""
        } ${when}; restarted`,
      );
      await this.#seeder?.stop();
      await this.start();
    }
    return this.#port;
  }

  async stop(): Promise<void> {
    clearInterval(this.#sampler);
    await this.#seeder?.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// One file size

/** What the other sizes compare their memory with. */
const firstSize: { seeder?: Figure; downloads: Map<number, Figure> } = { downloads: new Map() };

/**
 * One `download` of `meta` from the seeder of `seeding` into a fresh `work` folder, measured
 * (time and peak RSS); the folder is removed afterwards.
 */
function measureDownload(
  dir: string,
  meta: string,
  seeding: SeederRun,
  options: { parallel: number; work: string; extraArgs?: string[]; extraWrite?: string[] },
): Promise<Measured> {
  return (async () => {
    const port = await seeding.ensure(
      `before download --parallel ${options.parallel}${
        options.extraArgs?.length ? ` ${options.extraArgs.join(" ")}` : ""
      }`,
    );
    try {
      return await measure(Deno.execPath(), [
        "run",
        "--allow-net=127.0.0.1",
        `--allow-read=${dir}`,
        `--allow-write=${[options.work, ...(options.extraWrite ?? [])].join(",")}`,
        main,
        "download",
        "--meta",
        meta,
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--workdir",
        options.work,
        "--parallel",
        String(options.parallel),
        ...(options.extraArgs ?? []),
      ], seeding.limitMs);
    } finally {
      await Deno.remove(options.work, { recursive: true }).catch(() => {});
    }
  })();
}

/**
 * The encrypted download beside the plaintext one: a `seed --encrypt` and a plain `seed` on the
 * work folder the plaintext seeder left (no second ingest), then `r` rounds of one plaintext and
 * one encrypted `download --parallel 4`, taking turns, so that a stretch of a busy machine (runs
 * here vary by more than 2x over minutes) weighs on both alike. The encrypted median is held to
 * {@linkcode ENCRYPTED_RATIO_AIM} of the plaintext median of the same rounds; the encrypting
 * seeder's and downloader's peak RSS to the same limit as in plaintext. The downloader keeps one
 * identity across runs (`--identity`), as a user's does, so key generation is not timed.
 */
async function benchEncryptedDownload(
  dir: string,
  size: number,
  meta: string,
  data: string,
  plain: Figure | undefined,
  r: number,
): Promise<void> {
  const label = sizeLabel(size);
  const name = `download ${label} --parallel ${ENCRYPTED_PARALLEL} --encrypt`;
  console.log(
    `bench: ${label}: seed --encrypt, then download --parallel ${ENCRYPTED_PARALLEL} --encrypt`,
  );
  const figure: Figure = { name, sizeBytes: size };
  // Beside the plaintext figure it is held to.
  const at = plain ? figures.indexOf(plain) : -1;
  if (at >= 0) figures.splice(at + 1, 0, figure);
  else figures.push(figure);
  const seederFigure: Figure = {
    name: `seeder ${label} --encrypt: peak RSS`,
    sizeBytes: size,
    detail: "every encrypted download of this size served",
  };
  const seeding = new SeederRun(dir, meta, undefined, data, runLimitMs(size), ["--encrypt"]);
  const plainSeeding = new SeederRun(dir, meta, undefined, data, runLimitMs(size));
  const turnsFigure: Figure = {
    name: `download ${label} --parallel ${ENCRYPTED_PARALLEL}, taking turns with --encrypt`,
    sizeBytes: size,
  };
  const identity = join(dir, "identity", "download");
  try {
    await seeding.start();
    await plainSeeding.start();
    const plainRuns: Measured[] = [];
    const encryptedRuns: Measured[] = [];
    for (let i = 0; i < r; i++) {
      await settleBeforeRun();
      plainRuns.push(
        await measureDownload(dir, meta, plainSeeding, {
          parallel: ENCRYPTED_PARALLEL,
          work: join(dir, "dl-plain-turns"),
        }),
      );
      await settleBeforeRun();
      encryptedRuns.push(
        await measureDownload(dir, meta, seeding, {
          parallel: ENCRYPTED_PARALLEL,
          work: join(dir, "dl-encrypt"),
          extraArgs: ["--encrypt", "--identity", identity],
          extraWrite: [identity],
        }),
      );
    }
    const m = summarise(encryptedRuns);
    Object.assign(figure, timed(size, m), { detail: "TLS 1.3 + share proof" });
    Object.assign(turnsFigure, timed(size, summarise(plainRuns)), {
      detail: "what the encrypted download is held to",
    });
    figures.splice(figures.indexOf(figure), 0, turnsFigure);
    await seeding.ensure("after the encrypted downloads");
  } catch (error) {
    figure.skipped = failure(error);
    skipped.push(`${figure.name}: ${figure.skipped}`);
  } finally {
    await seeding.stop();
    await plainSeeding.stop();
  }
  if (seeding.problems.length) {
    seederFigure.detail = `${seederFigure.detail}; ${seeding.problems.join("; ")}`;
    problems.push(...seeding.problems.map((p) => `seeder ${label} --encrypt: ${p}`));
  }
  problems.push(...plainSeeding.problems.map((p) => `seeder ${label} (taking turns): ${p}`));
  checkSpeed(figure, turnsFigure.seconds ? turnsFigure : plain ?? turnsFigure, {
    min: ENCRYPTED_RATIO_AIM,
    percent: true,
  });
  checkRss(figure, "downloader");
  seederFigure.peakRssMB = seeding.peakRssBytes / 1e6 || undefined;
  figures.push(seederFigure);
  checkRss(seederFigure, "seeder");
}

/**
 * The raw transport copy of `bench/transport_bench.ts` (1 MiB writes, 256 KiB reads, between two
 * processes, no hashing, no p2p-share logic): plain Deno TCP against TLS 1.3 as peers run it
 * (a `node:tls` listener sending to a Deno TLS dialer), the modes taking turns run by run. Reported, no target: it says how much of the encrypted
 * download's cost is the transport itself.
 */
async function benchTransportFigures(size: number, r: number): Promise<void> {
  const label = sizeLabel(size);
  console.log(`bench: ${label}: transport copy, plain TCP and TLS 1.3`);
  try {
    const [plain, tls] = await benchTransport(size, r, ["plain", "tls"]);
    figures.push({
      name: `transport: plain TCP copy ${label}`,
      sizeBytes: size,
      seconds: plain.seconds,
      mbPerSec: plain.mbPerSec,
      detail: "bench/transport_bench.ts plain: Deno.connect, no hash",
    });
    figures.push({
      name: `transport: TLS 1.3 copy ${label}`,
      sizeBytes: size,
      seconds: tls.seconds,
      mbPerSec: tls.mbPerSec,
      detail: `bench/transport_bench.ts tls: node:tls sender, Deno TLS receiver, no hash; ${
        (100 * tls.mbPerSec / plain.mbPerSec).toFixed(0)
      }% of plain (reported, no target)`,
    });
  } catch (error) {
    const name = `transport: TLS 1.3 copy ${label}`;
    figures.push({ name, sizeBytes: size, skipped: failure(error) });
    skipped.push(`${name}: ${failure(error)}`);
  }
}

async function benchSize(dir: string, size: number, full: boolean): Promise<void> {
  const label = sizeLabel(size);
  const r = full ? runs : 1;
  /** The external and Deno baselines and their targets: not in a `--encryption-only` run. */
  const baselines = full && !encryptionOnly;
  const limitMs = runLimitMs(size);
  const file = join(dir, `payload-${size}.bin`);
  const meta = `${file}.p2pmeta`;
  // Room for the file's page cache and the processes' memory, with some to spare.
  pretouchBytesBySize.set(size, values["no-pretouch"] ? 0 : setPretouch(2 * size + 2 ** 30));
  console.log(`bench: ${label}: writing random bytes to ${file}`);
  await writeRandomFile(file, size);

  // create against openssl
  const createArgs = ["run", `--allow-read=${dir}`, `--allow-write=${dir}`, main, "create", file];
  const create = await medianOf(
    encryptionOnly ? 1 : r,
    () => measure(Deno.execPath(), [...createArgs, "-o", meta], limitMs),
  );
  const createFigure: Figure = {
    name: `create ${label}`,
    sizeBytes: size,
    seconds: create.seconds,
    mbPerSec: mbps(size, create.seconds),
    peakRssMB: create.peakRssBytes / 1e6,
  };
  const metaJson = JSON.parse(await Deno.readTextFile(meta));
  const pieceLength = metaJson.info.pieceLength as number;
  createFigure.detail = `pieces of ${formatBytes(pieceLength)}`;
  if (!encryptionOnly) figures.push(createFigure);
  const external = { runs, workDir: dir, runTimeoutMs: limitMs };
  if (baselines) {
    console.log(`bench: ${label}: openssl, curl, aria2c`);
    checkSpeed(createFigure, addExternal(await benchOpensslSha256(file, external), size), {
      min: 0.8,
      percent: true,
    });
  }

  // baselines
  let tcpBaseline: Figure | undefined;
  let aria2Http: Figure | undefined;
  let aria2Bt: Figure | undefined;
  if (baselines) {
    const hashSeconds = hashSecondsInMemory(size);
    figures.push({
      name: "Deno SHA-256, node:crypto, 1 core, in memory",
      seconds: hashSeconds,
      mbPerSec: mbps(size, hashSeconds),
      detail: "baseline: what hashing allows",
    });
    const [curl, http] = await benchHttp(file, external);
    addExternal(curl, size);
    aria2Http = addExternal(http, size);
    aria2Bt = addExternal(await benchAria2BitTorrent(file, external), size);
    const cp = await medianOf(r, () => measure("cp", [file, join(dir, "cp.bin")], limitMs));
    await Deno.remove(join(dir, "cp.bin"));
    figures.push({
      name: `cp ${label}`,
      sizeBytes: size,
      seconds: cp.seconds,
      mbPerSec: mbps(size, cp.seconds),
      detail: "baseline: the disk copy alone",
    });
    for (const mode of ["tcp", "node", "sync"]) {
      const out = join(dir, "tcp.bin");
      const m = await medianOf(r, async () => {
        const sender = spawnLines(Deno.execPath(), [
          "run",
          "--allow-net=127.0.0.1",
          `--allow-read=${dir}`,
          baselineScript,
          "send",
          file,
        ]);
        try {
          const { port } = JSON.parse(
            await sender.next((l) => l.includes('"port"'), 30_000, "the baseline sender's port"),
          );
          return await measure(Deno.execPath(), [
            "run",
            "--allow-net=127.0.0.1",
            `--allow-read=${dir}`,
            `--allow-write=${dir}`,
            baselineScript,
            "recv",
            String(port),
            out,
            meta,
            mode,
          ], limitMs);
        } finally {
          await sender.stop();
          await Deno.remove(out).catch(() => {});
        }
      });
      const figure: Figure = {
        name: {
          tcp: "Deno loopback TCP, 1 MiB writes, no hash",
          node: "Deno TCP copy + SHA-256 check + write",
          sync: "Deno TCP copy + SHA-256 check + write, one thread",
        }[mode]!,
        sizeBytes: size,
        ...timed(size, m),
        detail: mode === "tcp"
          ? "baseline: what the transport allows"
          : "baseline: minimal verified transfer",
      };
      figures.push(figure);
      // The downloads are held to the faster of the two minimal programs.
      if (mode !== "tcp" && (!tcpBaseline || figure.seconds! < tcpBaseline.seconds!)) {
        tcpBaseline = figure;
      }
    }
  }

  // seeder, then the downloads from it
  const data = join(dir, "data");
  const parallels = encryptionOnly ? [ENCRYPTED_PARALLEL] : [1, 4, 8];
  console.log(`bench: ${label}: seeder ingest, then download --parallel ${parallels.join(", ")}`);
  const seeding = new SeederRun(dir, meta, file, data, limitMs);
  const seederFigure: Figure = {
    name: `seeder ${label}: peak RSS`,
    sizeBytes: size,
    detail: "ingest, then every download of this size served",
  };
  try {
    await settleBeforeRun();
    const ingestSeconds = await seeding.start();
    figures.push({
      name: `seed ${label}: ingest (verify + copy)`,
      sizeBytes: size,
      seconds: ingestSeconds,
      mbPerSec: mbps(size, ingestSeconds),
    });
    // The settings take turns run by run (1, 4, 8, 1, 4, 8, ...): this machine has slow spells
    // of tens of seconds, which in batches fell on one setting's runs whole (one run: 1.58 s for
    // --parallel 1 and 3.01 s for --parallel 4, which took 1.69 s minutes later).
    const runsOf = new Map<number, Measured[]>(parallels.map((p) => [p, []]));
    const failed = new Map<number, unknown>();
    for (let i = 0; i < r; i++) {
      for (const parallel of parallels) {
        if (failed.has(parallel)) continue;
        try {
          await settleBeforeRun();
          runsOf.get(parallel)!.push(
            await measureDownload(dir, meta, seeding, {
              parallel,
              work: join(dir, `dl-${parallel}`),
            }),
          );
        } catch (error) {
          failed.set(parallel, error);
        }
      }
    }
    for (const parallel of parallels) {
      const figure: Figure = { name: `download ${label} --parallel ${parallel}`, sizeBytes: size };
      figures.push(figure);
      if (failed.has(parallel)) {
        figure.skipped = failure(failed.get(parallel));
        skipped.push(`${figure.name}: ${figure.skipped}`);
      } else {
        Object.assign(figure, timed(size, summarise(runsOf.get(parallel)!)), {
          detail: full ? "" : "1 run",
        });
      }
      if (baselines) {
        checkSpeed(figure, aria2Http ?? { name: "aria2c -x4 HTTP (nginx)" }, {
          min: 1,
          strict: true,
        });
        checkSpeed(figure, aria2Bt ?? { name: "aria2c BitTorrent" }, { min: 3 });
        checkSpeed(figure, tcpBaseline ?? { name: "Deno TCP copy + SHA-256" }, {
          min: 0.7,
          percent: true,
        });
      }
      checkRss(figure, "downloader");
      if (full) firstSize.downloads.set(parallel, figure);
      else checkRssGrowth(figure, firstSize.downloads.get(parallel));
    }
    await seeding.ensure("after the downloads");
  } catch (error) {
    seederFigure.skipped = failure(error);
    skipped.push(`${seederFigure.name}: ${seederFigure.skipped}`);
  } finally {
    await seeding.stop();
  }
  if (seeding.problems.length) {
    seederFigure.detail = `${seederFigure.detail}; ${seeding.problems.join("; ")}`;
    problems.push(...seeding.problems.map((p) => `seeder ${label}: ${p}`));
  }
  seederFigure.peakRssMB = seeding.peakRssBytes / 1e6 || undefined;
  figures.push(seederFigure);
  checkRss(seederFigure, "seeder");
  if (full) firstSize.seeder = seederFigure;
  else checkRssGrowth(seederFigure, firstSize.seeder);
  if (full) {
    await benchEncryptedDownload(
      dir,
      size,
      meta,
      data,
      firstSize.downloads.get(ENCRYPTED_PARALLEL),
      r,
    );
    await benchTransportFigures(size, r);
  }
  await Deno.remove(data, { recursive: true }).catch(() => {});
  await Deno.remove(file).catch(() => {});
}

// ---------------------------------------------------------------------------------------------

const missingTools = [];
for (const tool of ["aria2c", "curl", "nginx", "openssl"]) {
  if (!(await which(tool))) missingTools.push(tool);
}
if (missingTools.length) {
  console.log(`bench: not installed: ${missingTools.join(", ")} (bench/setup.sh installs them)`);
}
for (const s of allSizes.slice(sizes.length)) skipped.push(`${sizeLabel(s)} file: --quick`);

const dir = await Deno.makeTempDir({ dir: root, prefix: ".bench-" });
const startedAt = new Date();
try {
  for (const [i, size] of sizes.entries()) {
    try {
      await benchSize(dir, size, i === 0);
    } catch (error) {
      problems.push(`${sizeLabel(size)} file: ${failure(error)}`);
    }
    if (i === 0 && !encryptionOnly) {
      console.log("bench: swarm");
      const swarm = await benchSwarm().catch((error) => {
        problems.push(`swarm: ${failure(error)}`);
      });
      if (swarm) {
        const swarmFigure: Figure = {
          name: `swarm: 1 seeder + ${swarm.downloaders} downloaders, ${
            formatBytes(swarm.fileBytes)
          }`,
          seconds: swarm.seconds,
          detail: `u = ${formatBytes(swarm.uploadBytesPerSec)}/s each; seeder sent ${
            swarm.seederCopies.toFixed(2)
          } copies`,
        };
        figures.push(swarmFigure);
        checks.push({
          figure: swarmFigure.name,
          against: `Kumar-Ross bound ${swarm.lowerBoundSeconds.toFixed(1)} s`,
          measured: `${swarm.ratio.toFixed(2)}x`,
          target: `<= ${SWARM_RATIO_AIM}x`,
          met: swarm.ratio <= SWARM_RATIO_AIM,
        });
      }
      console.log("bench: tracker");
      const tracker = await benchTracker().catch((error) => {
        problems.push(`tracker: ${failure(error)}`);
      });
      if (tracker) {
        figures.push({
          name: `tracker: ${tracker.peers} peers, ${tracker.swarms} swarms`,
          detail: `${tracker.announcesPerSec.toFixed(0)} announces/s, p50 ${
            tracker.p50Ms.toFixed(2)
          } ms, p99 ${tracker.p99Ms.toFixed(2)} ms (reported, no target)`,
        });
      }
    }
  }

  const host = await machine();
  const commit = await gitCommit();
  const title = `p2p-share benchmark: ${sizes.map(sizeLabel).join(" and ")} file${
    sizes.length > 1 ? "s" : ""
  }, loopback, warm cache, median of ${runs}; ${host.cores} cores, ${
    host.memTotalBytes ? formatBytes(host.memTotalBytes) : "?"
  } memory, ${host.os}, Deno ${host.deno}`;
  console.log(`\n${title}\n\n${renderTable()}`);
  const met = checks.filter((c) => c.met === true).length;
  const notMet = checks.filter((c) => c.met === false).length;
  const na = checks.filter((c) => c.met === null).length;
  console.log(`\ntargets: ${met} met, ${notMet} not met${na ? `, ${na} not measurable` : ""}`);
  if (skipped.length) console.log(`skipped: ${skipped.join("; ")}`);
  if (problems.length) console.log(`problems: ${problems.join("; ")}`);
  if (!outPath) {
    console.log("--encryption-only: a partial run, no JSON written (give --out PATH to keep it)");
  } else {
    await Deno.writeTextFile(
      outPath,
      JSON.stringify(
        {
          date: startedAt.toISOString(),
          ...commit,
          machine: host,
          sizesBytes: sizes,
          runs,
          quick: values.quick,
          encryptionOnly,
          pretouchBytes: Object.fromEntries(pretouchBytesBySize),
          figures,
          targets: checks,
          summary: { met, notMet, notMeasurable: na },
          skipped,
          problems,
        },
        null,
        2,
      ) + "\n",
    );
    console.log(`wrote ${outPath}`);
  }
} finally {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
  await Deno.remove(dir, { recursive: true });
}
