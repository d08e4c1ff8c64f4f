/**
 * ShareStorage on directory shares: positional reads and writes over a nested tree, resume from
 * the state file or by a recheck, placing files as they complete, `only` selections, and
 * refusing every symbolic link found under the work folder.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { UsageError } from "../lib/errors.ts";
import { NULL_SINK } from "../lib/events.ts";
import { ShareStorage } from "../lib/storage.ts";
import {
  assertTree,
  dirPiece,
  type DirShare,
  makeDirShare,
  treeEntries,
  writeTree,
} from "./dir_fixtures.ts";
import { exists, PIECE, recordingSink, tempDir } from "./fixtures.ts";

/** Every piece index of a share, shuffled deterministically. */
function shuffledPieces(share: DirShare): number[] {
  const n = share.layout.pieces.pieceCount;
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = (i * 7919 + 13) % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Opens, writes `indexes`, flushes and closes. */
async function writePieces(
  share: DirShare,
  workdir: string,
  indexes: Iterable<number>,
  options: { only?: string[]; placeFiles?: boolean } = {},
): Promise<void> {
  const storage = await ShareStorage.open(share.meta, workdir, { sink: NULL_SINK, ...options });
  try {
    for (const i of indexes) await storage.writeVerifiedPiece(i, dirPiece(share, i));
    await storage.flush();
  } finally {
    await storage.close();
  }
}

async function listAll(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      out.push(path);
      if (e.isDirectory) await walk(join(dir, e.name), path);
    }
  };
  if (await exists(root)) await walk(root, "");
  return out.sort();
}

Deno.test("tree storage: opening writes nothing; every piece written reads back; finalize rebuilds the tree", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  const sink = recordingSink();
  const storage = await ShareStorage.open(share.meta, dir.path, { sink });
  try {
    assert.equal(storage.isDirectory, true);
    assert.deepEqual(await listAll(dir.path), [], "open creates nothing");
    assert.equal(storage.wanted.count, share.layout.pieces.pieceCount);
    assert.equal(storage.bytesWanted, share.data.length);
    assert.equal(storage.wantedFiles.length, share.entries.length);
    for (const i of shuffledPieces(share)) {
      await storage.writeVerifiedPiece(i, dirPiece(share, i));
    }
    assert.ok(storage.have.complete);
    assert.equal(storage.wantedComplete, true);
    // Positional reads of any block, including blocks across file boundaries.
    for (let i = 0; i < share.layout.pieces.pieceCount; i++) {
      const size = share.layout.pieces.pieceSize(i);
      const block = new Uint8Array(Math.min(300, size));
      await storage.readBlock(i, size - block.length, block);
      assert.deepEqual(block, dirPiece(share, i).subarray(size - block.length), `piece ${i}`);
    }
    await storage.flush();
    const state = JSON.parse(await Deno.readTextFile(storage.paths.state));
    assert.equal(state.have, `0-${share.layout.pieces.pieceCount - 1}`);
    assert.ok(await exists(join(dir.path, "tree.partial", "small", "f00.txt")));
    assert.equal(await exists(join(dir.path, "tree")), false, "nothing placed before finalize");

    const path = await storage.finalize();
    assert.equal(path, join(dir.path, "tree"));
    assert.equal(storage.dataPath, path);
    await assertTree(share, path);
    assert.equal(await exists(storage.paths.state), false, "state file removed");
    assert.equal(await exists(storage.paths.partial), false, "partial folder removed");
    const done = sink.events.filter((e) => e.event === "file_complete");
    assert.equal(done.length, share.entries.filter((e) => !e.dir).length, "one per file");
    assert.ok(done.some((e) => e.event === "file_complete" && e.file === "docs/empty.txt"));
    assert.equal(await storage.finalize(), path, "finalize() twice is harmless");
  } finally {
    await storage.close();
  }
  assert.deepEqual((await listAll(dir.path)).filter((p) => !p.startsWith("tree/")), ["tree"]);
});

Deno.test("tree storage: a reopen re-hashes only the pieces the state file lists", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  await writePieces(share, dir.path, [0, 1, 2, 5, 7]);
  const sink = recordingSink();
  const storage = await ShareStorage.open(share.meta, dir.path, { sink });
  try {
    assert.deepEqual([...storage.have.indexes()], [0, 1, 2, 5, 7]);
    assert.deepEqual(sink.events.filter((e) => e.event === "rechecking"), []);
    assert.ok(
      sink.events.some((e) => e.event === "info" && /verifying 5 pieces recorded/.test(e.message)),
    );
  } finally {
    await storage.close();
  }
});

