/**
 * @module create
 * Hashes a file into pieces and builds its metadata. Does I/O (reads the file).
 */

import { basename } from "node:path";
import { hashPieces, openFile } from "./file_io.ts";
import {
  autoPieceLength,
  buildMetadata,
  MAX_PIECE_LENGTH,
  type Metadata,
  MIN_PIECE_LENGTH,
} from "./metadata.ts";
import { PieceLayout } from "./pieces.ts";
import { toHex } from "./units.ts";
import { UsageError } from "./errors.ts";

/** Options for {@linkcode createMetadata}. */
export interface CreateOptions {
  /** Piece length in bytes; automatic when absent. */
  pieceLength?: number;
  trackers?: string[];
  comment?: string;
  signal?: AbortSignal;
}

/** Program name and version written into metadata as its creator. */
export const CREATED_BY = "p2p-share 0.1.0";

/**
 * Builds metadata for the file at `path`.
 *
 * @throws {UsageError} for a piece length that is not a power of two in range
 * @throws {Deno.errors.NotFound} when the file is missing
 */
export async function createMetadata(path: string, options: CreateOptions = {}): Promise<Metadata> {
  const info = await Deno.stat(path);
  if (info.isDirectory) {
    throw new UsageError(`${path} is a folder: sharing folders is not supported yet`);
  }
  if (!info.isFile) throw new UsageError(`${path} is not a regular file`);
  const pieceLength = options.pieceLength ?? autoPieceLength(info.size);
  if (
    pieceLength < MIN_PIECE_LENGTH || pieceLength > MAX_PIECE_LENGTH ||
    (pieceLength & (pieceLength - 1)) !== 0
  ) {
    throw new UsageError(
      `piece size ${pieceLength} must be a power of two from ${MIN_PIECE_LENGTH} (1K) to ${MAX_PIECE_LENGTH} (64M)`,
    );
  }
  const layout = new PieceLayout(info.size, pieceLength);
  const pieces: string[] = [];
  const handle = await openFile(path, "r");
  try {
    for await (const piece of hashPieces(handle, layout, { signal: options.signal })) {
      pieces.push(toHex(piece.digest));
    }
  } finally {
    await handle.close();
  }
  return await buildMetadata(
    { name: basename(path), length: info.size, pieceLength, pieces },
    {
      trackers: options.trackers,
      comment: options.comment,
      createdBy: CREATED_BY,
      creationDate: new Date().toISOString(),
    },
  );
}
