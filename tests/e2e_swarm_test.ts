/**
 * End-to-end swarm tests: real `tracker`, `seed` and `download` processes on 127.0.0.1 (port 0
 * everywhere) under narrow permission flags, synchronised on their `--json` events and on the
 * tracker's `/stats`, each wait with a deadline and never a sleep. Downloaders serve what they
 * hold (`--listen-host 127.0.0.1`), so they trade pieces among themselves; rates are measured
 * from the byte counts of the downloaders' own progress events.
 */

import assert from "node:assert/strict";
import {
  assertSameFile,
  createMeta,
  damageFile,
  type JsonEvent,
  randomFile,
  startSeeder,
  stateHave,
  type TempDir,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { pollStats, startTracker, swarmOf } from "./tracker_kit.ts";
import {
  msLeft,
  progressSamples,
  startSwarmDownloader,
  type TimedCli,
  uploadedOnStop,
  windowRate,
} from "./swarm_kit.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** A random file of `bytes` bytes named `name` and its metadata. */
async function share(
  dir: TempDir,
  name: string,
  bytes: number,
  pieceSize: string,
): Promise<{ source: string; meta: string; infoHash: string }> {
  const source = dir.join(name);
  await randomFile(source, bytes);
  const { meta, created } = await createMeta(source, { pieceSize });
  assert.equal(typeof created.infoHash, "string");
  return { source, meta, infoHash: created.infoHash as string };
}

/**
 * Waits for a downloader's `complete` event and its exit, before `deadlineMs`; fails with its
 * stderr when it exits otherwise.
 */
async function expectComplete(
  name: string,
  peer: TimedCli,
  deadlineMs: number,
): Promise<JsonEvent> {
  let complete: JsonEvent;
  try {
    complete = await peer.log.next("complete", {
      timeoutMs: msLeft(deadlineMs),
      what: `${name}'s complete event`,
    });
  } catch (err) {
    const progress = peer.log.all("progress").at(-1);
    throw new Error(
      `${name}: ${(err as Error).message}\nlast progress: ${
        JSON.stringify(progress)
      }\nstderr:\n${peer.stderr()}`,
    );
  }
  const result = await waitFor(peer.finished(), msLeft(deadlineMs), `${name}'s exit`);
  assert.equal(result.code, 0, `${name} exited ${result.code}:\n${result.stderr}`);
  return complete;
}

Deno.test("one seeder capped at 512K/s and five downloaders through a tracker all get identical files, mostly from each other", async () => {
  // 4 MiB in 64 KiB pieces. Alone, the seeder at 512 KiB/s would need 8 s per copy, 40 s for
  // five; the swarm is given 25 s, so the downloaders can only make it by trading pieces.
  const FILE_BYTES = 4 * MiB;
  const DOWNLOADERS = 5;
  const SWARM_LIMIT_MS = 25_000;
  await using dir = await tempDir("p2p_swarm_");
  await using tracker = await startTracker({ interval: 1 });
  const { source, meta, infoHash } = await share(dir, "swarm.bin", FILE_BYTES, "64K");
  await using seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--tracker", tracker.address, "--max-upload-rate", "512K"],
  });
  await pollStats(tracker.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
    timeoutMs: 10_000,
    what: "the seeder in /stats",
  });

  await using stack = new AsyncDisposableStack();
  const deadline = performance.now() + SWARM_LIMIT_MS;
  const downloaders = Array.from({ length: DOWNLOADERS }, (_, i) => {
    const peer = startSwarmDownloader({
      meta,
      workdir: dir.join(`dl${i}`),
      tracker: tracker.address,
    });
    stack.use(peer);
    return peer;
  });
  const completes = await Promise.all(
    downloaders.map((peer, i) => expectComplete(`downloader ${i}`, peer, deadline)),
  );
  for (let i = 0; i < DOWNLOADERS; i++) {
    await assertSameFile(dir.join(`dl${i}`, "swarm.bin"), source);
    assert.equal(completes[i].bytes, FILE_BYTES);
    assert.equal(completes[i].piecesFetched, 64);
  }

  const stopped = await seeder.stop();
  assert.equal(stopped.code, 0, stopped.stderr);
  const seederUploaded = uploadedOnStop(stopped);
  assert.ok(
    seederUploaded < 2 * FILE_BYTES,
    `the seeder uploaded ${(seederUploaded / FILE_BYTES).toFixed(2)} copies of the file`,
  );
  const tradedBytes = completes.reduce((sum, c) => sum + (c.bytesUploaded as number), 0);
  assert.ok(tradedBytes > 0, "the downloaders uploaded nothing to each other");
  // Each received at least one copy; what the seeder did not send came from the others.
  const downloadedBytes = completes.reduce((sum, c) => sum + (c.bytesDownloaded as number), 0);
  assert.ok(downloadedBytes >= DOWNLOADERS * FILE_BYTES, `downloaded ${downloadedBytes} in all`);
});

