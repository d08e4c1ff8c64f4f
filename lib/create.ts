/**
 * @module create
 * Hashes a file, or every file under a folder, into pieces and builds the metadata. A folder's
 * files are listed in canonical order and laid end to end, so pieces run across file
 * boundaries; empty files and empty folders are kept; symbolic links, devices, sockets and FIFOs
 * are skipped with a warning (links are followed on request, loops refused). Does I/O (reads).
 */

import { basename, join, normalize } from "node:path";
import type { EventSink } from "./events.ts";
import { hashAllPieces, openFile } from "./file_io.ts";
import {
  autoPieceLength,
  buildMetadata,
  type FileEntry,
  MAX_FILES,
  MAX_PIECE_LENGTH,
  type Metadata,
  MIN_PIECE_LENGTH,
  sortEntries,
} from "./metadata.ts";
import { compareNames, unsafePathReason, unsafeSegmentReason } from "./paths.ts";
import { FileLayout, PieceLayout } from "./pieces.ts";
import { TreeReader } from "./tree_io.ts";
import { toHex } from "./units.ts";
import { errorMessage, MetadataError, UsageError } from "./errors.ts";

/** Options for {@linkcode createMetadata}. */
export interface CreateOptions {
  /** Piece length in bytes; automatic when absent. */
  pieceLength?: number;
  trackers?: string[];
  comment?: string;
  signal?: AbortSignal;
  /** Folder: follow symbolic links (a link back into a folder that holds it is refused). */
  followSymlinks?: boolean;
  /** Receives a `warning` for each entry of a folder that is skipped. */
  sink?: EventSink;
  /** A private share: always encrypted, only holders of the metadata can connect. */
  private?: boolean;
}

/**
 * The info fields of a private share: the flag, and a random salt so that nobody can rebuild
 * the info section (and so the share key) from the file alone.
 */
function privacy(options: CreateOptions): { private?: true; salt?: string } {
  if (!options.private) return {};
  return { private: true, salt: toHex(crypto.getRandomValues(new Uint8Array(32))) };
}

/** Program name and version written into metadata as its creator. */
export const CREATED_BY = "p2p-share 0.1.0";

/**
 * Builds metadata for the file or folder at `path`.
 *
 * @throws {UsageError} for a piece length that is not a power of two in range
 * @throws {Error} for a folder holding a name that is not portable, or a symbolic link loop
 * @throws {Deno.errors.NotFound} when the file is missing
 */
export async function createMetadata(path: string, options: CreateOptions = {}): Promise<Metadata> {
  const info = await Deno.stat(path);
  if (info.isDirectory) return await createFolderMetadata(path, options);
  if (!info.isFile) throw new UsageError(`${path} is not a regular file or a folder`);
  const pieceLength = checkPieceLength(options.pieceLength ?? autoPieceLength(info.size));
  const layout = new PieceLayout(info.size, pieceLength);
  let pieces: string[];
  const handle = await openFile(path, "r");
  try {
    pieces = (await hashAllPieces(handle, layout, { signal: options.signal })).map(toHex);
  } finally {
    await handle.close();
  }
  return await buildMetadata(
    { name: basename(path), length: info.size, pieceLength, pieces, ...privacy(options) },
    buildOptions(options),
  );
}

/** A file or empty folder found under the shared folder, with where to read it. */
export interface WalkedEntry extends FileEntry {
  /** Its path on disk. */
  source: string;
}

/**
 * Lists every file and empty folder under `root`, in canonical order. Symbolic links, devices,
 * sockets and FIFOs are skipped with a warning; with `followSymlinks` links are followed (a
 * broken one is skipped with a warning, one leading back into a folder that holds it is refused).
 *
 * @throws {Error} for a name that is not portable, a link loop, or too many entries
 */