Deno.test("tree storage: without a state file the partial tree is rechecked and good pieces kept", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  await writePieces(share, dir.path, [1, 3, 4, 6]);
  await Deno.remove(join(dir.path, "tree.state.json"));
  const sink = recordingSink();
  const storage = await ShareStorage.open(share.meta, dir.path, { sink });
  try {
    assert.deepEqual([...storage.have.indexes()], [1, 3, 4, 6]);
    const recheck = sink.events.find((e) => e.event === "rechecking");
    assert.ok(recheck?.event === "rechecking");
    assert.equal(recheck.path, join(dir.path, "tree.partial"));
    assert.match(recheck.reason, /state file missing/);
  } finally {
    await storage.close();
  }
});

Deno.test("tree storage: a damaged or truncated partial file loses exactly its pieces", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  const all = shuffledPieces(share);
  await writePieces(share, dir.path, all);
  // Damage one byte of big.bin's second piece and cut unicode/é😀.bin short.
  const big = join(dir.path, "tree.partial", "big.bin");
  const bytes = await Deno.readFile(big);
  bytes[PIECE + 10] ^= 0xff;
  await Deno.writeFile(big, bytes);
  const emoji = share.layout.files.findIndex((f) => f.path.join("/") === "unicode/é😀.bin");
  await Deno.truncate(join(dir.path, "tree.partial", "unicode", "é😀.bin"), 100);
  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    // Good: every piece but big.bin's second, and those only using é😀.bin's first 100 bytes.
    for (let i = 0; i < share.layout.pieces.pieceCount; i++) {
      const cut = share.layout.pieceSpans(i).some((span) =>
        span.file === emoji && span.fileOffset + span.length > 100
      );
      assert.equal(storage.have.has(i), i !== 1 && !cut, `piece ${i}`);
    }
    assert.equal(
      (await Deno.lstat(join(dir.path, "tree.partial", "unicode", "é😀.bin"))).size,
      1500,
      "the partial file is brought back to its length",
    );
  } finally {
    await storage.close();
  }
});

Deno.test("tree storage: with placeFiles each file moves into place once its pieces are recorded", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  const big = share.layout.files.findIndex((f) => f.path.join("/") === "big.bin");
  const range = share.layout.piecesOfFile(big);
  assert.ok(range && range.first === 0);
  const sink = recordingSink();
  const storage = await ShareStorage.open(share.meta, dir.path, { sink, placeFiles: true });
  try {
    for (let i = range.first; i <= range.last; i++) {
      await storage.writeVerifiedPiece(i, dirPiece(share, i));
    }
    assert.equal(await exists(join(dir.path, "tree", "big.bin")), false, "not before the flush");
    await storage.flush();
    assert.deepEqual(
      await Deno.readFile(join(dir.path, "tree", "big.bin")),
      share.entries[big].bytes,
    );
    assert.equal(await exists(join(dir.path, "tree.partial", "big.bin")), false);
    // Every file lying wholly in those pieces is complete too (the last one runs past big.bin).
    const whole = share.layout.files.filter((f) => {
      const r = share.layout.piecesOfFile(f.index);
      return r !== undefined && r.last <= range.last;
    }).map((f) => f.path.join("/"));
    assert.ok(whole.length > 1 && whole[0] === "big.bin", JSON.stringify(whole));
    assert.deepEqual(
      sink.events.flatMap((e) => e.event === "file_complete" ? [e.file] : []),
      whole,
    );
    for (const file of whole) assert.ok(await exists(join(dir.path, "tree", file)), file);
  } finally {
    await storage.close();
  }
  // Resume: the placed file is found in its final place and the rest follows.
  const again = await ShareStorage.open(share.meta, dir.path, {
    sink: NULL_SINK,
    placeFiles: true,
  });
  try {
    for (let i = range.first; i <= range.last; i++) assert.ok(again.have.has(i), `piece ${i}`);
    // The last piece of big.bin also holds the start of the next file: it is written there only.
    for (const i of shuffledPieces(share)) await again.writeVerifiedPiece(i, dirPiece(share, i));
    await again.finalize();
    await assertTree(share, join(dir.path, "tree"));
    assert.deepEqual(await listAll(dir.path).then((l) => l.filter((p) => !p.startsWith("tree/"))), [
      "tree",
    ]);
  } finally {
    await again.close();
  }
});

