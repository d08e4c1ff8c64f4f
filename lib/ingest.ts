/**
 * @module ingest
 * Copies the verified pieces of a source file (or, for a directory share, a source folder) into
 * a share's work folder, so the seeder only ever serves bytes it has checked (and can go on
 * after the original is deleted). Does I/O.
 */

import { join } from "node:path";
import { digestsEqual } from "./hash.ts";
import { hashPieces, openFile, type ReadAt, readFully } from "./file_io.ts";
import type { ShareStorage } from "./storage.ts";
import { TreeReader } from "./tree_io.ts";

/** Result of an ingest. */
export interface IngestReport {
  /** Pieces held after the ingest. */
  verified: number;
  /** Pieces of the source that failed verification (or could not be read). */
  badPieces: number[];
  /** Directory share: files of the source that are missing or of the wrong size. */
  badFiles: string[];
}

/**
 * Verifies every piece of `sourcePath` that the storage lacks and stores the good ones. For a
 * directory share `sourcePath` is the folder holding the share's files (what `create` was given).
 *
 * @throws {Error} when the source is missing, or is a file where a folder is expected (or the
 *   reverse)
 */
export async function ingestSource(
  storage: ShareStorage,
  sourcePath: string,
  signal?: AbortSignal,
): Promise<IngestReport> {
  const info = await Deno.stat(sourcePath);
  const { name } = storage.meta.info;
  if (storage.isDirectory && !info.isDirectory) {
    throw new Error(`${sourcePath} is not a folder, but ${name} is a shared folder`);
  }
  if (!storage.isDirectory && !info.isFile) {
    throw new Error(`${sourcePath} is not a regular file, but ${name} is a single file`);
  }
  const badPieces: number[] = [];
  const badFiles: string[] = [];
  let read: ReadAt;
  let readable: (index: number) => boolean;
  let close: () => Promise<void>;
  if (storage.isDirectory) {
    const layout = storage.files;
    const reader = await TreeReader.open(
      layout,
      layout.files.map((f) => join(sourcePath, ...f.path)),
    );
    for (const file of layout.files) {
      if (!file.dir && !reader.entryMatches(file.index)) badFiles.push(file.path.join("/"));
    }
    read = reader.read;
    readable = (i) => reader.pieceReadable(i);
    close = () => reader.close();
  } else {
    const handle = await openFile(sourcePath, "r");
    const size = info.size;
    read = (buf, position) => readFully(handle, buf, position);
    readable = (i) => {
      const span = storage.layout.span(i);
      return span.offset + span.length <= size;
    };
    close = () => handle.close();
  }
  try {
    const missing: number[] = [];
    for (let i = 0; i < storage.layout.pieceCount; i++) {
      if (storage.have.has(i)) continue;
      if (readable(i)) missing.push(i);
      else badPieces.push(i);
    }
    for await (const piece of hashPieces(read, storage.layout, { indexes: missing, signal })) {
      if (digestsEqual(piece.digest, storage.expectedDigest(piece.index))) {
        await storage.writeVerifiedPiece(piece.index, piece.data);
      } else {
        badPieces.push(piece.index);
      }
    }
  } finally {
    await close();
  }
  storage.markDirty();
  await storage.flush();
  return { verified: storage.have.count, badPieces: badPieces.sort((a, b) => a - b), badFiles };
}
