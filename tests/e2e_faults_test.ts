/**
 * End-to-end faults: damaged data at the seeder, a wrong info hash, hostile bytes on the wire,
 * an unreachable peer, bad command lines and metadata, `verify`, and a port in use. Every
 * failure must be one clear line (no stack trace) with the documented exit code, and a seeder
 * must keep serving after bad connections.
 */

import assert from "node:assert/strict";
import {
  assertSameFile,
  closedPort,
  createMeta,
  damageFile,
  exists,
  onlyEvent,
  parseEvents,
  perms,
  randomFile,
  readAt,
  runCli,
  runDownload,
  type Seeder,
  startSeeder,
  stateHave,
  tempDir,
  waitFor,
} from "./helpers.ts";

const KiB = 1024;
const PIECE = 16 * KiB;

/** Asserts stderr holds exactly one line, `error: ...`, and no stack trace. */
function assertOneErrorLine(stderr: string): string {
  assert.doesNotMatch(stderr, /^\s+at /m, `stack trace in stderr:\n${stderr}`);
  const lines = stderr.split("\n").filter((l) => l.trim() !== "");
  const errors = lines.filter((l) => l.startsWith("error:"));
  assert.equal(errors.length, 1, `expected one "error:" line in stderr:\n${stderr}`);
  return errors[0];
}

/** A random source file of `pieces` pieces (the last one short), its metadata and a seeder. */
async function seededFile(
  dir: { join(...p: string[]): string },
  name: string,
  pieces: number,
): Promise<{ source: string; meta: string; seedDir: string; seeder: Seeder; bytes: number }> {
  const source = dir.join(name);
  const bytes = (pieces - 1) * PIECE + 1000;
  await randomFile(source, bytes);
  const { meta } = await createMeta(source, { pieceSize: "16K" });
  const seedDir = dir.join("seed");
  const seeder = await startSeeder({ meta, source, workdir: seedDir });
  return { source, meta, seedDir, seeder, bytes };
}

/** A seeder whose copy of piece `bad` is damaged on disk after it verified and started serving. */
async function damagedSeeder(dir: { join(...p: string[]): string }, bad: number) {
  const fixture = await seededFile(dir, "data.bin", 16);
  await damageFile(`${fixture.seedDir}/data.bin.partial`, bad * PIECE + 100, 64);
  return fixture;
}

Deno.test("a piece damaged on the seeder's disk is rejected by the downloader and never recorded", async () => {
  await using dir = await tempDir();
  const BAD = 5;
  const { source, meta, seeder } = await damagedSeeder(dir, BAD);
  await using _seeder = seeder;

  const workdir = dir.join("dl");
  const result = await runDownload({ meta, workdir, port: seeder.port, parallel: 2 });
  assert.equal(result.code, 1, `expected a failed download:\n${result.stderr}`);
  const failed = result.events.filter((e) => e.event === "piece_failed");
  assert.ok(failed.length >= 1, `no piece_failed event: ${result.stdout}`);
  for (const e of failed) {
    assert.equal(e.index, BAD);
    assert.match(String(e.reason), /piece 5 .*verification/);
  }
  assertOneErrorLine(result.stderr);
  onlyEvent(result.events, "error");
  assert.ok(!result.events.some((e) => e.event === "complete"));
  assert.ok(!(await exists(`${workdir}/data.bin`)), "an unverified file was finalised");

  // The state file never records the bad piece. (The peer that sent it is dropped at once, so
  // how many other pieces arrived before that depends on timing; each one recorded is good.)
  const have = await stateHave(`${workdir}/data.bin.state.json`);
  assert.ok(have, "no readable state file after the failed download");
  assert.ok(!have.includes(BAD), `the bad piece was recorded: ${have}`);
  assert.ok(have.every((i) => i >= 0 && i < 16), `${have}`);
  for (const i of have) {
    const length = i === 15 ? 1000 : PIECE;
    assert.deepEqual(
      await readAt(`${workdir}/data.bin.partial`, i * PIECE, length),
      await readAt(source, i * PIECE, length),
      `recorded piece ${i} holds wrong bytes`,
    );
  }
});