Deno.test("tree storage: `only` wants the pieces of the chosen files and places nothing else", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  const only = ["docs", "unicode/é*.bin"];
  const chosen = share.entries.flatMap((e, i) =>
    e.path[0] === "docs" || e.path.join("/") === "unicode/é😀.bin" ? [i] : []
  );
  const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK, only });
  try {
    assert.deepEqual([...storage.wantedFiles], chosen);
    assert.deepEqual([...storage.wanted.indexes()], share.layout.piecesOfFiles(chosen));
    assert.equal(storage.bytesSelected, 700 + 1500);
    for (const i of storage.wanted.indexes()) {
      await storage.writeVerifiedPiece(i, dirPiece(share, i));
    }
    assert.equal(storage.wantedComplete, true);
    assert.equal(storage.have.complete, false);
    assert.equal(storage.piecesHaveWanted, storage.wanted.count);
    await storage.finalize();
    await assertTree(share, join(dir.path, "tree"), chosen);
    // Bytes of neighbours sharing a piece stay aside, with the state file, for a later run.
    assert.ok(await exists(storage.paths.state));
    assert.ok((await listAll(join(dir.path, "tree.partial"))).length > 0);
  } finally {
    await storage.close();
  }
  // A later run wanting everything completes the share from what is there.
  const rest = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    for (const i of shuffledPieces(share)) await rest.writeVerifiedPiece(i, dirPiece(share, i));
    await rest.finalize();
    await assertTree(share, join(dir.path, "tree"));
    assert.equal(await exists(rest.paths.state), false);
    assert.equal(await exists(rest.paths.partial), false);
  } finally {
    await rest.close();
  }
});

Deno.test("tree storage: an `only` pattern matching nothing is a usage error and touches nothing", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  const workdir = join(dir.path, "work");
  await assert.rejects(
    ShareStorage.open(share.meta, workdir, { sink: NULL_SINK, only: ["docs", "nope/*.txt"] }),
    (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, /--only "nope\/\*\.txt" matches no file of tree/);
      return true;
    },
  );
  assert.equal(await exists(workdir), false);
});

Deno.test("tree storage: a completed tree already there is verified, not rewritten", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  await writeTree(share, join(dir.path, "tree"));
  const sink = recordingSink();
  const storage = await ShareStorage.open(share.meta, dir.path, { sink });
  try {
    assert.ok(storage.have.complete);
    assert.equal(storage.dataPath, join(dir.path, "tree"));
    assert.ok(
      sink.events.some((e) => e.event === "rechecking" && /completed folder/.test(e.reason)),
    );
    await storage.finalize();
    assert.deepEqual(sink.events.filter((e) => e.event === "file_complete"), []);
  } finally {
    await storage.close();
  }
  await assertTree(share, join(dir.path, "tree"));
  assert.deepEqual((await listAll(dir.path)).filter((p) => !p.startsWith("tree/")), ["tree"]);
});

Deno.test("tree storage: an unrelated folder with the share's name is refused and left alone", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  const mine = join(dir.path, "tree");
  await Deno.mkdir(join(mine, "docs"), { recursive: true });
  await Deno.writeTextFile(join(mine, "docs", "diary.txt"), "mine");
  await assert.rejects(
    ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK }),
    /tree exists but does not match tree .*move it away/,
  );
  await Deno.writeTextFile(join(mine, "big.bin"), "not the share's big.bin");
  await assert.rejects(
    ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK }),
    /big\.bin exists but does not match tree \(23 bytes, expected 3172\)/,
  );
  assert.deepEqual(await listAll(dir.path), [
    "tree",
    "tree/big.bin",
    "tree/docs",
    "tree/docs/diary.txt",
  ]);
});

Deno.test("tree storage: a completed file changed afterwards is never written into", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  const big = share.layout.files.findIndex((f) => f.path.join("/") === "big.bin");
  const range = share.layout.piecesOfFile(big);
  assert.ok(range);
  const pieces = Array.from({ length: range.last + 1 }, (_, i) => i);
  await writePieces(share, dir.path, pieces.slice(0, -1), { placeFiles: true });
  // big.bin's last piece is shared with the next file; writing it completes big.bin.
  const storage = await ShareStorage.open(share.meta, dir.path, {
    sink: NULL_SINK,
    placeFiles: true,
  });
  try {
    await storage.writeVerifiedPiece(range.last, dirPiece(share, range.last));
    await storage.flush();
    const placed = join(dir.path, "tree", "big.bin");
    assert.ok(await exists(placed));
    // Someone edits the placed file; the piece it shares with the next file is lost meanwhile.
    const edited = await Deno.readFile(placed);
    edited[edited.length - 1] ^= 1;
    await Deno.writeFile(placed, edited);
  } finally {
    await storage.close();
  }
  const again = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
  try {
    assert.equal(again.have.has(range.last), false, "the shared piece no longer verifies");
    await assert.rejects(
      again.writeVerifiedPiece(range.last, dirPiece(share, range.last)),
      /big\.bin was changed after it was completed; move it away/,
    );
  } finally {
    await again.close();
  }
  const onDisk = await Deno.readFile(join(dir.path, "tree", "big.bin"));
  assert.notDeepEqual(onDisk, share.entries[big].bytes, "the edited file was left as it was");
});

// ---------------------------------------------------------------------------------------------
// Symbolic links planted in the work folder

