/**
 * @module storage
 * One share on disk in a work folder: `<name>.partial` (pieces written in place), the
 * `<name>.state.json` record of verified pieces, and the completed `<name>`. For a directory
 * share `<name>.partial` and `<name>` are folders rebuilding the tree, and each file moves from
 * the first to the second once complete ({@linkcode TreeStore}). Crash-safe: the state file only
 * ever lists pieces whose bytes were synced to disk first, and it is replaced atomically. It is
 * never trusted over the data: pieces it lists are re-hashed on open. A download may want only
 * some files (`only` globs): then only the pieces touching them are wanted. Does I/O.
 */

import { dirname, join } from "node:path";
import { Bitfield } from "./bitfield.ts";
import { UsageError } from "./errors.ts";
import type { EventSink } from "./events.ts";
import {
  type FileHandle,
  hashPieces,
  openFile,
  type ReadAt,
  readFully,
  syncFolderOf,
  writeFileAtomic,
  writeFully,
} from "./file_io.ts";
import { selectFiles } from "./glob.ts";
import { digestsEqual } from "./hash.ts";
import { isDirectoryShare, type Metadata, shareEntries } from "./metadata.ts";
import { FileLayout, PieceLayout } from "./pieces.ts";
import { TreeStore } from "./tree_store.ts";
import { fromHex } from "./units.ts";

/** Format version of state files. */
export const STATE_VERSION = 1;
/** Largest state file read: bounds memory for a damaged or planted file. */
const MAX_STATE_BYTES = 16 * 1024 * 1024;
/**
 * A data sync starts (in the background) each time this much was written since the last one, so
 * writeback keeps pace with the download and the sync before the file is put in place waits for
 * at most about this much, whatever the speed or how seldom the state file is written.
 */
const SYNC_EVERY_BYTES = 32 * 1024 * 1024;

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

/** Options for {@linkcode ShareStorage.open}. */
export interface OpenOptions {
  /** Receives recheck notices, and `file_complete` as files are placed. */
  sink: EventSink;
  /** Never create or modify anything. */
  readOnly?: boolean;
  signal?: AbortSignal;
  /**
   * Glob patterns choosing the files wanted (`download --only`, see `glob.ts`); all when
   * absent. Only the pieces touching a chosen file are then {@linkcode ShareStorage.wanted}.
   */
  only?: string[];
  /**
   * Directory share: move each wanted file to its final place as soon as every piece it
   * touches is verified and recorded (on {@linkcode ShareStorage.flush}), rather than all at
   * {@linkcode ShareStorage.finalize}. For downloads; a seeder leaves this off.
   */
  placeFiles?: boolean;
}

