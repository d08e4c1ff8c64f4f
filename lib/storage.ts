/**
 * @module storage
 * One share on disk in a work folder: `<name>.partial` (pieces written in place), the
 * `<name>.state.json` record of verified pieces, and the completed `<name>`. Crash-safe: the
 * state file only ever lists pieces whose bytes were synced to disk first, and it is replaced
 * atomically. It is never trusted over the data: pieces it lists are re-hashed on open.
 * Does I/O.
 */

import { join } from "node:path";
import { Bitfield } from "./bitfield.ts";
import type { EventSink } from "./events.ts";
import {
  type FileHandle,
  hashPieces,
  openFile,
  readFully,
  syncFolderOf,
  writeFileAtomic,
  writeFully,
} from "./file_io.ts";
import { digestsEqual } from "./hash.ts";
import type { Metadata } from "./metadata.ts";
import { PieceLayout } from "./pieces.ts";
import { fromHex } from "./units.ts";

/** Format version of state files. */
export const STATE_VERSION = 1;
/** Largest state file read: bounds memory for a damaged or planted file. */
const MAX_STATE_BYTES = 16 * 1024 * 1024;

/** The on-disk state record. */
export interface StateFile {
  version: number;
  infoHash: string;
  name: string;
  length: number;
  pieceLength: number;
  piecesTotal: number;
  /** Verified pieces as ranges, e.g. `0-99,150`. */
  have: string;
  updated: string;
}

/** Paths a share uses inside its work folder. */
export interface SharePaths {
  partial: string;
  state: string;
  final: string;
}

/** Paths of a share's files in `workdir`. */
export function sharePaths(meta: Metadata, workdir: string): SharePaths {
  const base = join(workdir, meta.info.name);
  return { partial: `${base}.partial`, state: `${base}.state.json`, final: base };
}

/** How a storage was opened, for reporting. */
export interface OpenReport {
  /** Which file holds the data. */
  dataPath: string;
  /** Pieces verified on open. */
  piecesGood: number;
  /** True when the completed `<name>` was found (rather than a partial). */
  foundFinal: boolean;
}

/** A share's data in a work folder. */
export class ShareStorage {
  readonly meta: Metadata;
  readonly layout: PieceLayout;
  readonly paths: SharePaths;
  /** Verified pieces held. */
  readonly have: Bitfield;
  #handle: FileHandle;
  #dataPath: string;
  #dirty = false;
  #flushing: Promise<void> = Promise.resolve();
  #hashes: Uint8Array[];

  private constructor(meta: Metadata, paths: SharePaths, handle: FileHandle, dataPath: string) {
    this.meta = meta;
    this.layout = new PieceLayout(meta.info.length, meta.info.pieceLength);
    this.paths = paths;
    this.have = new Bitfield(this.layout.pieceCount);
    this.#handle = handle;
    this.#dataPath = dataPath;
    this.#hashes = meta.info.pieces.map(fromHex);
  }

  /** The file that currently holds the data (partial, or final once complete). */
  get dataPath(): string {
    return this.#dataPath;
  }

  /** Bytes of verified pieces held. */
  get bytesHave(): number {
    let bytes = 0;
    for (const i of this.have.indexes()) bytes += this.layout.pieceSize(i);
    return bytes;
  }