Deno.test("a downloader killed with SIGKILL mid-swarm resumes on restart and ends identical", async () => {
  const FILE_BYTES = 4 * MiB;
  const PIECES = 64;
  await using dir = await tempDir("p2p_swarm_");
  await using tracker = await startTracker({ interval: 1 });
  const { source, meta, infoHash } = await share(dir, "resume.bin", FILE_BYTES, "64K");
  // Capped so the swarm needs seconds: the kill lands mid-download.
  await using _seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--tracker", tracker.address, "--max-upload-rate", "1M"],
  });
  await pollStats(tracker.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
    timeoutMs: 10_000,
    what: "the seeder in /stats",
  });
  const deadline = performance.now() + 40_000;
  const victimDir = dir.join("victim");
  const statePath = dir.join("victim", "resume.bin.state.json");
  await using other = startSwarmDownloader({
    meta,
    workdir: dir.join("other"),
    tracker: tracker.address,
  });
  await using victim = startSwarmDownloader({ meta, workdir: victimDir, tracker: tracker.address });

  await victim.log.next("progress", {
    match: (e) => (e.piecesDone as number) >= 8,
    timeoutMs: msLeft(deadline),
    what: "a progress event with 8 pieces",
  });
  // Kill once the state file records some pieces, so the restart has something to resume.
  const recorded = await waitFor(
    async () => ((await stateHave(statePath))?.length ?? 0) > 0,
    msLeft(deadline),
    "the victim's state file to list a piece",
  );
  assert.ok(recorded);
  assert.equal(victim.log.all("complete").length, 0, "the victim finished before the kill");
  const killed = await victim.stop("SIGKILL");
  assert.equal(killed.signal, "SIGKILL");
  const haveAtKill = (await stateHave(statePath)) ?? [];
  assert.ok(haveAtKill.length > 0 && haveAtKill.length < PIECES, `had ${haveAtKill.length}`);

  await using restarted = startSwarmDownloader({
    meta,
    workdir: victimDir,
    tracker: tracker.address,
  });
  const [again, otherDone] = await Promise.all([
    expectComplete("the restarted downloader", restarted, deadline),
    expectComplete("the other downloader", other, deadline),
  ]);
  assert.ok(
    (again.piecesFetched as number) <= PIECES - haveAtKill.length,
    `the restart fetched ${again.piecesFetched} pieces though ${haveAtKill.length} were recorded`,
  );
  assert.ok((again.piecesFetched as number) < PIECES);
  assert.equal(otherDone.piecesFetched, PIECES);
  await assertSameFile(`${victimDir}/resume.bin`, source);
  await assertSameFile(dir.join("other", "resume.bin"), source);
});

Deno.test("a peer serving corrupt data is dropped while the download completes from a good seeder", async () => {
  const PIECE = 64 * KiB;
  const PIECES = 32;
  await using dir = await tempDir("p2p_swarm_");
  const { source, meta } = await share(dir, "corrupt.bin", PIECES * PIECE, "64K");
  // The good seeder is capped so the bad one surely gets to deliver some of its pieces.
  await using good = await startSeeder({
    meta,
    source,
    workdir: dir.join("good"),
    extraArgs: ["--max-upload-rate", "1M"],
  });
  const badDir = dir.join("bad");
  await using bad = await startSeeder({ meta, source, workdir: badDir });
  // Verified at ingest, damaged on disk afterwards: the bad seeder serves every piece wrong.
  for (let i = 0; i < PIECES; i++) {
    await damageFile(`${badDir}/corrupt.bin.partial`, i * PIECE + 100, 64);
  }

  const workdir = dir.join("dl");
  await using downloader = startSwarmDownloader({
    meta,
    workdir,
    peerPorts: [good.port, bad.port],
  });
  const complete = await expectComplete("the downloader", downloader, performance.now() + 30_000);
  await assertSameFile(`${workdir}/corrupt.bin`, source);
  assert.equal(complete.piecesFetched, PIECES);

  const badPeer = `127.0.0.1:${bad.port}`;
  const failed = downloader.log.all("piece_failed");
  assert.ok(failed.length >= 1, "no piece_failed event");
  for (const e of failed) {
    assert.equal(e.peer, badPeer, `a piece from ${e.peer} failed: ${JSON.stringify(e)}`);
    assert.match(String(e.reason), /failed SHA-256 verification/);
  }
  const drops = downloader.log.all("warning").filter((e) =>
    String(e.message).startsWith(`dropping peer ${badPeer}`)
  );
  assert.equal(drops.length, 1, JSON.stringify(downloader.log.all("warning")));
  assert.ok(
    !downloader.log.all("warning").some((e) =>
      String(e.message).includes(`127.0.0.1:${good.port}`)
    ),
    "a warning names the good seeder",
  );
});

/**
 * Checks the download rate the downloader's progress events show, from 1 MiB in (start-up
 * excluded) to 512 KiB before the end (the tail excluded): over at least 5 s, within 10% of
 * `rate`.
 */
