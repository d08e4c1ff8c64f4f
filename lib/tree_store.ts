/**
 * @module tree_store
 * The data of a directory share in a work folder. While a file is incomplete it lives under
 * `<name>.partial/` (same relative path, full length, pieces written in place); once every piece
 * it touches is verified it is moved to `<name>/` (its final place), and from then on it is only
 * ever read. Bytes of files not selected for download stay under `<name>.partial/`, so they never
 * appear in `<name>/`. Every path under the work folder is checked name by name and no symbolic
 * link is followed ({@linkcode WorkTree}). Does I/O.
 */

import { join } from "node:path";
import { type FileHandle, HandlePool, type ReadAt, readFully, writeFully } from "./file_io.ts";
import type { FileLayout, FileSpan } from "./pieces.ts";
import { WorkTree } from "./safe_fs.ts";
import { readSpans, settleAll } from "./tree_io.ts";

/** Where a file of the share is right now. */
export type FileLocation = "partial" | "final" | "missing";

/** The two folders of a directory share in its work folder, relative to it. */
export interface TreeRoots {
  /** `<name>.partial`: incomplete files, and bytes of unselected files. */
  partial: string;
  /** `<name>`: completed files, empty files and empty folders. */
  final: string;
}

/** What {@linkcode TreeStore.open} found. */
export interface TreeScan {
  partialRootExists: boolean;
  finalRootExists: boolean;
}

/** A directory share's files, split between the partial and the final folder. */
export class TreeStore {
  readonly layout: FileLayout;
  readonly tree: WorkTree;
  readonly roots: TreeRoots;
  readonly readOnly: boolean;
  #where: FileLocation[];
  /** Bytes on disk of each file where it is (what can be read of it). */
  #size: number[];
  #creating = new Map<number, Promise<void>>();
  #pool = new HandlePool();

  private constructor(
    layout: FileLayout,
    tree: WorkTree,
    roots: TreeRoots,
    readOnly: boolean,
    where: FileLocation[],
    size: number[],
  ) {
    this.layout = layout;
    this.tree = tree;
    this.roots = roots;
    this.readOnly = readOnly;
    this.#where = where;
    this.#size = size;
  }

  /**
   * Finds each file of the share in the work folder, checking every name on the way.
   *
   * @throws {Error} for a symbolic link or anything but a folder or regular file on the way, a
   *   file present in both folders, or a completed file of the wrong length
   */
  static async open(
    layout: FileLayout,
    workdir: string,
    options: { name: string; readOnly?: boolean },
  ): Promise<{ store: TreeStore; scan: TreeScan }> {
    const tree = new WorkTree(workdir);
    const roots = { partial: `${options.name}.partial`, final: options.name };
    const scan = {
      partialRootExists: await folderExists(tree, roots.partial),
      finalRootExists: await folderExists(tree, roots.final),
    };
    const where: FileLocation[] = [];
    const size: number[] = [];
    for (const file of layout.files) {
      where.push("missing");
      size.push(0);
      if (file.length === 0) continue; // nothing to read: placed when the share is finalized
      const partial = scan.partialRootExists
        ? await tree.probe([roots.partial, ...file.path])
        : undefined;
      const final = scan.finalRootExists
        ? await tree.probe([roots.final, ...file.path])
        : undefined;
      const shown = tree.path([roots.final, ...file.path]);
      if (partial && final) {
        throw new Error(
          `${shown} already exists and is not part of this download; move it away or choose another work folder`,
        );
      }
      const found = partial ?? final;
      if (!found) continue;
      const at = tree.path([partial ? roots.partial : roots.final, ...file.path]);
      if (!found.isFile) throw new Error(`refusing to use ${at}: it is not a regular file`);
      if (final && found.size !== file.length) {
        // A completed file is never written into: it may be someone else's.
        throw new Error(
          `${shown} exists but does not match ${options.name} (${found.size} bytes, expected ${file.length}); move it away or choose another work folder`,
        );
      }
      where[file.index] = partial ? "partial" : "final";
      size[file.index] = found.size;
    }
    const store = new TreeStore(layout, tree, roots, options.readOnly ?? false, where, size);
    return { store, scan };
  }

  /** Where file `file` is now. */
  location(file: number): FileLocation {
    return this.#where[file];
  }

