/**
 * @module file_io
 * Positional file reads and writes (`node:fs/promises`, because `Deno.FsFile` shares one cursor
 * between concurrent requests), atomic replacement of small files, and piece hashing pipelines.
 * Does I/O.
 */

import { type FileHandle, open as openFile } from "node:fs/promises";
import { sha256 } from "./hash.ts";
import type { PieceLayout } from "./pieces.ts";

export type { FileHandle };
export { openFile };

/**
 * Reads exactly `buf.length` bytes at `position`.
 *
 * @throws {RangeError} when the file ends first
 */
export async function readFully(
  handle: FileHandle,
  buf: Uint8Array,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) {
      throw new RangeError(
        `file ends at ${position + done}, expected ${buf.length - done} more bytes`,
      );
    }
    done += bytesRead;
  }
}

/** Writes all of `buf` at `position` (a write may take fewer bytes than asked, so loop). */
export async function writeFully(
  handle: FileHandle,
  buf: Uint8Array,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await handle.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Replaces `path` with `text` so that a crash at any moment leaves either the old or the new
 * content: write a temp file beside it, sync it, rename over, sync the folder.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  // A leftover (or planted) temp file or symlink is removed, then the temp file is created
  // exclusively, so the write can never follow a link out of the work folder.
  await Deno.remove(tmp).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  const file = await Deno.open(tmp, { write: true, createNew: true });
  try {
    const bytes = new TextEncoder().encode(text);
    let done = 0;
    while (done < bytes.length) done += await file.write(bytes.subarray(done));
    await file.syncData();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
  await syncFolderOf(path);
}

/** Makes a rename durable by syncing the folder that holds `path` (a no-op where unsupported). */
export async function syncFolderOf(path: string): Promise<void> {
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  const dir = slash > 0 ? path.slice(0, slash) : ".";
  try {
    using folder = await Deno.open(dir, { read: true });
    await folder.sync();
  } catch {
    // Windows cannot open folders as files; the rename is still atomic there.
  }
}

/** One piece read from a file together with its SHA-256. */
export interface HashedPiece {
  index: number;
  data: Uint8Array;
  digest: Uint8Array;
}

/** Memory a hashing pipeline may hold in piece buffers. */
const PIPELINE_BYTES = 64 * 1024 * 1024;

/**
 * Reads and hashes the given pieces of a file, several at a time (Web Crypto hashes off the
 * JS thread, so reading the next piece overlaps hashing this one), yielding them in order.
 * Memory stays bounded by a fixed budget whatever the file size.
 *
 * @param handle the file, opened for reading
 * @param layout piece geometry
 * @param options which pieces (default all), and an abort signal
 */
export async function* hashPieces(
  handle: FileHandle,
  layout: PieceLayout,
  options: { indexes?: Iterable<number>; signal?: AbortSignal; offset?: number } = {},
): AsyncGenerator<HashedPiece> {
  const inFlight = Math.max(1, Math.min(4, Math.floor(PIPELINE_BYTES / layout.pieceLength)));
  const base = options.offset ?? 0;
  const queue: Promise<HashedPiece>[] = [];
  const indexes = (options.indexes ?? range(layout.pieceCount))[Symbol.iterator]();
  const start = (index: number): Promise<HashedPiece> => {
    const span = layout.span(index);
    const data = new Uint8Array(span.length);
    return readFully(handle, data, base + span.offset).then(async () => ({
      index,
      data,
      digest: await sha256(data),
    }));
  };
  try {
    for (;;) {
      while (queue.length < inFlight) {
        const next = indexes.next();
        if (next.done) break;
        queue.push(start(next.value));
      }
      const head = queue.shift();
      if (!head) return;
      options.signal?.throwIfAborted();
      yield await head;
    }
  } finally {
    // Settle reads still in flight so no file operation outlives the caller.
    await Promise.allSettled(queue);
  }
}

function* range(n: number): IterableIterator<number> {
  for (let i = 0; i < n; i++) yield i;
}