Deno.test({
  name: "a download that fails on a damaged piece ends with an error that says verification",
  // Regression test: the bad piece's failure once lost a race with another connection's stall
  // check and the final error became the generic "no connected peer has the 1 missing pieces".
  // Ten runs with many connections make the race likely if it comes back.
  async fn() {
    await using dir = await tempDir();
    const { meta, seeder } = await damagedSeeder(dir, 5);
    await using _seeder = seeder;
    for (let run = 0; run < 10; run++) {
      const workdir = dir.join(`dl-${run}`);
      const result = await runDownload({ meta, workdir, port: seeder.port, parallel: 16 });
      assert.equal(result.code, 1, result.stderr);
      const line = assertOneErrorLine(result.stderr);
      assert.match(line, /piece 5 failed verification/, `run ${run}: ${line}`);
    }
  },
});

Deno.test("a wrong info hash is refused at handshake on both sides, and the seeder keeps serving", async () => {
  await using dir = await tempDir();
  const { source, meta, seeder } = await seededFile(dir, "right.bin", 4);
  await using _seeder = seeder;
  const other = dir.join("other.bin");
  await randomFile(other, 3 * PIECE);
  const { meta: otherMeta } = await createMeta(other, { pieceSize: "16K" });

  const wrong = await runDownload({
    meta: otherMeta,
    workdir: dir.join("dl-wrong"),
    port: seeder.port,
    parallel: 1,
  });
  assert.equal(wrong.code, 1, `expected a refused download:\n${wrong.stderr}`);
  assert.match(assertOneErrorLine(wrong.stderr), /info hash/);
  assert.ok(!wrong.events.some((e) => e.event === "piece_failed" || e.event === "complete"));
  await seeder.log.next("warning", {
    match: (e) => /info hash/.test(String(e.message)),
    timeoutMs: 5000,
    what: "the seeder's warning about the rejected info hash",
  });

  const workdir = dir.join("dl");
  const right = await runDownload({ meta, workdir, port: seeder.port });
  assert.equal(right.code, 0, `download after the refusal failed:\n${right.stderr}`);
  await assertSameFile(`${workdir}/right.bin`, source);
});

/**
 * Sends `bytes` on a fresh connection to the seeder and waits (at most `timeoutMs`) for the
 * seeder to close it: a clean end of stream or a reset both count.
 *
 * @returns the local port, which the seeder names in its log
 */
async function sendAndExpectClose(port: number, bytes: Uint8Array, timeoutMs: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    let done = 0;
    while (done < bytes.length) done += await conn.write(bytes.subarray(done));
    const closed = (async () => {
      const buf = new Uint8Array(4096);
      for (;;) {
        try {
          if ((await conn.read(buf)) === null) return true;
        } catch (err) {
          if (err instanceof Deno.errors.ConnectionReset) return true;
          throw err;
        }
      }
    })();
    await waitFor(closed, timeoutMs, "the seeder to close the hostile connection");
    return (conn.localAddr as Deno.NetAddr).port;
  } finally {
    conn.close();
  }
}

Deno.test("garbage bytes and an oversized length prefix get the connection closed, and the seeder still serves", async () => {
  await using dir = await tempDir();
  const { source, meta, seeder } = await seededFile(dir, "target.bin", 6);
  await using _seeder = seeder;

  const garbage = crypto.getRandomValues(new Uint8Array(4096));
  const garbagePort = await sendAndExpectClose(seeder.port, garbage, 5000);

  // A handshake-looking frame announcing ~4 GiB: refused from the prefix alone, well before
  // the seeder's 10 s handshake timeout (so waiting for the body would fail this test).
  const huge = new Uint8Array([0xff, 0xff, 0xff, 0xf0, 0, ...new TextEncoder().encode("P2PSHARE")]);
  const hugePort = await sendAndExpectClose(seeder.port, huge, 5000);

  for (const local of [garbagePort, hugePort]) {
    await seeder.log.next("warning", {
      match: (e) => String(e.message).includes(`127.0.0.1:${local}`),
      timeoutMs: 5000,
      what: `the seeder's warning about the connection from port ${local}`,
    });
  }

  const workdir = dir.join("dl");
  const result = await runDownload({ meta, workdir, port: seeder.port, parallel: 4 });
  assert.equal(result.code, 0, `download after hostile connections failed:\n${result.stderr}`);
  await assertSameFile(`${workdir}/target.bin`, source);
});

