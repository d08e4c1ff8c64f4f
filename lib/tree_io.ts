/**
 * @module tree_io
 * Reads the bytes of a directory share from a folder of ordinary files (the source given to
 * `create` and `seed --source`, or the folder `verify` checks): a piece's byte range is mapped
 * onto the files it spans and read positionally, through a bounded pool of open files. Does I/O.
 */

import { HandlePool, openFile, type ReadAt, readFully } from "./file_io.ts";
import type { FileLayout, FileSpan } from "./pieces.ts";

/**
 * Fills `buf` with the share's bytes at `position` by reading each file part it spans.
 *
 * @param readPart reads `part.length` bytes of file `file` at `fileOffset`
 */
export async function readSpans(
  layout: FileLayout,
  buf: Uint8Array,
  position: number,
  readPart: (span: FileSpan, part: Uint8Array) => Promise<void>,
): Promise<void> {
  await settleAll(
    layout.spans(position, buf.length).map((span) =>
      readPart(span, buf.subarray(span.rangeOffset, span.rangeOffset + span.length))
    ),
  );
}

/**
 * Waits for every promise, then throws the first failure, if any: unlike `Promise.all`, nothing
 * is left running behind the caller's back when one part fails.
 */
export async function settleAll(parts: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(parts);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** The files of a share found under a folder, read without writing anything. */
export class TreeReader {
  readonly layout: FileLayout;
  /** File-system path of each entry. */
  readonly paths: readonly string[];
  /**
   * What each path holds: the size of a regular file (links followed: this folder is the user's
   * own), `"folder"` for a folder, or `undefined` when nothing usable is there.
   */
  readonly found: readonly (number | "folder" | undefined)[];
  #pool = new HandlePool();

  private constructor(
    layout: FileLayout,
    paths: readonly string[],
    found: (number | "folder" | undefined)[],
  ) {
    this.layout = layout;
    this.paths = paths;
    this.found = found;
  }

  /**
   * Looks at every entry's path (one `stat` each).
   *
   * @param layout the share's files
   * @param paths where each entry is on disk, in layout order
   */
  static async open(layout: FileLayout, paths: readonly string[]): Promise<TreeReader> {
    const found: (number | "folder" | undefined)[] = [];
    for (const path of paths) {
      try {
        const info = await Deno.stat(path);
        found.push(info.isFile ? info.size : info.isDirectory ? "folder" : undefined);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
        found.push(undefined);
      }
    }
    return new TreeReader(layout, paths, found);
  }

  /** True when entry `file` is there as expected: a folder, or a file of the right length. */
  entryMatches(file: number): boolean {
    const entry = this.layout.files[file];
    return entry.dir ? this.found[file] === "folder" : this.found[file] === entry.length;
  }

  /** True when every byte of piece `index` can be read (its files are long enough). */
  pieceReadable(index: number): boolean {
    return this.layout.pieceSpans(index).every((span) => {
      const size = this.found[span.file];
      return typeof size === "number" && size >= span.fileOffset + span.length;
    });
  }

  /** Reads the share's bytes at a position (positional: safe to run concurrently). */
  readonly read: ReadAt = (buf, position) =>
    readSpans(this.layout, buf, position, (span, part) => {
      const path = this.paths[span.file];
      return this.#pool.use(
        path,
        () => openFile(path, "r"),
        (handle) => readFully(handle, part, span.fileOffset),
      );
    });

  /** Closes every open file. */
  async close(): Promise<void> {
    await this.#pool.closeAll();
  }
}
