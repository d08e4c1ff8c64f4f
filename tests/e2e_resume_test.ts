/**
 * End-to-end resume: a download killed with SIGKILL in the middle, then run again, completes
 * with identical bytes and fetches only what is missing — with the state file intact, deleted,
 * or damaged.
 *
 * "In the middle" is made deterministic with a gate proxy between downloader and seeder: it
 * passes the first bytes of the transfer and then holds the rest, so the download is stuck
 * part-way (with some pieces verified and recorded) when it is killed, however fast the machine.
 */

import assert from "node:assert/strict";
import {
  assertSameFile,
  createMeta,
  downloadArgs,
  exists,
  listDir,
  onlyEvent,
  perms,
  randomFile,
  runDownload,
  type Seeder,
  spawnCli,
  startGateProxy,
  startSeeder,
  stateHave,
  tempDir,
  waitFor,
} from "./helpers.ts";

const MiB = 1024 * 1024;
const FILE_BYTES = 16 * MiB;
const PIECES = 256; // 64 KiB pieces
const NAME = "big.bin";

/**
 * Starts a download through a gate proxy that lets about 6 MiB through, waits until it has
 * verified pieces and recorded some in its state file, then kills it with SIGKILL.
 *
 * @returns the pieces its state file lists after the kill
 */
async function killMidDownload(meta: string, workdir: string, seeder: Seeder): Promise<number[]> {
  await using proxy = startGateProxy(seeder.port, 6 * MiB);
  const running = spawnCli(downloadArgs(meta, workdir, proxy.port, 2), {
    perms: perms.download(meta, workdir),
  });
  try {
    await running.log.next("progress", {
      match: (e) => (e.piecesDone as number) > 0 && (e.piecesDone as number) < PIECES,
      timeoutMs: 30_000,
      what: "a progress event with 0 < piecesDone < piecesTotal",
    });
    await waitFor(
      async () => ((await stateHave(`${workdir}/${NAME}.state.json`))?.length ?? 0) > 0,
      10_000,
      "the state file to list verified pieces",
    );
  } finally {
    running.child.kill("SIGKILL");
  }
  const killed = await running.finished();
  assert.equal(killed.signal, "SIGKILL", `the download ended by itself first: ${killed.stderr}`);
  assert.ok(!running.log.events.some((e) => e.event === "complete"), "completed before the kill");

  assert.ok(await exists(`${workdir}/${NAME}.partial`), "no .partial after the kill");
  assert.ok(await exists(`${workdir}/${NAME}.state.json`), "no .state.json after the kill");
  assert.ok(!(await exists(`${workdir}/${NAME}`)), "final file present after the kill");
  const have = await stateHave(`${workdir}/${NAME}.state.json`);
  assert.ok(have, "state file unreadable after the kill");
  assert.ok(have.length > 0 && have.length < PIECES, `state lists ${have.length} pieces`);
  return have;
}

/** A source file, its metadata and a seeder for it. */
async function fixture(dir: { join(...p: string[]): string }) {
  const source = dir.join(NAME);
  await randomFile(source, FILE_BYTES);
  const { meta } = await createMeta(source, { pieceSize: "64K" });
  const seeder = await startSeeder({ meta, source, workdir: dir.join("seed") });
  return { source, meta, seeder };
}

/** Runs the download again straight from the seeder and checks it completed identically. */
async function resumeAndCheck(
  meta: string,
  workdir: string,
  seeder: Seeder,
  source: string,
) {
  const result = await runDownload({ meta, workdir, port: seeder.port, parallel: 4 });
  assert.equal(result.code, 0, `resumed download failed: ${result.stderr}`);
  const complete = onlyEvent(result.events, "complete");
  assert.equal(complete.piecesTotal, PIECES);
  assert.equal(complete.bytes, FILE_BYTES);
  assert.deepEqual(await listDir(workdir), [NAME]);
  await assertSameFile(`${workdir}/${NAME}`, source);
  return { result, complete, fetched: complete.piecesFetched as number };
}

Deno.test("a download killed with SIGKILL resumes, fetches only the missing pieces and ends identical", async () => {
  await using dir = await tempDir();
  const { source, meta, seeder } = await fixture(dir);
  await using _seeder = seeder;
  const workdir = dir.join("dl");
  const have = await killMidDownload(meta, workdir, seeder);

  const { result, fetched } = await resumeAndCheck(meta, workdir, seeder, source);
  // Every piece the state file recorded was kept; exactly the others were fetched.
  assert.equal(fetched, PIECES - have.length);
  assert.equal(onlyEvent(result.events, "started").piecesNeeded, PIECES - have.length);
  assert.ok(
    !result.events.some((e) => e.event === "rechecking"),
    "a readable state file should not cause a full recheck",
  );
});

Deno.test("a killed download whose state file was deleted rechecks the partial data and still fetches fewer pieces", async () => {
  await using dir = await tempDir();
  const { source, meta, seeder } = await fixture(dir);
  await using _seeder = seeder;
  const workdir = dir.join("dl");
  const have = await killMidDownload(meta, workdir, seeder);
  await Deno.remove(`${workdir}/${NAME}.state.json`);

  const { result, fetched } = await resumeAndCheck(meta, workdir, seeder, source);
  const recheck = onlyEvent(result.events, "rechecking");
  assert.equal(recheck.path, `${workdir}/${NAME}.partial`);
  // The recheck finds at least every piece that had been recorded (they were synced first).
  assert.ok(fetched <= PIECES - have.length, `fetched ${fetched}, recorded ${have.length}`);
  assert.ok(fetched < PIECES);
});

Deno.test("a killed download whose state file is garbage rechecks instead of crashing", async () => {
  await using dir = await tempDir();
  const { source, meta, seeder } = await fixture(dir);
  await using _seeder = seeder;
  const workdir = dir.join("dl");
  const have = await killMidDownload(meta, workdir, seeder);
  await Deno.writeTextFile(`${workdir}/${NAME}.state.json`, '{"version": 1, "have": [garbage');

  const { result, fetched } = await resumeAndCheck(meta, workdir, seeder, source);
  onlyEvent(result.events, "rechecking");
  assert.ok(fetched <= PIECES - have.length, `fetched ${fetched}, recorded ${have.length}`);
  assert.ok(fetched < PIECES);
  assert.doesNotMatch(result.stderr, /^\s+at /m);
});