/** A folder outside the work folder, with a file, that must never change. */
async function outsideFolder(parent: string): Promise<{ path: string; check(): Promise<void> }> {
  const path = join(parent, "outside");
  await Deno.mkdir(path);
  await Deno.writeTextFile(join(path, "keep.txt"), "untouched");
  return {
    path,
    async check() {
      assert.deepEqual(await listAll(path), ["keep.txt"], "nothing written outside");
      assert.equal(await Deno.readTextFile(join(path, "keep.txt")), "untouched");
    },
  };
}

Deno.test("tree storage refuses a symbolic link in place of <name>.partial, <name> or a folder in them", async () => {
  const cases: { what: string; link: string[]; pre?: boolean }[] = [
    { what: "the partial folder", link: ["tree.partial"] },
    { what: "the final folder", link: ["tree"] },
    { what: "a folder inside the partial folder", link: ["tree.partial", "docs"], pre: true },
    { what: "a folder inside the final folder", link: ["tree", "unicode"], pre: true },
    { what: "a file inside the partial folder", link: ["tree.partial", "big.bin"], pre: true },
  ];
  for (const c of cases) {
    await using dir = await tempDir();
    const share = await makeDirShare();
    const outside = await outsideFolder(dir.path);
    const work = join(dir.path, "work");
    if (c.pre) await Deno.mkdir(join(work, c.link[0]), { recursive: true });
    else await Deno.mkdir(work);
    await Deno.symlink(outside.path, join(work, ...c.link));
    await assert.rejects(
      ShareStorage.open(share.meta, work, { sink: NULL_SINK }),
      (err: unknown) => {
        assert.match(
          (err as Error).message,
          new RegExp(`refusing to use .*${c.link.at(-1)}: it is a symbolic link`),
          c.what,
        );
        return true;
      },
    );
    await outside.check();
  }
});

Deno.test("tree storage refuses a symbolic link planted after it opened, when it writes or places", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare();
  const outside = await outsideFolder(dir.path);
  const storage = await ShareStorage.open(share.meta, dir.path, {
    sink: NULL_SINK,
    placeFiles: true,
  });
  try {
    // A link where the partial folder for "small" will be created.
    await Deno.mkdir(join(dir.path, "tree.partial"));
    await Deno.symlink(outside.path, join(dir.path, "tree.partial", "small"));
    const small = share.layout.files.findIndex((f) => f.path[0] === "small");
    const piece = share.layout.piecesOfFile(small)?.first ?? -1;
    await assert.rejects(
      storage.writeVerifiedPiece(piece, dirPiece(share, piece)),
      /refusing to use .*tree\.partial\/small: it is a symbolic link/,
    );
    assert.equal(storage.have.has(piece), false);
    // A link at a file's own name is not followed either (O_NOFOLLOW).
    await Deno.mkdir(join(dir.path, "tree.partial", "unicode"));
    await Deno.symlink(
      join(outside.path, "keep.txt"),
      join(dir.path, "tree.partial", "unicode", "é😀.bin"),
    );
    const last = share.layout.pieces.pieceCount - 1;
    await assert.rejects(
      storage.writeVerifiedPiece(last, dirPiece(share, last)),
      /refusing to use .*é😀\.bin: it is a symbolic link/,
    );
    // A link where a completed file's final folder will be.
    await Deno.remove(join(dir.path, "tree.partial", "small")); // removes the link only
    await Deno.mkdir(join(dir.path, "tree"));
    await Deno.symlink(outside.path, join(dir.path, "tree", "docs"));
    const notes = share.layout.files.findIndex((f) => f.path.join("/") === "docs/notes.md");
    const range = share.layout.piecesOfFile(notes);
    assert.ok(range);
    for (let i = range.first; i <= range.last; i++) {
      await storage.writeVerifiedPiece(i, dirPiece(share, i));
    }
    await assert.rejects(storage.flush(), /refusing to use .*tree\/docs: it is a symbolic link/);
  } finally {
    await storage.close().catch(() => {});
  }
  await outside.check();
});

Deno.test("tree storage opened read-only creates and changes nothing", async () => {
  await using dir = await tempDir();
  const share = await makeDirShare(treeEntries().slice(0, 4));
  await writePieces(share, dir.path, [0, 2]);
  const before = await listAll(dir.path);
  const state = await Deno.readTextFile(join(dir.path, "tree.state.json"));
  const storage = await ShareStorage.open(share.meta, dir.path, {
    sink: NULL_SINK,
    readOnly: true,
  });
  try {
    assert.deepEqual([...storage.have.indexes()], [0, 2]);
    await assert.rejects(storage.writeVerifiedPiece(1, dirPiece(share, 1)), /read-only/);
  } finally {
    await storage.close();
  }
  assert.deepEqual(await listAll(dir.path), before);
  assert.equal(await Deno.readTextFile(join(dir.path, "tree.state.json")), state);
});
