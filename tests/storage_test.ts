import assert from "node:assert/strict";
import { join } from "node:path";
import { NULL_SINK } from "../lib/events.ts";
import { ShareStorage, type StateFile } from "../lib/storage.ts";
import {
  exists,
  makeShare,
  PIECE,
  pieceOf,
  recordingSink,
  type Share,
  tempDir,
} from "./fixtures.ts";

/** Opens, writes the given pieces, flushes and closes: leaves a partial and a state file. */
async function writePartial(share: Share, dir: string, indexes: number[]): Promise<void> {
  const storage = await ShareStorage.open(share.meta, dir, { sink: NULL_SINK });
  try {
    for (const i of indexes) await storage.writeVerifiedPiece(i, pieceOf(share, i));
    await storage.flush();
  } finally {
    await storage.close();
  }
}

async function readState(storage: ShareStorage): Promise<StateFile> {
  return JSON.parse(await Deno.readTextFile(storage.paths.state)) as StateFile;
}

Deno.test("ShareStorage.open() on an empty folder creates <name>.partial of the full length", async () => {
  await using dir = await tempDir();
  const share = await makeShare(5 * PIECE + 100);
  const sink = recordingSink();
  const storage = await ShareStorage.open(share.meta, dir.path, { sink });
  try {
    assert.equal(storage.dataPath, join(dir.path, "data.bin.partial"));
    assert.equal(storage.paths.partial, join(dir.path, "data.bin.partial"));
    assert.equal(storage.paths.state, join(dir.path, "data.bin.state.json"));
    assert.equal(storage.paths.final, join(dir.path, "data.bin"));
    const info = await Deno.lstat(storage.paths.partial);
    assert.ok(info.isFile);
    assert.equal(info.size, 5 * PIECE + 100);
    assert.equal(storage.have.count, 0);
    assert.equal(storage.have.size, 6);
    assert.equal(storage.bytesHave, 0);
    assert.equal(await exists(storage.paths.final), false);
    assert.deepEqual(sink.events, [], "a fresh share has nothing to recheck");
  } finally {
    await storage.close();
  }
});

Deno.test("ShareStorage.open() creates a missing work folder", async () => {
  await using dir = await tempDir();
  const share = await makeShare(2 * PIECE);
  const workdir = join(dir.path, "nested", "work");
  const storage = await ShareStorage.open(share.meta, workdir, { sink: NULL_SINK });
  try {
    assert.equal((await Deno.lstat(join(workdir, "data.bin.partial"))).size, 2 * PIECE);
  } finally {
    await storage.close();
  }
});

Deno.test("writeVerifiedPiece() + flush() write the state file listing the held pieces as ranges", async () => {
  await using dir = await tempDir();
  const share = await makeShare(8 * PIECE - 10);
  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    for (const i of [0, 1, 2, 5, 7]) await storage.writeVerifiedPiece(i, pieceOf(share, i));
    assert.equal(storage.bytesHave, 4 * PIECE + (PIECE - 10));
    await storage.flush();
    const state = await readState(storage);
    assert.equal(state.have, "0-2,5,7");
    assert.equal(state.version, 1);
    assert.equal(state.infoHash, share.meta.infoHash);
    assert.equal(state.name, "data.bin");
    assert.equal(state.length, 8 * PIECE - 10);
    assert.equal(state.pieceLength, PIECE);
    assert.equal(state.piecesTotal, 8);
    assert.ok(!Number.isNaN(Date.parse(state.updated)), `updated: ${state.updated}`);
    // The bytes went to their place in the partial.
    const onDisk = await Deno.readFile(storage.paths.partial);
    assert.deepEqual(onDisk.subarray(5 * PIECE, 6 * PIECE), pieceOf(share, 5));
    assert.equal(await exists(`${storage.paths.state}.tmp`), false, "no temp file left behind");

    await storage.writeVerifiedPiece(3, pieceOf(share, 3));
    await storage.flush();
    assert.equal((await readState(storage)).have, "0-3,5,7");
  } finally {
    await storage.close();
  }
});