  /** The file-system path of file `file` where it is (its final path when missing). */
  pathOf(file: number): string {
    return this.tree.path(this.#rel(file, this.#where[file] === "partial" ? "partial" : "final"));
  }

  /** The file-system path a file has once placed. */
  finalPathOf(file: number): string {
    return this.tree.path(this.#rel(file, "final"));
  }

  /** True when every byte of `[offset, offset + length)` of the share is on disk to be read. */
  canRead(offset: number, length: number): boolean {
    return this.layout.spans(offset, length).every((span) =>
      this.#where[span.file] !== "missing" &&
      this.#size[span.file] >= span.fileOffset + span.length
    );
  }

  /**
   * Brings every partial file to its full length (after the first verification, which needed
   * the lengths found on disk to tell which pieces could be there).
   */
  async fixLengths(): Promise<void> {
    if (this.readOnly) return;
    for (const file of this.layout.files) {
      if (this.#where[file.index] !== "partial" || this.#size[file.index] === file.length) continue;
      await this.#usePartial(file.index, (h) => h.truncate(file.length), true);
      this.#size[file.index] = file.length;
    }
  }

  /** Reads the share's bytes at a position (positional: safe to run concurrently). */
  readonly read: ReadAt = (buf, position) =>
    readSpans(this.layout, buf, position, (span, part) => {
      const where = this.#where[span.file];
      if (where === "missing") {
        throw new RangeError(`${this.pathOf(span.file)} is not there yet`);
      }
      return this.#use(span.file, where, (h) => readFully(h, part, span.fileOffset), false);
    });

  /**
   * Writes verified share bytes at `position`. Parts that fall in a completed file are not
   * written but compared with what is there: a completed file is never modified.
   *
   * @throws {Error} when a completed file's bytes differ (it was changed since)
   */
  async write(data: Uint8Array, position: number): Promise<void> {
    if (this.readOnly) throw new Error("this share was opened read-only");
    await settleAll(
      this.layout.spans(position, data.length).map((span) =>
        this.#writePart(span, data.subarray(span.rangeOffset, span.rangeOffset + span.length))
      ),
    );
  }

  async #writePart(span: FileSpan, part: Uint8Array): Promise<void> {
    if (this.#where[span.file] === "final") {
      const onDisk = new Uint8Array(part.length);
      let same = true;
      try {
        await this.#use(span.file, "final", (h) => readFully(h, onDisk, span.fileOffset), false);
        same = onDisk.every((b, i) => b === part[i]);
      } catch {
        same = false;
      }
      if (!same) {
        throw new Error(
          `${
            this.finalPathOf(span.file)
          } was changed after it was completed; move it away or choose another work folder`,
        );
      }
      return;
    }
    await this.#createPartial(span.file);
    await this.#usePartial(span.file, (h) => writeFully(h, part, span.fileOffset), true);
  }

  /** Makes every write so far durable. */
  async sync(): Promise<void> {
    await this.#pool.syncAll();
  }

  /**
   * Moves a complete file from the partial folder to its final place (never replacing anything
   * there). The caller makes sure every piece it touches is verified and recorded first.
   *
   * @returns the final path
   */
  async place(file: number): Promise<string> {
    if (this.#where[file] !== "partial") throw new Error(`file ${file} is not in the partial area`);
    await this.#pool.release(this.tree.path(this.#rel(file, "partial")));
    await this.tree.moveFile(this.#rel(file, "partial"), this.#rel(file, "final"));
    this.#where[file] = "final";
    return this.finalPathOf(file);
  }

  /**
   * Creates an empty file or an empty folder at its final place (an identical one may be there).
   *
   * @returns its path, and whether it was created now
   */
  async placeEmpty(file: number): Promise<{ path: string; created: boolean }> {
    const entry = this.layout.files[file];
    if (entry.length !== 0) throw new Error(`file ${file} is not empty`);
    let created = false;
    if (entry.dir) await this.tree.ensureFolder(this.#rel(file, "final"));
    else created = await this.tree.createEmptyFile(this.#rel(file, "final"));
    this.#where[file] = "final";
    return { path: this.finalPathOf(file), created };
  }

  /** Creates the final folder itself (a share may hold nothing at all). */
  async ensureFinalRoot(): Promise<void> {
    await this.tree.ensureFolder([this.roots.final]);
  }

  /**
   * Removes the partial folder once nothing is left in it but empty folders; anything else found
   * there (which this program did not put) is left alone, and so is its folder.
   */
  async removePartialRoot(): Promise<void> {
    const root = this.tree.path([this.roots.partial]);
    const removeEmpty = async (path: string): Promise<void> => {
      let info: Deno.FileInfo;
      try {
        info = await Deno.lstat(path);
      } catch {
        return;
      }
      if (!info.isDirectory) return;
      for await (const entry of Deno.readDir(path)) {
        if (entry.isDirectory) await removeEmpty(join(path, entry.name));
      }
      await Deno.remove(path).catch(() => {}); // not empty: kept
    };
    await removeEmpty(root);
  }

  /** Syncs and closes every open file. */
  async close(): Promise<void> {
    await this.#pool.closeAll();
  }

  #rel(file: number, root: "partial" | "final"): string[] {
    return [this.roots[root], ...this.layout.files[file].path];
  }

  /** Creates file `file` in the partial folder at its full length, once. */
  #createPartial(file: number): Promise<void> {
    let creating = this.#creating.get(file);
    if (!creating && this.#where[file] !== "missing") return Promise.resolve();
    if (!creating) {
      creating = (async () => {
        const length = this.layout.files[file].length;
        this.#where[file] = "partial";
        try {
          await this.#usePartial(file, (h) => h.truncate(length), true);
        } catch (err) {
          this.#where[file] = "missing";
          throw err;
        }
        this.#size[file] = length;
      })().finally(() => this.#creating.delete(file));
      this.#creating.set(file, creating);
    }
    return creating;
  }

  #usePartial<T>(file: number, fn: (h: FileHandle) => Promise<T>, write: boolean): Promise<T> {
    return this.#use(file, "partial", fn, write);
  }

  #use<T>(
    file: number,
    where: "partial" | "final",
    fn: (h: FileHandle) => Promise<T>,
    write: boolean,
  ): Promise<T> {
    const rel = this.#rel(file, where);
    const opener = where === "partial" && !this.readOnly
      ? () => this.tree.openReadWrite(rel)
      : () => this.tree.openRead(rel);
    return this.#pool.use(this.tree.path(rel), opener, fn, { write });
  }
}

async function folderExists(tree: WorkTree, name: string): Promise<boolean> {
  const info = await tree.probe([name]);
  if (!info) return false;
  if (!info.isDirectory) {
    throw new Error(`refusing to use ${tree.path([name])}: it is not a folder`);
  }
  return true;
}
