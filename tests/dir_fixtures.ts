/**
 * Fixtures for directory shares: a nested tree (empty files, empty folders, unicode names, a
 * file larger than a piece, many files smaller than a piece) built in memory with 1 KiB pieces,
 * written to disk on demand, and compared with a tree on disk. Does I/O (only the helpers that
 * say so).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { sha256 } from "../lib/hash.ts";
import { buildMetadata, type FileEntry, type Metadata, sortEntries } from "../lib/metadata.ts";
import { FileLayout } from "../lib/pieces.ts";
import { toHex } from "../lib/units.ts";
import { fixtureBytes, PIECE } from "./fixtures.ts";

/** A directory share: its metadata, its bytes end to end, and each entry's bytes. */
export interface DirShare {
  meta: Metadata;
  data: Uint8Array;
  layout: FileLayout;
  /** Each entry in metadata order, with its bytes (empty for folders). */
  entries: (FileEntry & { bytes: Uint8Array })[];
}

/** The entries of the standard test tree, unsorted. */
export function treeEntries(): FileEntry[] {
  return [
    { path: ["big.bin"], length: 3 * PIECE + 100 },
    { path: ["docs", "notes.md"], length: 700 },
    { path: ["docs", "empty.txt"], length: 0 },
    { path: ["empty-folder"], length: 0, dir: true },
    { path: ["nested", "deeper", "still-empty"], length: 0, dir: true },
    ...Array.from({ length: 80 }, (_, i) => ({
      path: ["small", `f${String(i).padStart(2, "0")}.txt`],
      length: 37 + (i % 5),
    })),
    { path: ["unicode", "日本語 ファイル.txt"], length: 333 },
    { path: ["unicode", "é😀.bin"], length: 1500 },
  ];
}

/** Builds a directory share named `name` from `entries` (sorted here), with 1 KiB pieces. */
export async function makeDirShare(
  entries: FileEntry[] = treeEntries(),
  options: { name?: string; seed?: number } = {},
): Promise<DirShare> {
  const sorted = sortEntries(entries.map((e) => ({ ...e })));
  const withBytes = sorted.map((e, i) => ({
    ...e,
    bytes: fixtureBytes(e.length, (options.seed ?? 7) + i),
  }));
  const length = sorted.reduce((n, e) => n + e.length, 0);
  const data = new Uint8Array(length);
  let at = 0;
  for (const e of withBytes) {
    data.set(e.bytes, at);
    at += e.length;
  }
  const pieces: string[] = [];
  for (let offset = 0; offset < length; offset += PIECE) {
    pieces.push(toHex(await sha256(data.subarray(offset, offset + PIECE))));
  }
  const meta = await buildMetadata({
    name: options.name ?? "tree",
    length,
    pieceLength: PIECE,
    pieces,
    files: sorted,
  });
  return { meta, data, layout: new FileLayout(sorted, PIECE), entries: withBytes };
}

/** The bytes of piece `index`. */
export function dirPiece(share: DirShare, index: number): Uint8Array {
  return share.data.slice(index * PIECE, Math.min((index + 1) * PIECE, share.data.length));
}

/** Writes the share's tree under `root` (files, empty files, empty folders). Does I/O. */
export async function writeTree(share: DirShare, root: string): Promise<void> {
  await Deno.mkdir(root, { recursive: true });
  for (const e of share.entries) {
    const path = join(root, ...e.path);
    if (e.dir) {
      await Deno.mkdir(path, { recursive: true });
      continue;
    }
    await Deno.mkdir(join(path, ".."), { recursive: true });
    await Deno.writeFile(path, e.bytes);
  }
}

/**
 * Asserts that `root` holds exactly the share's entries (or those at `only` indexes): files with
 * their bytes, empty folders, and nothing else. Does I/O.
 */
export async function assertTree(share: DirShare, root: string, only?: number[]): Promise<void> {
  const expected = new Map<string, FileEntry & { bytes: Uint8Array }>();
  share.entries.forEach((e, i) => {
    if (!only || only.includes(i)) expected.set(e.path.join("/"), e);
  });
  const found = new Map<string, "file" | "folder">();
  const walk = async (dir: string, rel: string[]) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = [...rel, entry.name];
      assert.ok(!entry.isSymlink, `symbolic link ${path.join("/")} in the tree`);
      if (entry.isDirectory) {
        const before = found.size;
        await walk(join(dir, entry.name), path);
        if (found.size === before) found.set(path.join("/"), "folder");
      } else {
        found.set(path.join("/"), "file");
      }
    }
  };
  await walk(root, []);
  for (const [path, kind] of found) {
    const e = expected.get(path);
    assert.ok(e, `unexpected ${kind} ${path} in ${root}`);
    assert.equal(kind, e.dir ? "folder" : "file", path);
    if (!e.dir) assert.deepEqual(await Deno.readFile(join(root, path)), e.bytes, path);
  }
  for (const [path, e] of expected) {
    // Folders that hold something are only implied; files and empty folders must be there.
    assert.ok(
      found.has(path) || (e.dir && [...found.keys()].some((f) => f.startsWith(`${path}/`))),
      `missing ${path} in ${root}`,
    );
  }
}