Deno.test("ShareStorage.open() re-hashes only the pieces the state file lists and keeps the good ones", async () => {
  await using dir = await tempDir();
  const share = await makeShare(10 * PIECE);
  await writePartial(share, dir.path, [0, 1, 2, 5]);
  // Piece 8 is correct on disk but not listed: a listed-pieces recheck must not find it.
  const partialPath = join(dir.path, "data.bin.partial");
  {
    using file = await Deno.open(partialPath, { write: true });
    await file.seek(8 * PIECE, Deno.SeekMode.Start);
    const bytes = pieceOf(share, 8);
    let done = 0;
    while (done < bytes.length) done += await file.write(bytes.subarray(done));
  }
  const sink = recordingSink();
  const storage = await ShareStorage.open(share.meta, dir.path, { sink });
  try {
    assert.deepEqual([...storage.have.indexes()], [0, 1, 2, 5]);
    assert.equal(storage.dataPath, partialPath);
    assert.deepEqual(
      sink.events.filter((e) => e.event === "rechecking"),
      [],
      "a readable state file means no full recheck",
    );
  } finally {
    await storage.close();
  }
});

Deno.test("ShareStorage.open() drops a listed piece whose bytes were damaged on disk", async () => {
  await using dir = await tempDir();
  const share = await makeShare(6 * PIECE);
  await writePartial(share, dir.path, [0, 1, 2, 3]);
  const partialPath = join(dir.path, "data.bin.partial");
  const bytes = await Deno.readFile(partialPath);
  bytes[2 * PIECE + 17] ^= 0xff;
  await Deno.writeFile(partialPath, bytes);

  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    assert.deepEqual([...storage.have.indexes()], [0, 1, 3]);
  } finally {
    await storage.close();
  }
});

Deno.test("ShareStorage.open() drops listed pieces past the end of a truncated partial and restores its length", async () => {
  await using dir = await tempDir();
  const share = await makeShare(6 * PIECE);
  await writePartial(share, dir.path, [0, 1, 4, 5]);
  const partialPath = join(dir.path, "data.bin.partial");
  await Deno.truncate(partialPath, 3 * PIECE);

  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    assert.deepEqual([...storage.have.indexes()], [0, 1]);
    assert.equal((await Deno.lstat(partialPath)).size, 6 * PIECE);
  } finally {
    await storage.close();
  }
});

Deno.test("ShareStorage.open() without a state file emits `rechecking` and finds the good pieces", async () => {
  await using dir = await tempDir();
  const share = await makeShare(7 * PIECE + 3);
  await writePartial(share, dir.path, [1, 3, 7]);
  await Deno.remove(join(dir.path, "data.bin.state.json"));

  const sink = recordingSink();
  const storage = await ShareStorage.open(share.meta, dir.path, { sink });
  try {
    assert.deepEqual([...storage.have.indexes()], [1, 3, 7]);
    assert.equal(sink.events.length, 1);
    const [event] = sink.events;
    assert.equal(event.event, "rechecking");
    assert.ok(event.event === "rechecking");
    assert.equal(event.path, join(dir.path, "data.bin.partial"));
    assert.match(event.reason, /state file missing/);
  } finally {
    await storage.close();
  }
});

Deno.test("ShareStorage.open() rechecks the whole partial, without throwing, when the state file is unusable", async () => {
  const share = await makeShare(5 * PIECE);
  const other = await makeShare(5 * PIECE, { seed: 2 });
  const goodState = (infoHash: string, have: string): string =>
    JSON.stringify({
      version: 1,
      infoHash,
      name: "data.bin",
      length: 5 * PIECE,
      pieceLength: PIECE,
      piecesTotal: 5,
      have,
      updated: new Date().toISOString(),
    });
  const cases: { what: string; text: string; reason: RegExp }[] = [
    { what: "garbage", text: "{not json at all", reason: /damaged/ },
    { what: "empty file", text: "", reason: /damaged/ },
    { what: "JSON null", text: "null", reason: /damaged/ },
    { what: "another share", text: goodState(other.meta.infoHash, "0-4"), reason: /another share/ },
    {
      what: "another version",
      text: goodState(share.meta.infoHash, "0-4").replace('"version":1', '"version":99'),
      reason: /another share or version/,
    },
    {
      what: "ranges out of bounds",
      text: goodState(share.meta.infoHash, "0-999"),
      reason: /damaged/,
    },
    {
      what: "malformed ranges",
      text: goodState(share.meta.infoHash, "zero-four"),
      reason: /damaged/,
    },
  ];
  for (const c of cases) {
    await using dir = await tempDir();
    await writePartial(share, dir.path, [0, 2, 4]);
    await Deno.writeTextFile(join(dir.path, "data.bin.state.json"), c.text);
    const sink = recordingSink();
    const storage = await ShareStorage.open(share.meta, dir.path, { sink });
    try {
      assert.deepEqual([...storage.have.indexes()], [0, 2, 4], c.what);
      assert.equal(sink.events.length, 1, c.what);
      const [event] = sink.events;
      assert.ok(event.event === "rechecking", c.what);
      assert.match(event.reason, c.reason, c.what);
    } finally {
      await storage.close();
    }
  }
});

