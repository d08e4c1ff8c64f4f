/**
 * End-to-end transfers: the real CLI (create, seed, download) under narrow permission flags,
 * over 127.0.0.1 with port 0, in temp folders, comparing bytes.
 */

import assert from "node:assert/strict";
import {
  assertSameFile,
  closedPort,
  createMeta,
  type JsonEvent,
  listDir,
  onlyEvent,
  randomFile,
  runDownload,
  startSeeder,
  tempDir,
} from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Checks a finished download: exit 0, the `complete` event's fields, and the folder's contents. */
async function assertDownloaded(
  result: { code: number; stderr: string; events: JsonEvent[] },
  expected: {
    workdir: string;
    name: string;
    source: string;
    bytes: number;
    pieces: number;
    piecesFetched: number;
  },
): Promise<void> {
  assert.equal(result.code, 0, `download failed: ${result.stderr}`);
  const complete = onlyEvent(result.events, "complete");
  assert.equal(complete.path, `${expected.workdir}/${expected.name}`);
  assert.equal(complete.bytes, expected.bytes);
  assert.equal(complete.piecesTotal, expected.pieces);
  assert.equal(complete.piecesFetched, expected.piecesFetched);
  assert.equal(typeof complete.seconds, "number");
  assert.ok(
    Number.isFinite(complete.seconds) && (complete.seconds as number) >= 0,
    `seconds = ${complete.seconds}`,
  );
  // The partial was renamed and the state file removed: only the finished file is left.
  assert.deepEqual(await listDir(expected.workdir), [expected.name]);
  await assertSameFile(`${expected.workdir}/${expected.name}`, expected.source);
}

const CASES = [
  { what: "an empty file", bytes: 0, pieceSize: "16K", pieces: 0, parallel: [4] },
  { what: "a 1-byte file", bytes: 1, pieceSize: "16K", pieces: 1, parallel: [4] },
  {
    what: "an exact multiple of the piece size",
    bytes: 32 * 16 * KiB,
    pieceSize: "16K",
    pieces: 32,
    parallel: [1, 8],
  },
  {
    what: "a size that is not a multiple of the piece size",
    bytes: 32 * 16 * KiB + 777,
    pieceSize: "16K",
    pieces: 33,
    parallel: [1, 8],
  },
  {
    // 1 KiB pieces: far more pieces than requests a seeder queues, so the downloader must cap
    // its requests in flight by count, not only by bytes.
    what: "many tiny pieces",
    bytes: 600 * KiB + 5,
    pieceSize: "1K",
    pieces: 601,
    parallel: [1, 4],
  },
  {
    what: "50 MiB of random data",
    bytes: 50 * MiB,
    pieceSize: "256K",
    pieces: 200,
    parallel: [1, 8],
  },
];

for (const c of CASES) {
  Deno.test(`download of ${c.what} arrives byte for byte (--parallel ${c.parallel.join(", ")})`, async () => {
    await using dir = await tempDir();
    const source = dir.join("source.bin");
    await randomFile(source, c.bytes);
    const { meta, created } = await createMeta(source, { pieceSize: c.pieceSize });
    assert.equal(created.pieces, c.pieces);
    assert.equal(created.bytes, c.bytes);

    await using seeder = await startSeeder({ meta, source, workdir: dir.join("seed") });
    const ingested = onlyEvent(seeder.events, "ingested");
    assert.equal(ingested.pieces, c.pieces);
    assert.equal(ingested.piecesTotal, c.pieces);

    for (const parallel of c.parallel) {
      const workdir = dir.join(`dl-${parallel}`);
      const result = await runDownload({ meta, workdir, port: seeder.port, parallel });
      await assertDownloaded(result, {
        workdir,
        name: "source.bin",
        source,
        bytes: c.bytes,
        pieces: c.pieces,
        piecesFetched: c.pieces,
      });
      if (c.pieces > 0) {
        const started = onlyEvent(result.events, "started");
        assert.equal(started.piecesNeeded, c.pieces);
        assert.equal(started.connections, parallel);
      }
    }
    const stopped = await seeder.stop();
    assert.equal(stopped.code, 0, `seeder exit on SIGTERM: ${stopped.stderr}`);
  });
}

Deno.test("download of an already complete file verifies it and fetches nothing, with no seeder", async () => {
  await using dir = await tempDir();
  const source = dir.join("done.bin");
  await randomFile(source, 100 * KiB + 5);
  const { meta } = await createMeta(source, { pieceSize: "16K" });
  const workdir = dir.join("dl");
  {
    await using seeder = await startSeeder({ meta, source, workdir: dir.join("seed") });
    const first = await runDownload({ meta, workdir, port: seeder.port });
    await assertDownloaded(first, {
      workdir,
      name: "done.bin",
      source,
      bytes: 100 * KiB + 5,
      pieces: 7,
      piecesFetched: 7,
    });
  }

  // Nothing listens on this port: any connection attempt would fail the run.
  const again = await runDownload({ meta, workdir, port: closedPort() });
  await assertDownloaded(again, {
    workdir,
    name: "done.bin",
    source,
    bytes: 100 * KiB + 5,
    pieces: 7,
    piecesFetched: 0,
  });
  assert.ok(
    again.events.some((e) => e.event === "rechecking"),
    `the complete file was not re-verified: ${JSON.stringify(again.events)}`,
  );
  assert.ok(!again.events.some((e) => e.event === "peer_connected"));
});

Deno.test("a seeder restarted with only --meta and --workdir serves a full download after the source is deleted", async () => {
  await using dir = await tempDir();
  const source = dir.join("orig.bin");
  const reference = dir.join("reference.bin");
  await randomFile(source, 300 * KiB + 123);
  await Deno.copyFile(source, reference);
  const { meta } = await createMeta(source, { pieceSize: "16K" });
  const seedDir = dir.join("seed");
  {
    await using seeder = await startSeeder({ meta, source, workdir: seedDir });
    assert.equal(onlyEvent(seeder.events, "ingested").pieces, 19);
  }
  await Deno.remove(source);

  // No --source and no read permission on where the source was: it can only use seedDir.
  await using seeder = await startSeeder({ meta, workdir: seedDir });
  const ingested = onlyEvent(seeder.events, "ingested");
  assert.equal(ingested.pieces, 19);
  assert.equal(ingested.piecesTotal, 19);
  assert.equal(onlyEvent(seeder.events, "serving").pieces, 19);

  const workdir = dir.join("dl");
  const result = await runDownload({ meta, workdir, port: seeder.port, parallel: 4 });
  await assertDownloaded(result, {
    workdir,
    name: "orig.bin",
    source: reference,
    bytes: 300 * KiB + 123,
    pieces: 19,
    piecesFetched: 19,
  });
});