/** Where the data of a share lives: one file, or a tree of files. */
interface DataBackend {
  /** True when every byte of the range is on disk to be read. */
  canRead(offset: number, length: number): boolean;
  read: ReadAt;
  write(data: Uint8Array, offset: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** A single-file share's `<name>.partial` (or completed `<name>`), through one handle. */
class SingleFileBackend implements DataBackend {
  readonly handle: FileHandle;
  /** Bytes in the file, as found on open, then the share's length once fixed. */
  size: number;

  constructor(handle: FileHandle, size: number) {
    this.handle = handle;
    this.size = size;
  }

  canRead(offset: number, length: number): boolean {
    return offset + length <= this.size;
  }

  read: ReadAt = (buf, position) => readFully(this.handle, buf, position);

  write(data: Uint8Array, offset: number): Promise<void> {
    return writeFully(this.handle, data, offset);
  }

  sync(): Promise<void> {
    return this.handle.datasync();
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** A share's data in a work folder. */
export class ShareStorage {
  readonly meta: Metadata;
  readonly layout: PieceLayout;
  /** Where each file of the share lies (a single-file share: one file, named `info.name`). */
  readonly files: FileLayout;
  readonly paths: SharePaths;
  /** Verified pieces held. */
  readonly have: Bitfield;
  /** Pieces touching a wanted file: what a download must fetch (all, without `only`). */
  readonly wanted: Bitfield;
  /** Indexes (in {@linkcode ShareStorage.files}) of the wanted files, ascending. */
  readonly wantedFiles: readonly number[];
  #backend: DataBackend;
  /** The tail of the chain of block writes issued for each piece not yet verified. */
  #pieceWrites = new Map<number, Promise<void>>();
  /** The tree of a directory share (`undefined` for a single file). */
  #tree: TreeStore | undefined;
  #sink: EventSink;
  #placeFiles: boolean;
  #dataPath: string;
  #dirty = false;
  /** Bytes written since the last data sync began, and the one under way (settled: none). */
  #unsyncedBytes = 0;
  #syncing: Promise<void> | undefined;
  /**
   * A failed background sync. Linux reports a writeback error to one `fsync` only, so it is
   * kept here and thrown by the next state write, which must not record pieces it may cover.
   */
  #syncFailure: unknown;
  #flushing: Promise<void> = Promise.resolve();
  #hashes: Uint8Array[];
  /** Pieces the state file on disk lists (all synced before it was written). */
  #recorded: Bitfield;
  #wantedSet: Set<number>;
  /** Wanted files that may have become complete since they were last looked at. */
  #toPlace = new Set<number>();

  private constructor(
    meta: Metadata,
    paths: SharePaths,
    backend: DataBackend,
    dataPath: string,
    options: { sink: EventSink; tree?: TreeStore; wantedFiles: number[]; placeFiles?: boolean },
  ) {
    this.meta = meta;
    this.layout = new PieceLayout(meta.info.length, meta.info.pieceLength);
    this.files = new FileLayout(shareEntries(meta.info), meta.info.pieceLength);
    this.paths = paths;
    this.have = new Bitfield(this.layout.pieceCount);
    this.#recorded = new Bitfield(this.layout.pieceCount);
    this.#backend = backend;
    this.#tree = options.tree;
    this.#sink = options.sink;
    this.#placeFiles = options.placeFiles ?? false;
    this.#dataPath = dataPath;
    this.#hashes = meta.info.pieces.map(fromHex);
    this.wantedFiles = options.wantedFiles;
    this.#wantedSet = new Set(options.wantedFiles);
    this.wanted = new Bitfield(this.layout.pieceCount);
    for (const i of this.files.piecesOfFiles(options.wantedFiles)) this.wanted.set(i);
    for (const f of options.wantedFiles) this.#toPlace.add(f);
  }

  /** The file that currently holds the data (partial, or final once complete). */
  get dataPath(): string {
    return this.#dataPath;
  }

  /** True for a directory share. */
  get isDirectory(): boolean {
    return this.#tree !== undefined;
  }

  /** Bytes of verified pieces held. */
  get bytesHave(): number {
    let bytes = 0;
    for (const i of this.have.indexes()) bytes += this.layout.pieceSize(i);
    return bytes;
  }

  /** Bytes of the wanted pieces (the whole share without `only`): a download's total. */
  get bytesWanted(): number {
    let bytes = 0;
    for (const i of this.wanted.indexes()) bytes += this.layout.pieceSize(i);
    return bytes;
  }

  /** Bytes of the wanted pieces already held. */
  get bytesHaveWanted(): number {
    let bytes = 0;
    for (const i of this.wanted.indexes()) if (this.have.has(i)) bytes += this.layout.pieceSize(i);
    return bytes;
  }

  /** Bytes of the wanted files themselves (what ends up in `<name>`). */
  get bytesSelected(): number {
    return this.wantedFiles.reduce((sum, f) => sum + this.files.files[f].length, 0);
  }

  /** Number of wanted pieces held. */
  get piecesHaveWanted(): number {
    let count = 0;
    for (const i of this.wanted.indexes()) if (this.have.has(i)) count++;
    return count;
  }

  /** True when every wanted piece is held: the download is done. */
  get wantedComplete(): boolean {
    for (const i of this.wanted.indexes()) if (!this.have.has(i)) return false;
    return true;
  }

  /**
   * Opens (creating the folder and partial file when needed) and verifies what is there:
   * a completed `<name>` is re-hashed whole; a partial with a readable state file has the pieces
   * it lists re-hashed; a partial without one is rechecked whole. For a directory share the same
   * holds for the folders `<name>.partial/` and `<name>/`, and every name under the work folder
   * is checked on the way: a symbolic link there is refused, never followed.
   *
   * @param meta the share
   * @param workdir the work folder; nothing is written outside it
   * @param options `sink` for notices; `readOnly` to never create or modify files; `only` globs
   *   choosing the wanted files; `placeFiles` to move each completed file into place at once
   * @throws {UsageError} when an `only` pattern matches no file (before anything is touched)
   */
  static async open(
    meta: Metadata,
    workdir: string,
    options: OpenOptions,
  ): Promise<ShareStorage> {
    const wantedFiles = chooseFiles(meta, options.only);
    if (isDirectoryShare(meta.info)) {
      return await ShareStorage.#openTree(meta, workdir, options, wantedFiles);
    }
    const paths = sharePaths(meta, workdir);
    if (!options.readOnly) await Deno.mkdir(workdir, { recursive: true });
    const partialExists = await regularFileExists(paths.partial);
    const finalExists = !partialExists && await regularFileExists(paths.final);
    const dataPath = finalExists ? paths.final : paths.partial;
    // A completed file is only ever read: it is never truncated or written into. A new partial is
    // created exclusively, so a link planted there since the check above fails instead.
    const flags = options.readOnly || finalExists ? "r" : partialExists ? "r+" : "wx+";
    const handle = await openFile(dataPath, flags);
    const backend = new SingleFileBackend(handle, 0);
    const storage = new ShareStorage(meta, paths, backend, dataPath, {
      sink: options.sink,
      wantedFiles,
    });
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
        backend.size = size;
        if (partialExists && !options.readOnly && size !== meta.info.length) {
          await handle.truncate(meta.info.length);
        }
        await storage.verifyInto(storage.have, { indexes: candidates, signal: options.signal });
        if (partialExists && !options.readOnly) backend.size = meta.info.length;
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
        backend.size = meta.info.length;
      }
      storage.#recorded = storage.#snapshot();
      return storage;
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** Opens a directory share; see {@linkcode ShareStorage.open}. */
  static async #openTree(
    meta: Metadata,
    workdir: string,
    options: OpenOptions,
    wantedFiles: number[],
  ): Promise<ShareStorage> {
    const paths = sharePaths(meta, workdir);
    const files = new FileLayout(shareEntries(meta.info), meta.info.pieceLength);
    const { store, scan } = await TreeStore.open(files, workdir, {
      name: meta.info.name,
      readOnly: options.readOnly,
    });
    const foundFinal = scan.finalRootExists && !scan.partialRootExists;
    const storage = new ShareStorage(
      meta,
      paths,
      store,
      foundFinal ? paths.final : paths.partial,
      { sink: options.sink, tree: store, wantedFiles, placeFiles: options.placeFiles },
    );
    try {
      const stateExists = (await Deno.lstat(paths.state).catch(() => undefined)) !== undefined;
      let candidates: number[] | undefined;
      if (scan.partialRootExists || scan.finalRootExists || stateExists) {
        const state = await storage.#readState();
        if (typeof state !== "string") {
          candidates = [...state.indexes()];
          if (candidates.length > 0) {
            options.sink.emit({
              event: "info",
              message: `verifying ${candidates.length} pieces recorded in ${paths.state}`,
            });
          }
        } else if (scan.partialRootExists) {
          options.sink.emit({ event: "rechecking", path: paths.partial, reason: state });
        } else if (scan.finalRootExists) {
          options.sink.emit({
            event: "rechecking",
            path: paths.final,
            reason: "verifying the completed folder",
          });
        }
        await storage.verifyInto(storage.have, { indexes: candidates, signal: options.signal });
      }
      if (foundFinal && !stateExists && !options.readOnly && !storage.wantedComplete) {
        // Not ours to add to: it may be an unrelated folder that happens to have this name.
        throw new Error(
          `${paths.final} exists but does not match ${meta.info.name} (${storage.have.count}/${storage.layout.pieceCount} pieces good); move it away or choose another work folder`,
        );
      }
      await store.fixLengths();
      storage.#recorded = storage.#snapshot();
      return storage;
    } catch (err) {
      await store.close();
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
    options: { indexes?: Iterable<number>; signal?: AbortSignal } = {},
  ): Promise<number[]> {
    const bad: number[] = [];
    const readable: number[] = [];
    for (const i of options.indexes ?? rangeOf(this.layout.pieceCount)) {
      const span = this.layout.span(i);
      if (this.#backend.canRead(span.offset, span.length)) readable.push(i);
      else bad.push(i);
    }
    for await (
      const piece of hashPieces(this.#backend.read, this.layout, {
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

  /**
   * Writes through the backend, and starts a data sync (not waited for) whenever
   * {@linkcode SYNC_EVERY_BYTES} were written since the last one began (single-file shares).
   */
  async #write(data: Uint8Array, offset: number): Promise<void> {
    await this.#backend.write(data, offset);
    this.#unsyncedBytes += data.length;
    // Single files only: a folder's pool may close a file (to place it) under a sync.
    if (this.#unsyncedBytes >= SYNC_EVERY_BYTES && !this.#syncing && !this.#tree) {
      this.#unsyncedBytes = 0;
      this.#syncing = this.#backend.sync()
        .catch((err) => void (this.#syncFailure ??= err))
        .finally(() => (this.#syncing = undefined));
    }
  }

  /** Reads `dest.length` bytes of piece `index` at `begin` (positional: safe to run concurrently). */
  readBlock(index: number, begin: number, dest: Uint8Array): Promise<void> {
    return this.#backend.read(dest, index * this.layout.pieceLength + begin);
  }

  /**
   * Writes one block of a piece not yet verified, straight to its place in the data file, so a
   * download holds only the blocks in flight in memory. Writes to one piece are applied in the
   * order they are issued, so a later fetch of a piece always overwrites an earlier, failed
   * one. A verified piece is never written.
   */
  writeBlock(index: number, begin: number, data: Uint8Array): Promise<void> {
    if (this.have.has(index)) return Promise.resolve();
    const previous = this.#pieceWrites.get(index) ?? Promise.resolve();
    const write = previous.catch(() => {}).then(() =>
      this.have.has(index) ? undefined : this.#write(data, index * this.layout.pieceLength + begin)
    );
    this.#pieceWrites.set(index, write);
    return write;
  }

  /**
   * Records piece `index` as verified once every write issued for it has landed (the caller
   * hashed exactly the bytes it wrote). The state file follows on the next flush.
   *
   * @throws when one of the piece's writes failed: the piece stays missing
   */
  async markVerified(index: number): Promise<void> {
    const writes = this.#pieceWrites.get(index);
    if (writes) {
      try {
        await writes;
      } finally {
        if (this.#pieceWrites.get(index) === writes) this.#pieceWrites.delete(index);
      }
    }
    if (this.have.has(index)) return;
    this.have.set(index);
    this.#dirty = true;
  }

  /**
   * Writes a piece already verified by the caller and records it; the state file follows on the
   * next {@linkcode ShareStorage.flush}. A piece already held is never overwritten.
   *
   * @throws {Error} (directory share) when the piece overlaps a completed file whose bytes were
   *   changed since: a completed file is only ever read
   */
  async writeVerifiedPiece(index: number, data: Uint8Array): Promise<void> {
    if (this.have.has(index)) return;
    await this.#write(data, index * this.layout.pieceLength);
    this.have.set(index);
    this.#dirty = true;
  }

  /**
   * Makes the data durable, then records the verified pieces in the state file atomically;
   * with `placeFiles`, then moves the wanted files that became complete into place.
   * Concurrent calls are serialised.
   */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      if (this.#dirty) await this.#writeState();
      if (this.#placeFiles) await this.#placeCompleteFiles();
    });
    return this.#flushing;
  }

  /** Syncs the data, then replaces the state file with the pieces held now. */
  async #writeState(): Promise<void> {
    this.#dirty = false;
    const snapshot = this.#snapshot();
    const haveText = snapshot.toRanges();
    await this.#backend.sync();
    if (this.#syncFailure !== undefined) throw this.#syncFailure;
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
    for (const i of snapshot.indexes()) {
      if (this.#recorded.has(i)) continue;
      for (const span of this.files.pieceSpans(i)) {
        if (this.#wantedSet.has(span.file)) this.#toPlace.add(span.file);
      }
    }
    this.#recorded = snapshot;
  }

  /**
   * Moves every wanted file whose pieces are all recorded from the partial folder to its final
   * place (directory shares), and reports each with `file_complete`.
   */
  async #placeCompleteFiles(): Promise<void> {
    const tree = this.#tree;
    if (!tree) return;
    // A file left here incomplete comes back when one of its pieces is next recorded.
    const candidates = [...this.#toPlace].sort((a, b) => a - b);
    this.#toPlace.clear();
    const placed: string[] = [];
    try {
      for (const file of candidates) {
        const range = this.files.piecesOfFile(file); // none: empty files are made by finalize
        if (!range || tree.location(file) !== "partial") continue;
        let complete = true;
        for (let i = range.first; i <= range.last && complete; i++) {
          complete = this.#recorded.has(i);
        }
        if (!complete) continue;
        const path = await tree.place(file);
        placed.push(path);
        const entry = this.files.files[file];
        this.#sink.emit({
          event: "file_complete",
          path,
          file: entry.path.join("/"),
          bytes: entry.length,
        });
      }
    } finally {
      await syncFolders(placed);
    }
  }

  /** Marks the state as needing a write (after an ingest that found pieces already in place). */
  markDirty(): void {
    this.#dirty = true;
  }

  /**
   * Moves the completed partial to its final name and removes the state file. Order matters for
   * crash safety: sync, rename, sync folder, then drop the state file.
   *
   * A directory share needs only its wanted pieces: each wanted file is moved into `<name>/`,
   * wanted empty files and folders are created there, and the state file and `<name>.partial/`
   * are removed once every file holding bytes is in place (with `only`, bytes of unselected files
   * stay in `<name>.partial/`, and the state file with them, for a later run).
   *
   * @returns the final path (the file, or the folder `<name>`)
   */
  async finalize(): Promise<string> {
    const tree = this.#tree;
    if (tree) {
      if (!this.wantedComplete) throw new Error("cannot finalize an incomplete share");
      await this.flush();
      this.#flushing = this.#flushing.then(() => this.#finalizeTree(tree));
      await this.#flushing;
      return this.#dataPath;
    }
    if (!this.have.complete) throw new Error("cannot finalize an incomplete share");
    await this.flush();
    if (this.#dataPath === this.paths.final) return this.#dataPath;
    await (this.#backend as SingleFileBackend).handle.sync();
    await Deno.rename(this.paths.partial, this.paths.final);
    await syncFolderOf(this.paths.final);
    this.#dataPath = this.paths.final;
    await Deno.remove(this.paths.state).catch(() => {});
    return this.#dataPath;
  }

  async #finalizeTree(tree: TreeStore): Promise<void> {
    for (const file of this.wantedFiles) this.#toPlace.add(file);
    await this.#placeCompleteFiles();
    await tree.ensureFinalRoot();
    const made: string[] = [];
    for (const file of this.wantedFiles) {
      const entry = this.files.files[file];
      if (entry.length !== 0) continue;
      const { path, created } = await tree.placeEmpty(file);
      made.push(path);
      if (created) {
        this.#sink.emit({ event: "file_complete", path, file: entry.path.join("/"), bytes: 0 });
      }
    }
    await syncFolders([...made, this.paths.final]);
    this.#dataPath = this.paths.final;
    const allPlaced = this.files.files.every((f) =>
      f.length === 0 || tree.location(f.index) === "final"
    );
    if (allPlaced) {
      await Deno.remove(this.paths.state).catch(() => {});
      await tree.removePartialRoot();
    }
  }

  /** Flushes and closes the data file(s). */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.#syncing; // never closed under a sync (it cannot reject)
      await this.#backend.close();
    }
  }

  /** A copy of the pieces held now. */
  #snapshot(): Bitfield {
    return Bitfield.fromBytes(this.have.bytes.slice(), this.have.size);
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

/**
 * The files a download wants: all, or those chosen by `only` patterns.
 *
 * @throws {UsageError} for a pattern that is empty or matches nothing
 */
export function chooseFiles(meta: Metadata, only: string[] | undefined): number[] {
  const entries = shareEntries(meta.info);
  if (only === undefined || only.length === 0) return entries.map((_, i) => i);
  let selection;
  try {
    selection = selectFiles(entries.map((e) => e.path), only);
  } catch (err) {
    throw new UsageError(`--only: ${(err as Error).message}`, { cause: err });
  }
  if (selection.unmatched.length > 0) {
    throw new UsageError(
      `--only ${JSON.stringify(selection.unmatched[0])} matches no file of ${meta.info.name}`,
    );
  }
  return selection.files;
}

/** Makes renames and creations durable: syncs each distinct folder holding one of `paths`. */
async function syncFolders(paths: string[]): Promise<void> {
  const byFolder = new Map(paths.map((p) => [dirname(p), p]));
  for (const path of byFolder.values()) await syncFolderOf(path);
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