Deno.test("ShareStorage.open() keeps only the pieces that verify when the state file claims more", async () => {
  await using dir = await tempDir();
  const share = await makeShare(4 * PIECE);
  await writePartial(share, dir.path, [0]);
  // The right share, but it claims pieces never written: only verified pieces count.
  const state = JSON.parse(await Deno.readTextFile(join(dir.path, "data.bin.state.json")));
  state.have = "0-3";
  await Deno.writeTextFile(join(dir.path, "data.bin.state.json"), JSON.stringify(state));
  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    assert.deepEqual([...storage.have.indexes()], [0]);
  } finally {
    await storage.close();
  }
});

Deno.test("finalize() renames the partial to <name> and removes the state file", async () => {
  await using dir = await tempDir();
  const share = await makeShare(4 * PIECE + 512);
  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    for (const i of [4, 0, 2, 1]) await storage.writeVerifiedPiece(i, pieceOf(share, i));
    await storage.flush();
    assert.ok(await exists(storage.paths.state));
    await assert.rejects(() => storage.finalize(), /incomplete/);
    await storage.writeVerifiedPiece(3, pieceOf(share, 3));
    const path = await storage.finalize();
    assert.equal(path, join(dir.path, "data.bin"));
    assert.equal(storage.dataPath, path);
    assert.deepEqual(await Deno.readFile(path), share.data);
    assert.equal(await exists(storage.paths.partial), false);
    assert.equal(await exists(storage.paths.state), false);
    assert.equal(await storage.finalize(), path, "finalize() twice is harmless");
  } finally {
    await storage.close();
  }
  assert.equal(
    await exists(join(dir.path, "data.bin.state.json")),
    false,
    "close() after finalize",
  );
});

Deno.test("ShareStorage.open() verifies a completed <name> that is already there", async () => {
  await using dir = await tempDir();
  const share = await makeShare(3 * PIECE + 1);
  await Deno.writeFile(join(dir.path, "data.bin"), share.data);
  const sink = recordingSink();
  const storage = await ShareStorage.open(share.meta, dir.path, { sink });
  try {
    assert.ok(storage.have.complete);
    assert.equal(storage.dataPath, join(dir.path, "data.bin"));
    assert.equal(await exists(storage.paths.partial), false, "no partial is created");
    assert.deepEqual(sink.events.map((e) => e.event), ["rechecking"]);
    assert.equal(await storage.finalize(), join(dir.path, "data.bin"));
    const block = new Uint8Array(10);
    await storage.readBlock(3, 0, block.subarray(0, 1));
    assert.equal(block[0], share.data[3 * PIECE]);
  } finally {
    await storage.close();
  }
  assert.deepEqual(await Deno.readFile(join(dir.path, "data.bin")), share.data);
});

Deno.test("ShareStorage.open() finds the damaged pieces of a completed <name>", async () => {
  await using dir = await tempDir();
  const share = await makeShare(4 * PIECE);
  const damaged = share.data.slice();
  damaged[PIECE * 2 + 5] ^= 1;
  await Deno.writeFile(join(dir.path, "data.bin"), damaged);
  const storage = await ShareStorage.open(share.meta, dir.path, {
    sink: NULL_SINK,
    readOnly: true,
  });
  try {
    assert.deepEqual([...storage.have.indexes()], [0, 1, 3]);
    assert.equal(storage.have.complete, false);
  } finally {
    await storage.close();
  }
});