function assertRateWithin10Percent(
  timed: Parameters<typeof progressSamples>[0],
  fileBytes: number,
  rate: number,
  flag: string,
): void {
  const measured = windowRate(progressSamples(timed, "bytesDownloaded"), {
    fromBytes: MiB,
    toBytes: fileBytes - 512 * KiB,
  });
  assert.ok(measured.windowMs >= 5000, `window of only ${measured.windowMs} ms`);
  assert.ok(
    Math.abs(measured.bytesPerSec / rate - 1) <= 0.1,
    `measured ${(measured.bytesPerSec / KiB).toFixed(0)} KiB/s over ${
      (measured.windowMs / 1000).toFixed(1)
    } s with ${flag}`,
  );
}

Deno.test("--max-upload-rate 1M holds within 10% over the run, measured at the downloader", async () => {
  const FILE_BYTES = 8 * MiB;
  const RATE = MiB;
  await using dir = await tempDir("p2p_swarm_");
  const { source, meta } = await share(dir, "up.bin", FILE_BYTES, "64K");
  await using seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--max-upload-rate", "1M"],
  });
  const workdir = dir.join("dl");
  await using downloader = startSwarmDownloader({ meta, workdir, peerPorts: [seeder.port] });
  await expectComplete("the downloader", downloader, performance.now() + 30_000);
  await assertSameFile(`${workdir}/up.bin`, source);

  assertRateWithin10Percent(downloader.timed, FILE_BYTES, RATE, "--max-upload-rate 1M");
});

Deno.test("--max-download-rate 1M holds within 10% over the run against an uncapped seeder", async () => {
  const FILE_BYTES = 8 * MiB;
  const RATE = MiB;
  await using dir = await tempDir("p2p_swarm_");
  const { source, meta } = await share(dir, "down.bin", FILE_BYTES, "64K");
  await using seeder = await startSeeder({ meta, source, workdir: dir.join("seed") });
  const workdir = dir.join("dl");
  await using downloader = startSwarmDownloader({
    meta,
    workdir,
    peerPorts: [seeder.port],
    extraArgs: ["--max-download-rate", "1M"],
  });
  await expectComplete("the downloader", downloader, performance.now() + 30_000);
  await assertSameFile(`${workdir}/down.bin`, source);

  assertRateWithin10Percent(downloader.timed, FILE_BYTES, RATE, "--max-download-rate 1M");
});

Deno.test("--keep-seeding serves a later downloader after the seeder left; --seed-for exits 0 by itself", async () => {
  const FILE_BYTES = MiB + 4321;
  await using dir = await tempDir("p2p_swarm_");
  const { source, meta } = await share(dir, "later.bin", FILE_BYTES, "64K");
  await using seeder = await startSeeder({ meta, source, workdir: dir.join("seed") });
  const deadline = performance.now() + 40_000;

  await using first = startSwarmDownloader({
    meta,
    workdir: dir.join("first"),
    peerPorts: [seeder.port],
    extraArgs: ["--keep-seeding"],
  });
  const firstPort = await first.listenPort(msLeft(deadline));
  await first.log.next("complete", { timeoutMs: msLeft(deadline) });
  await first.log.next("info", {
    match: (e) => e.message === "seeding on until Ctrl-C",
    timeoutMs: msLeft(deadline),
  });
  const seederStopped = await seeder.stop();
  assert.equal(seederStopped.code, 0, seederStopped.stderr);
  await assertSameFile(dir.join("first", "later.bin"), source);

  // The original seeder is gone: the second downloader can only fetch from the first.
  const secondDir = dir.join("second");
  await using second = startSwarmDownloader({
    meta,
    workdir: secondDir,
    peerPorts: [firstPort],
    extraArgs: ["--seed-for", "2s"],
  });
  const complete = await second.log.next("complete", { timeoutMs: msLeft(deadline) });
  assert.equal(complete.piecesFetched, 17);
  await second.log.next("info", {
    match: (e) => e.message === "seeding on for 2s",
    timeoutMs: msLeft(deadline),
  });
  // Nobody signals it: it must stop seeding and exit 0 on its own.
  const secondResult = await waitFor(second.finished(), msLeft(deadline), "--seed-for to end");
  assert.equal(secondResult.code, 0, secondResult.stderr);
  assert.equal(secondResult.signal, null);
  const completeAt = second.timed.find((t) => t.event.event === "complete")?.atMs ?? 0;
  const stoppedAt = second.timed.find((t) =>
    t.event.event === "info" && /^stopped seeding/.test(String(t.event.message))
  )?.atMs;
  assert.ok(stoppedAt !== undefined, `no "stopped seeding" info: ${secondResult.stdout}`);
  assert.ok(stoppedAt - completeAt >= 1500, `seeded on for only ${stoppedAt - completeAt} ms`);
  await assertSameFile(`${secondDir}/later.bin`, source);
  const connected = second.log.all("peer_connected").filter((e) => e.direction === "out");
  assert.ok(connected.length > 0);
  for (const e of connected) assert.equal(e.peer, `127.0.0.1:${firstPort}`);

  // The first one is still seeding until told to stop, and it sent the whole file.
  assert.equal(first.log.all("error").length, 0);
  const firstResult = await first.stop();
  assert.equal(firstResult.code, 0, firstResult.stderr);
  assert.ok(uploadedOnStop(firstResult) >= FILE_BYTES, firstResult.stdout);
});
