/**
 * @module meta_file
 * Reads and writes `.p2pmeta` files, with a size limit before anything is parsed. Does I/O.
 */

import { MetadataError } from "./errors.ts";
import { encodeMetadata, MAX_METADATA_BYTES, type Metadata, parseMetadata } from "./metadata.ts";

/**
 * Reads and validates a metadata file.
 *
 * @throws {MetadataError} `Cannot read metadata PATH: reason` for any problem, I/O included
 */
export async function readMetadataFile(path: string): Promise<Metadata> {
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new MetadataError("not a regular file");
    if (info.size > MAX_METADATA_BYTES) {
      throw new MetadataError(
        `file of ${info.size} bytes exceeds the ${MAX_METADATA_BYTES}-byte limit`,
      );
    }
    return await parseMetadata(await Deno.readTextFile(path));
  } catch (err) {
    const reason = err instanceof Deno.errors.NotFound ? "file not found" : (err as Error).message;
    throw new MetadataError(`Cannot read metadata ${path}: ${reason}`, { cause: err });
  }
}

/**
 * Writes a metadata file (atomically enough for a file written once). A private share's
 * metadata is the key to it, so it is readable by its owner only.
 */
export async function writeMetadataFile(path: string, meta: Metadata): Promise<void> {
  await Deno.writeTextFile(path, encodeMetadata(meta), meta.info.private ? { mode: 0o600 } : {});
}
