/**
 * @module file_io
 * Positional file reads and writes (`node:fs/promises`, because `Deno.FsFile` shares one cursor
 * between concurrent requests), atomic replacement of small files, piece hashing pipelines, and
 * a bounded pool of open files for shares made of many files. Does I/O.
 */

import { type FileHandle, open as openFile } from "node:fs/promises";
import { createHash, type Hash } from "node:crypto";
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

/** Reads exactly `buf.length` bytes of a share at byte `position` (of one file or many). */
export type ReadAt = (buf: Uint8Array, position: number) => Promise<void>;

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
 * Memory stays bounded by a fixed budget whatever the file size. A piece's `data` is valid
 * until the next piece is asked for: its buffer is then reused.
 *
 * @param source the file, opened for reading, or a reader over the files of a share
 * @param layout piece geometry
 * @param options which pieces (default all), and an abort signal
 */
export async function* hashPieces(
  source: FileHandle | ReadAt,
  layout: PieceLayout,
  options: { indexes?: Iterable<number>; signal?: AbortSignal; offset?: number } = {},
): AsyncGenerator<HashedPiece> {
  const inFlight = Math.max(1, Math.min(4, Math.floor(PIPELINE_BYTES / layout.pieceLength)));
  const base = options.offset ?? 0;
  const queue: Promise<HashedPiece>[] = [];
  const indexes = (options.indexes ?? range(layout.pieceCount))[Symbol.iterator]();
  const read: ReadAt = typeof source === "function"
    ? source
    : (buf, position) => readFully(source, buf, position);
  // Piece buffers are reused once the caller has moved on (at most inFlight + 1 exist): each
  // fresh 1 MiB buffer lives outside the V8 heap until a GC that V8 only starts after about
  // 64 MB more of them, which took a seeder's ingest of 1 GiB to 141 MB RSS.
  const free: Uint8Array[] = [];
  const start = (index: number): Promise<HashedPiece> => {
    const span = layout.span(index);
    const reused = free.findIndex((b) => b.length === span.length);
    const data = reused < 0 ? new Uint8Array(span.length) : free.splice(reused, 1)[0];
    return read(data, base + span.offset).then(async () => ({
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
      const piece = await head;
      yield piece;
      free.push(piece.data); // the caller asked for the next piece: done with this one
    }
  } finally {
    // Settle reads still in flight so no file operation outlives the caller.
    await Promise.allSettled(queue);
  }
}

/** Bytes per read of {@linkcode hashAllPieces}, and how many such reads are in flight. */
const SEQUENTIAL_CHUNK = 4 * 1024 * 1024;
const SEQUENTIAL_READS = 3;

/**
 * SHA-256 of every piece of a share, in order, for `create`: reads 4 MiB chunks at their
 * positions into 3 reused buffers (12 MiB whatever the file or piece size) and hashes them with
 * `node:crypto` on the JS thread while the next reads run on the I/O threads. Measured on 1 GiB
 * (2 cores): about 0.6 s against 0.85 s for {@linkcode hashPieces}, whose Web Crypto digests
 * copy each piece and run slower per byte; blocking the JS thread is harmless here because
 * nothing else runs while a share is created. A piece longer than a chunk is hashed
 * incrementally across chunks.
 *
 * @param source the file, opened for reading, or a reader over the files of a share
 * @param layout piece geometry
 * @returns one digest per piece
 */
export async function hashAllPieces(
  source: FileHandle | ReadAt,
  layout: PieceLayout,
  options: { signal?: AbortSignal } = {},
): Promise<Uint8Array[]> {
  const read: ReadAt = typeof source === "function"
    ? source
    : (buf, position) => readFully(source, buf, position);
  const total = layout.totalLength;
  const buffers = Array.from(
    { length: SEQUENTIAL_READS },
    () => new Uint8Array(Math.min(SEQUENTIAL_CHUNK, Math.max(1, total))),
  );
  const reads: Promise<Uint8Array>[] = [];
  let readPos = 0;
  let issued = 0;
  const issue = () => {
    const buf = buffers[issued++ % SEQUENTIAL_READS];
    const view = buf.subarray(0, Math.min(buf.length, total - readPos));
    reads.push(read(view, readPos).then(() => view));
    readPos += view.length;
  };
  const digests: Uint8Array[] = [];
  let hash: Hash | undefined;
  let pieceLeft = 0; // bytes of the current piece still to hash
  try {
    while (readPos < total && reads.length < SEQUENTIAL_READS) issue();
    while (reads.length > 0) {
      const chunk = await reads.shift()!;
      options.signal?.throwIfAborted();
      let at = 0;
      while (at < chunk.length) {
        if (!hash) {
          hash = createHash("sha256");
          pieceLeft = layout.span(digests.length).length;
        }
        const take = Math.min(pieceLeft, chunk.length - at);
        hash.update(chunk.subarray(at, at + take));
        at += take;
        pieceLeft -= take;
        if (pieceLeft === 0) {
          digests.push(hash.digest());
          hash = undefined;
        }
      }
      // The buffer just hashed is the next one reused: hashing above was synchronous.
      if (readPos < total) issue();
    }
  } finally {
    // Settle reads still in flight so no file operation outlives the caller.
    await Promise.allSettled(reads);
  }
  return digests;
}

/** One open file of a {@linkcode HandlePool}. */
interface PoolEntry {
  handle: Promise<FileHandle>;
  /** Operations using the handle right now. */
  users: number;
  /** Written since its last sync. */
  dirty: boolean;
  /** Called when `users` drops to 0. */
  onIdle?: () => void;
}

/**
 * Keeps at most `maxOpen` files open for a share made of many files, closing the least recently
 * used idle one when another is needed, and syncs the written ones on demand. A handle is never
 * closed while an operation uses it. Data written through a handle closed early is synced first,
 * so {@linkcode HandlePool.syncAll} still covers everything written.
 */
export class HandlePool {
  readonly maxOpen: number;
  /** Open files by path, least recently used first. */
  #entries = new Map<string, PoolEntry>();
  #closing = new Set<Promise<void>>();
  /** A sync or close that failed when an idle file was closed early: reported by `syncAll`. */
  #failure: unknown;

  constructor(maxOpen = 64) {
    this.maxOpen = Math.max(1, maxOpen);
  }

  /**
   * Runs `fn` with the open file at `path`, opening it with `opener` when it is not open.
   *
   * @param options `write`: `fn` writes, so the file must be synced by the next `syncAll`
   */
  async use<T>(
    path: string,
    opener: () => Promise<FileHandle>,
    fn: (handle: FileHandle) => Promise<T>,
    options: { write?: boolean } = {},
  ): Promise<T> {
    let entry = this.#entries.get(path);
    if (!entry) {
      // Make room first: close idle files, and wait for closes under way, so that no more than
      // maxOpen files are open at once (unless every one of them is in use right now).
      for (;;) {
        this.#trim(1);
        const full = this.#entries.size + this.#closing.size >= this.maxOpen;
        if (!full || this.#closing.size === 0) break;
        await Promise.race(this.#closing);
        if (this.#entries.has(path)) break; // another caller opened it meanwhile
      }
      entry = this.#entries.get(path);
    }
    if (entry) {
      this.#entries.delete(path); // re-insert: most recently used last
    } else {
      const handle = opener();
      entry = { handle, users: 0, dirty: false };
      const opened = entry;
      handle.catch(() => {
        if (this.#entries.get(path) === opened) this.#entries.delete(path);
      });
    }
    this.#entries.set(path, entry);
    entry.users++;
    try {
      const handle = await entry.handle;
      if (options.write) entry.dirty = true;
      const result = await fn(handle);
      // Marked again afterwards: a sync that ran while this write was under way missed it.
      if (options.write) entry.dirty = true;
      return result;
    } finally {
      entry.users--;
      if (entry.users === 0) entry.onIdle?.();
      this.#trim();
    }
  }

  /** Makes every write done so far durable (`fdatasync` of each written file). */
  async syncAll(): Promise<void> {
    await Promise.all([...this.#closing]);
    if (this.#failure !== undefined) throw this.#failure;
    const syncs: Promise<void>[] = [];
    for (const entry of this.#entries.values()) {
      if (!entry.dirty) continue;
      entry.dirty = false;
      syncs.push(entry.handle.then((h) => h.datasync()));
    }
    await Promise.all(syncs);
  }

  /**
   * Syncs and closes the file at `path` once no operation uses it (before it is renamed).
   * A later `use` of the same path opens it afresh.
   */
  async release(path: string): Promise<void> {
    const entry = this.#entries.get(path);
    if (!entry) return;
    this.#entries.delete(path);
    await this.#close(entry, true);
  }

  /** Syncs the written files and closes every file. */
  async closeAll(): Promise<void> {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all([...entries.map((e) => this.#close(e, false)), ...this.#closing]);
  }

  /** Closes idle files beyond the limit (with room for `extra` more), least recently used first. */
  #trim(extra = 0): void {
    if (this.#entries.size + extra <= this.maxOpen) return;
    for (const [path, entry] of this.#entries) {
      if (this.#entries.size + extra <= this.maxOpen) break;
      if (entry.users > 0) continue;
      this.#entries.delete(path);
      const closing: Promise<void> = this.#close(entry, false)
        .catch((err) => (this.#failure ??= err))
        .finally(() => this.#closing.delete(closing));
      this.#closing.add(closing);
    }
  }

  async #close(entry: PoolEntry, fullSync: boolean): Promise<void> {
    if (entry.users > 0) await new Promise<void>((resolve) => (entry.onIdle = resolve));
    let handle: FileHandle;
    try {
      handle = await entry.handle;
    } catch {
      return; // never opened
    }
    try {
      if (fullSync) await handle.sync();
      else if (entry.dirty) await handle.datasync();
    } finally {
      await handle.close();
    }
  }
}

function* range(n: number): IterableIterator<number> {
  for (let i = 0; i < n; i++) yield i;
}
