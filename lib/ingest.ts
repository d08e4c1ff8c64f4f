/**
 * @module ingest
 * Copies the verified pieces of a source file into a share's work folder, so the seeder only
 * ever serves bytes it has checked (and can go on after the original is deleted). Does I/O.
 */

import { digestsEqual } from "./hash.ts";
import { hashPieces, openFile } from "./file_io.ts";
import type { ShareStorage } from "./storage.ts";

/** Result of an ingest. */
export interface IngestReport {
  /** Pieces held after the ingest. */
  verified: number;
  /** Pieces of the source that failed verification. */
  badPieces: number[];
}

/**
 * Verifies every piece of `sourcePath` that the storage lacks and stores the good ones.
 *
 * @throws {Deno.errors.NotFound} when the source is missing
 */
export async function ingestSource(
  storage: ShareStorage,
  sourcePath: string,
  signal?: AbortSignal,
): Promise<IngestReport> {
  const badPieces: number[] = [];
  const handle = await openFile(sourcePath, "r");
  try {
    const size = (await handle.stat()).size;
    const missing: number[] = [];
    for (let i = 0; i < storage.layout.pieceCount; i++) {
      if (storage.have.has(i)) continue;
      const span = storage.layout.span(i);
      if (span.offset + span.length <= size) missing.push(i);
      else badPieces.push(i);
    }
    for await (const piece of hashPieces(handle, storage.layout, { indexes: missing, signal })) {
      if (digestsEqual(piece.digest, storage.expectedDigest(piece.index))) {
        await storage.writeVerifiedPiece(piece.index, piece.data);
      } else {
        badPieces.push(piece.index);
      }
    }
  } finally {
    await handle.close();
  }
  storage.markDirty();
  await storage.flush();
  return { verified: storage.have.count, badPieces: badPieces.sort((a, b) => a - b) };
}