  /**
   * Opens (creating the folder and partial file when needed) and verifies what is there:
   * a completed `<name>` is re-hashed whole; a partial with a readable state file has the pieces
   * it lists re-hashed; a partial without one is rechecked whole.
   *
   * @param meta the share
   * @param workdir the work folder; nothing is written outside it
   * @param options `sink` for recheck notices; `readOnly` to never create or modify files
   */
  static async open(
    meta: Metadata,
    workdir: string,
    options: { sink: EventSink; readOnly?: boolean; signal?: AbortSignal },
  ): Promise<ShareStorage> {
    const paths = sharePaths(meta, workdir);
    if (!options.readOnly) await Deno.mkdir(workdir, { recursive: true });
    const partialExists = await regularFileExists(paths.partial);
    const finalExists = !partialExists && await regularFileExists(paths.final);
    const dataPath = finalExists ? paths.final : paths.partial;
    // A completed file is only ever read: it is never truncated or written into.
    const flags = options.readOnly || finalExists ? "r" : partialExists ? "r+" : "w+";
    const handle = await openFile(dataPath, flags);
    const storage = new ShareStorage(meta, paths, handle, dataPath);
    try {
      let candidates: number[] | undefined;
      if (finalExists) {
        options.sink.emit({
          event: "rechecking",
          path: dataPath,
          reason: "verifying the completed file",
        });
      } else if (partialExists) {
        const state = await storage.#readState();
        if (typeof state === "string") {
          options.sink.emit({ event: "rechecking", path: dataPath, reason: state });
        } else {
          candidates = [...state.indexes()];
          if (candidates.length > 0) {
            options.sink.emit({
              event: "info",
              message: `verifying ${candidates.length} pieces recorded in ${paths.state}`,
            });
          }
        }
      }
      if (finalExists || partialExists) {
        const size = (await handle.stat()).size;
        if (partialExists && !options.readOnly && size !== meta.info.length) {
          await handle.truncate(meta.info.length);
        }
        await storage.verifyInto(storage.have, {
          indexes: candidates,
          signal: options.signal,
          fileSize: size,
        });
        if (
          finalExists && !options.readOnly && (!storage.have.complete || size !== meta.info.length)
        ) {
          // Not ours to overwrite: it may be an unrelated file that happens to have this name.
          throw new Error(
            `${paths.final} exists but does not match ${meta.info.name} (${storage.have.count}/${storage.layout.pieceCount} pieces good); move it away or choose another work folder`,
          );
        }
      } else if (!options.readOnly) {
        await handle.truncate(meta.info.length);
      }
      return storage;
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /**
   * Hashes pieces of the data file and sets the good ones in `into`.
   *
   * @returns indexes of the pieces that failed
   */
  async verifyInto(
    into: Bitfield,
    options: { indexes?: Iterable<number>; signal?: AbortSignal; fileSize?: number } = {},
  ): Promise<number[]> {
    const fileSize = options.fileSize ?? (await this.#handle.stat()).size;
    const bad: number[] = [];
    const readable: number[] = [];
    for (const i of options.indexes ?? rangeOf(this.layout.pieceCount)) {
      const span = this.layout.span(i);
      if (span.offset + span.length <= fileSize) readable.push(i);
      else bad.push(i);
    }
    for await (
      const piece of hashPieces(this.#handle, this.layout, {
        indexes: readable,
        signal: options.signal,
      })
    ) {
      if (digestsEqual(piece.digest, this.#hashes[piece.index])) into.set(piece.index);
      else bad.push(piece.index);
    }
    return bad.sort((a, b) => a - b);
  }

  /** Expected SHA-256 of piece `index`. */
  expectedDigest(index: number): Uint8Array {
    return this.#hashes[index];
  }

  /** Reads `dest.length` bytes of piece `index` at `begin` (positional: safe to run concurrently). */
  readBlock(index: number, begin: number, dest: Uint8Array): Promise<void> {
    return readFully(this.#handle, dest, index * this.layout.pieceLength + begin);
  }

  /**
   * Writes a piece already verified by the caller and records it; the state file follows on the
   * next {@linkcode ShareStorage.flush}. A piece already held is never overwritten.
   */
  async writeVerifiedPiece(index: number, data: Uint8Array): Promise<void> {
    if (this.have.has(index)) return;
    await writeFully(this.#handle, data, index * this.layout.pieceLength);
    this.have.set(index);
    this.#dirty = true;
  }

  /**
   * Makes the data durable, then records the verified pieces in the state file atomically.
   * Concurrent calls are serialised.
   */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      if (!this.#dirty) return;
      this.#dirty = false;
      const haveText = this.have.toRanges();
      await this.#handle.datasync();
      const state: StateFile = {
        version: STATE_VERSION,
        infoHash: this.meta.infoHash,
        name: this.meta.info.name,
        length: this.meta.info.length,
        pieceLength: this.meta.info.pieceLength,
        piecesTotal: this.layout.pieceCount,
        have: haveText,
        updated: new Date().toISOString(),
      };
      await writeFileAtomic(this.paths.state, `${JSON.stringify(state, null, 2)}\n`);
    });
    return this.#flushing;
  }

  /** Marks the state as needing a write (after an ingest that found pieces already in place). */
  markDirty(): void {
    this.#dirty = true;
  }

  /**
   * Moves the completed partial to its final name and removes the state file. Order matters for
   * crash safety: sync, rename, sync folder, then drop the state file.
   *
   * @returns the final path
   */
  async finalize(): Promise<string> {
    if (!this.have.complete) throw new Error("cannot finalize an incomplete share");
    await this.flush();
    if (this.#dataPath === this.paths.final) return this.#dataPath;
    await this.#handle.sync();
    await Deno.rename(this.paths.partial, this.paths.final);
    await syncFolderOf(this.paths.final);
    this.#dataPath = this.paths.final;
    await Deno.remove(this.paths.state).catch(() => {});
    return this.#dataPath;
  }

  /** Flushes and closes the data file. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.#handle.close();
    }
  }

  async #readState(): Promise<Bitfield | string> {
    let text: string;
    try {
      const info = await Deno.lstat(this.paths.state);
      if (!info.isFile) return "state file is not a regular file; rechecking the partial data";
      if (info.size > MAX_STATE_BYTES) return "state file too large; rechecking the partial data";
      text = await Deno.readTextFile(this.paths.state);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        return "state file missing; rechecking the partial data";
      }
      return `state file unreadable (${(err as Error).message}); rechecking the partial data`;
    }
    try {
      const state = JSON.parse(text) as Partial<StateFile>;
      if (state.version !== STATE_VERSION || state.infoHash !== this.meta.infoHash) {
        return "state file belongs to another share or version; rechecking the partial data";
      }
      return Bitfield.fromRanges(String(state.have ?? ""), this.layout.pieceCount);
    } catch {
      return "state file is damaged; rechecking the partial data";
    }
  }
}

/** True when `path` is an existing regular file; a symlink or folder there is refused. */
async function regularFileExists(path: string): Promise<boolean> {
  try {
    const info = await Deno.lstat(path);
    if (info.isSymlink) throw new Error(`refusing to use ${path}: it is a symbolic link`);
    if (!info.isFile) throw new Error(`refusing to use ${path}: it is not a regular file`);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

function* rangeOf(n: number): IterableIterator<number> {
  for (let i = 0; i < n; i++) yield i;
}