Deno.test({
  name: "ShareStorage.open() does not modify an unrelated file that has the share's name",
}, async () => {
  await using dir = await tempDir();
  const share = await makeShare(2 * PIECE);
  const finalPath = join(dir.path, "data.bin");
  const unrelated = new TextEncoder().encode("my precious unrelated notes ".repeat(200));
  await Deno.writeFile(finalPath, unrelated);
  try {
    const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
    try {
      assert.equal(storage.have.count, 0);
    } finally {
      await storage.close();
    }
  } catch {
    // Refusing the file is an acceptable answer too.
  }
  assert.deepEqual(await Deno.readFile(finalPath), unrelated);
});

Deno.test("ShareStorage.open() refuses a symlink planted at <name>.partial and writes nothing through it", async () => {
  await using dir = await tempDir();
  await using outside = await tempDir();
  const share = await makeShare(2 * PIECE);
  const victim = join(outside.path, "victim.txt");
  await Deno.writeTextFile(victim, "precious");
  const dangling = join(outside.path, "not-yet-there");
  for (const target of [victim, dangling]) {
    const partial = join(dir.path, "data.bin.partial");
    await Deno.symlink(target, partial);
    await assert.rejects(
      () => ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK }),
      /symbolic link/,
    );
    assert.equal(await Deno.readTextFile(victim), "precious");
    assert.equal(await exists(dangling), false, "the link's target is not created");
    assert.equal(await exists(join(dir.path, "data.bin.state.json")), false);
    assert.ok((await Deno.lstat(partial)).isSymlink);
    await Deno.remove(partial);
  }
});

Deno.test({
  name: "flush() writes nothing through a symlink planted at <name>.state.json.tmp",
}, async () => {
  await using dir = await tempDir();
  await using outside = await tempDir();
  const share = await makeShare(2 * PIECE);
  const victim = join(outside.path, "victim.txt");
  await Deno.writeTextFile(victim, "precious");
  await Deno.symlink(victim, join(dir.path, "data.bin.state.json.tmp"));
  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    await storage.writeVerifiedPiece(0, pieceOf(share, 0));
    await storage.flush().catch(() => {}); // refusing is fine; writing through the link is not
  } finally {
    await storage.close().catch(() => {});
  }
  assert.equal(await Deno.readTextFile(victim), "precious");
});

Deno.test("ShareStorage.open() refuses a folder at <name>.partial", async () => {
  await using dir = await tempDir();
  const share = await makeShare(PIECE);
  await Deno.mkdir(join(dir.path, "data.bin.partial"));
  await assert.rejects(
    () => ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK }),
    /not a regular file/,
  );
});

Deno.test("writeVerifiedPiece() never overwrites a piece already held", async () => {
  await using dir = await tempDir();
  const share = await makeShare(3 * PIECE);
  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    await storage.writeVerifiedPiece(1, pieceOf(share, 1));
    await storage.writeVerifiedPiece(1, new Uint8Array(PIECE)); // zeros: must be ignored
    const onDisk = await Deno.readFile(storage.paths.partial);
    assert.deepEqual(onDisk.subarray(PIECE, 2 * PIECE), pieceOf(share, 1));
    const block = new Uint8Array(PIECE);
    await storage.readBlock(1, 0, block);
    assert.deepEqual(block, pieceOf(share, 1));
    assert.equal(storage.have.count, 1);
  } finally {
    await storage.close();
  }
});

Deno.test("ShareStorage.open() on an empty share (length 0) is complete at once", async () => {
  await using dir = await tempDir();
  const share = await makeShare(0, { name: "empty.txt" });
  assert.equal(share.meta.info.pieces.length, 0);
  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    assert.ok(storage.have.complete);
    assert.equal(storage.have.size, 0);
    assert.equal(storage.bytesHave, 0);
    const path = await storage.finalize();
    assert.equal(path, join(dir.path, "empty.txt"));
    assert.equal((await Deno.lstat(path)).size, 0);
    assert.equal(await exists(join(dir.path, "empty.txt.partial")), false);
  } finally {
    await storage.close();
  }
});