Deno.test("an unreachable peer ends the download with exit 1 and one line naming the address", async () => {
  await using dir = await tempDir();
  const source = dir.join("lonely.bin");
  await randomFile(source, 40 * KiB);
  const { meta } = await createMeta(source, { pieceSize: "16K" });
  const port = closedPort();
  const workdir = dir.join("dl");
  const result = await runCli([
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
    "1",
  ], { perms: perms.download(meta, workdir) });
  assert.equal(result.code, 1, `stderr:\n${result.stderr}`);
  assert.match(assertOneErrorLine(result.stderr), new RegExp(`127\\.0\\.0\\.1:${port}\\b`));
});

Deno.test("missing metadata, invalid metadata and an unknown option exit 1, 1 and 2 with one error line", async () => {
  await using dir = await tempDir();
  const workdir = dir.join("dl");
  const missing = dir.join("missing.p2pmeta");
  const invalid = dir.join("invalid.p2pmeta");
  await Deno.writeTextFile(invalid, '{"version": 1, "info": {"name": "x", ');
  const args = (meta: string, ...more: string[]) => [
    "download",
    "--meta",
    meta,
    "--host",
    "127.0.0.1",
    "--port",
    "9",
    "--workdir",
    workdir,
    ...more,
  ];

  const noFile = await runCli(args(missing), { perms: perms.download(missing, workdir) });
  assert.equal(noFile.code, 1, noFile.stderr);
  assert.match(assertOneErrorLine(noFile.stderr), /missing\.p2pmeta/);

  const badJson = await runCli(args(invalid), { perms: perms.download(invalid, workdir) });
  assert.equal(badJson.code, 1, badJson.stderr);
  assert.match(assertOneErrorLine(badJson.stderr), /invalid\.p2pmeta/);

  const unknown = await runCli(args(invalid, "--frobnicate"), {
    perms: perms.download(invalid, workdir),
  });
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(assertOneErrorLine(unknown.stderr), /frobnicate/);
});

Deno.test("verify exits 0 on a good file and 1 listing the bad piece of a damaged one", async () => {
  await using dir = await tempDir();
  const good = dir.join("good.bin");
  await randomFile(good, 10 * PIECE + 10);
  const { meta } = await createMeta(good, { pieceSize: "16K" });

  const ok = await runCli(["verify", "--meta", meta, good, "--json"], {
    perms: perms.verify(meta, good),
  });
  assert.equal(ok.code, 0, ok.stderr);
  const okEvent = onlyEvent(parseEvents(ok.stdout), "verified");
  assert.equal(okEvent.ok, true);
  assert.equal(okEvent.piecesGood, 11);
  assert.deepEqual(okEvent.badPieces, []);

  const damaged = dir.join("damaged.bin");
  await Deno.copyFile(good, damaged);
  await damageFile(damaged, 7 * PIECE + 5, 1);
  const bad = await runCli(["verify", "--meta", meta, damaged, "--json"], {
    perms: perms.verify(meta, damaged),
  });
  assert.equal(bad.code, 1, bad.stderr);
  const badEvent = onlyEvent(parseEvents(bad.stdout), "verified");
  assert.equal(badEvent.ok, false);
  assert.equal(badEvent.piecesGood, 10);
  assert.deepEqual(badEvent.badPieces, [7]);

  // The text form lists the bad piece too.
  const text = await runCli(["verify", "--meta", meta, damaged], {
    perms: perms.verify(meta, damaged),
  });
  assert.equal(text.code, 1);
  assert.match(text.stdout + text.stderr, /FAILED.*\b7\b/);
});

Deno.test("seeding on a port already in use exits 1 with one line saying so", async () => {
  await using dir = await tempDir();
  const source = dir.join("busy.bin");
  await randomFile(source, 20 * KiB);
  const { meta } = await createMeta(source, { pieceSize: "16K" });
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const workdir = dir.join("seed");
  const result = await runCli([
    "seed",
    "--meta",
    meta,
    "--source",
    source,
    "--workdir",
    workdir,
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
  ], { perms: perms.seed(meta, source, workdir), timeoutMs: 20_000 });
  assert.equal(result.code, 1, `stderr:\n${result.stderr}`);
  const line = assertOneErrorLine(result.stderr);
  assert.match(line, /already in use/);
  assert.match(line, new RegExp(`\\b${port}\\b`));
});