export async function walkFolder(
  root: string,
  options: { followSymlinks?: boolean; sink?: EventSink; signal?: AbortSignal } = {},
): Promise<WalkedEntry[]> {
  const out: WalkedEntry[] = [];
  const warn = (message: string) => options.sink?.emit({ event: "warning", message });
  const visit = async (dir: string, rel: string[], ancestors: string[]): Promise<number> => {
    options.signal?.throwIfAborted();
    const names: string[] = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    names.sort(compareNames);
    let kept = 0;
    for (const name of names) {
      const source = join(dir, name);
      const path = [...rel, name];
      let info = await Deno.lstat(source);
      if (info.isSymlink) {
        if (!options.followSymlinks) {
          warn(`skipped symbolic link ${source} (--follow-symlinks includes what it points to)`);
          continue;
        }
        try {
          info = await Deno.stat(source);
        } catch (err) {
          if (!(err instanceof Deno.errors.NotFound)) throw err;
          warn(`skipped broken symbolic link ${source}`);
          continue;
        }
      }
      if (!info.isFile && !info.isDirectory) {
        warn(`skipped ${kindOf(info)} ${source}: only regular files and folders are shared`);
        continue;
      }
      const reason = unsafePathReason(path);
      if (reason) {
        throw new Error(`cannot share ${source}: ${reason} (a name other systems refuse)`);
      }
      if (info.isDirectory) {
        let real = "";
        if (options.followSymlinks) {
          real = await Deno.realPath(source);
          if (ancestors.includes(real)) {
            throw new Error(
              `cannot share ${source}: it leads back to ${real}, a folder that holds it (a symbolic link loop)`,
            );
          }
        }
        const inside = await visit(source, path, [...ancestors, real]);
        if (inside === 0) out.push({ path, length: 0, dir: true, source });
      } else {
        out.push({ path, length: info.size, source });
      }
      kept++;
      if (out.length > MAX_FILES) {
        throw new Error(`cannot share ${root}: more than ${MAX_FILES} files and folders`);
      }
    }
    return kept;
  };
  const rootReal = options.followSymlinks ? await Deno.realPath(root) : "";
  await visit(root, [], [rootReal]);
  return sortEntries(out) as WalkedEntry[];
}

/** Builds the metadata of a folder: its files in canonical order, hashed end to end. */
async function createFolderMetadata(root: string, options: CreateOptions): Promise<Metadata> {
  const name = await folderName(root);
  const unsafe = unsafeSegmentReason(name);
  if (unsafe) {
    throw new Error(`cannot share ${root}: its name ${JSON.stringify(name)}: ${unsafe}`);
  }
  const entries = await walkFolder(root, options);
  const length = entries.reduce((sum, e) => sum + e.length, 0);
  const pieceLength = checkPieceLength(options.pieceLength ?? autoPieceLength(length));
  const layout = new FileLayout(entries, pieceLength);
  const reader = await TreeReader.open(layout, entries.map((e) => e.source));
  let pieces: string[];
  try {
    for (const file of layout.files) {
      if (!reader.entryMatches(file.index)) {
        throw new Error(`${entries[file.index].source} changed while the folder was being read`);
      }
    }
    pieces = (await hashAllPieces(reader.read, layout.pieces, { signal: options.signal })).map(
      toHex,
    );
  } catch (err) {
    if (err instanceof RangeError) {
      throw new Error(`a file under ${root} changed while it was being hashed (${err.message})`, {
        cause: err,
      });
    }
    throw err;
  } finally {
    await reader.close();
  }
  const files: FileEntry[] = entries.map((
    e,
  ) => (e.dir ? { path: e.path, length: 0, dir: true } : { path: e.path, length: e.length }));
  try {
    // `files` before `pieces`, so people reading the file see the list first.
    return await buildMetadata(
      { name, length, pieceLength, files, pieces, ...privacy(options) },
      buildOptions(options),
    );
  } catch (err) {
    if (err instanceof MetadataError) {
      throw new Error(`cannot share ${root}: ${errorMessage(err)}`, { cause: err });
    }
    throw err;
  }
}

/** The share's name: the folder's own name (`create .` takes the name of the current folder). */
async function folderName(root: string): Promise<string> {
  const name = basename(normalize(root));
  if (name !== "" && name !== "." && name !== "..") return name;
  return basename(await Deno.realPath(root));
}

function checkPieceLength(pieceLength: number): number {
  if (
    pieceLength < MIN_PIECE_LENGTH || pieceLength > MAX_PIECE_LENGTH ||
    (pieceLength & (pieceLength - 1)) !== 0
  ) {
    throw new UsageError(
      `piece size ${pieceLength} must be a power of two from ${MIN_PIECE_LENGTH} (1K) to ${MAX_PIECE_LENGTH} (64M)`,
    );
  }
  return pieceLength;
}

function buildOptions(options: CreateOptions) {
  return {
    trackers: options.trackers,
    comment: options.comment,
    createdBy: CREATED_BY,
    creationDate: new Date().toISOString(),
  };
}

function kindOf(info: Deno.FileInfo): string {
  if (info.isSocket) return "socket";
  if (info.isFifo) return "FIFO";
  if (info.isBlockDevice || info.isCharDevice) return "device";
  return "special file";
}
