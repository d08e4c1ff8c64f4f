/**
 * @module safe_fs
 * File operations under a work folder that never follow a symbolic link found inside it: every
 * name on the way from the work folder down to a file is checked with `lstat` before anything is
 * created or opened, and a link anywhere is refused. A new file is created exclusively
 * (`O_EXCL`: it fails on a link planted since the check), and an opened file is checked to be
 * the very file `lstat` sees at its path (same device and inode) before it is used, so a link
 * swapped in between is caught too. (`O_NOFOLLOW` is passed as well, but Deno resolves links
 * itself when it checks permissions, so it cannot be relied on.) The work folder itself is the
 * user's choice and is taken as given. Does I/O.
 */

import { constants as fsConstants } from "node:fs";
import { join } from "node:path";
import { type FileHandle, openFile } from "./file_io.ts";

/** `O_NOFOLLOW` where the OS has it (0 elsewhere: the `lstat` checks still apply). */
const O_NOFOLLOW: number = fsConstants.O_NOFOLLOW ?? 0;

/** A folder tree under a work folder, handled without following links. */
export class WorkTree {
  /** The work folder. */
  readonly base: string;

  constructor(base: string) {
    this.base = base;
  }

  /** The file-system path of `rel` (names under the work folder). */
  path(rel: readonly string[]): string {
    return join(this.base, ...rel);
  }

  /**
   * What sits at `rel`, checking every folder on the way.
   *
   * @returns its `lstat` info, or `undefined` when it (or a folder on the way) does not exist
   * @throws {Error} `refusing to use PATH: it is a symbolic link` (or `not a folder`) for a link
   *   at `rel` or on the way, or a file where a folder should be
   */
  async probe(rel: readonly string[]): Promise<Deno.FileInfo | undefined> {
    if (!(await this.#checkFolders(rel, false))) return undefined;
    const info = await lstatOrUndefined(this.path(rel));
    if (info?.isSymlink) throw refusal(this.path(rel), "it is a symbolic link");
    return info;
  }

  /**
   * Makes sure `rel` is a real folder, creating it and the folders on the way as needed.
   *
   * @throws {Error} for a symbolic link or a file in the way
   */
  async ensureFolder(rel: readonly string[]): Promise<void> {
    await this.#checkFolders(rel, true);
    await this.#checkFolder(rel, true);
  }

  /**
   * Opens the regular file at `rel` for reading and writing, creating it (and its folders) when
   * missing; a link or anything else there is refused.
   */
  async openReadWrite(rel: readonly string[]): Promise<FileHandle> {
    await this.#checkFolders(rel, true);
    const path = this.path(rel);
    if (!(await lstatOrUndefined(path))) {
      const flags = fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL | O_NOFOLLOW;
      try {
        return await this.#checked(rel, await openFile(path, flags, 0o666));
      } catch (err) {
        if ((err as { code?: string }).code !== "EEXIST") throw err;
        // Something appeared meanwhile: checked below like anything already there.
      }
    }
    return await this.#openExisting(rel, fsConstants.O_RDWR | O_NOFOLLOW);
  }

  /** Opens the regular file at `rel` for reading; a link or anything else there is refused. */
  async openRead(rel: readonly string[]): Promise<FileHandle> {
    if (!(await this.#checkFolders(rel, false))) {
      throw new Deno.errors.NotFound(`${this.path(rel)}: no such file`);
    }
    return await this.#openExisting(rel, fsConstants.O_RDONLY | O_NOFOLLOW);
  }

  /**
   * Creates an empty file at `rel` (and its folders). An empty regular file already there is
   * fine; anything else there is refused.
   *
   * @returns true when the file was created, false when it was already there
   */
  async createEmptyFile(rel: readonly string[]): Promise<boolean> {
    await this.#checkFolders(rel, true);
    const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | O_NOFOLLOW;
    try {
      const handle = await openFile(this.path(rel), flags, 0o666);
      await handle.close();
      return true;
    } catch (err) {
      // node:fs reports errors with Node's codes, not Deno's error classes.
      if ((err as { code?: string }).code !== "EEXIST") throw err;
    }
    const info = await lstatOrUndefined(this.path(rel));
    if (info?.isSymlink) throw refusal(this.path(rel), "it is a symbolic link");
    if (!info?.isFile || info.size !== 0) {
      throw refusal(this.path(rel), "something else is already there; move it away");
    }
    return false;
  }

  /**
   * Moves the file at `from` to `to` (both under the work folder), creating `to`'s folders.
   * Never replaces anything: when `to` exists the move is refused.
   */
  async moveFile(from: readonly string[], to: readonly string[]): Promise<void> {
    const info = await this.probe(from);
    if (!info?.isFile) throw refusal(this.path(from), "it is not a regular file");
    await this.#checkFolders(to, true);
    if (await lstatOrUndefined(this.path(to))) {
      throw new Error(
        `${
          this.path(to)
        } already exists and is not part of this download; move it away or choose another work folder`,
      );
    }
    await Deno.rename(this.path(from), this.path(to));
  }

  /** Opens the existing regular file at `rel` with `flags`, refusing a link there. */
  async #openExisting(rel: readonly string[], flags: number): Promise<FileHandle> {
    const path = this.path(rel);
    const info = await lstatOrUndefined(path);
    if (!info) throw new Deno.errors.NotFound(`${path}: no such file`);
    if (info.isSymlink) throw refusal(path, "it is a symbolic link");
    if (!info.isFile) throw refusal(path, "it is not a regular file");
    let handle: FileHandle;
    try {
      handle = await openFile(path, flags);
    } catch (err) {
      // O_NOFOLLOW on a link fails with ELOOP (where Deno lets it through); say what it means.
      if ((await lstatOrUndefined(path).catch(() => undefined))?.isSymlink) {
        throw refusal(path, "it is a symbolic link");
      }
      throw err;
    }
    return await this.#checked(rel, handle);
  }

  /**
   * Makes sure `handle` is the regular file that sits at `rel` right now (not reached through a
   * link swapped in since the checks); closes it and refuses otherwise.
   */
  async #checked(rel: readonly string[], handle: FileHandle): Promise<FileHandle> {
    const path = this.path(rel);
    try {
      const opened = await handle.stat();
      const there = await lstatOrUndefined(path);
      if (there?.isSymlink) throw refusal(path, "it is a symbolic link");
      if (!opened.isFile() || !there?.isFile) throw refusal(path, "it is not a regular file");
      const sameFile = there.ino === null || there.dev === null ||
        (BigInt(there.ino) === BigInt(opened.ino) && BigInt(there.dev) === BigInt(opened.dev));
      if (!sameFile) throw refusal(path, "it was replaced while being opened");
      return handle;
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /**
   * Checks the folders that lead to `rel` (not `rel` itself), creating missing ones when
   * `create` is set.
   *
   * @returns false when one is missing (and `create` is not set)
   */
  async #checkFolders(rel: readonly string[], create: boolean): Promise<boolean> {
    if (create) await Deno.mkdir(this.base, { recursive: true });
    for (let depth = 1; depth < rel.length; depth++) {
      if (!(await this.#checkFolder(rel.slice(0, depth), create))) return false;
    }
    return true;
  }

  /**
   * Checks (or creates) one folder; returns false when it is missing and not created. Never
   * cached: a folder checked once may have been swapped for a link since.
   */
  async #checkFolder(rel: readonly string[], create: boolean): Promise<boolean> {
    const path = this.path(rel);
    let info = await lstatOrUndefined(path);
    if (!info) {
      if (!create) return false;
      try {
        await Deno.mkdir(path);
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      }
      info = await lstatOrUndefined(path); // whatever won a race is checked like the rest
    }
    if (info?.isSymlink) throw refusal(path, "it is a symbolic link");
    if (!info?.isDirectory) throw refusal(path, "it is not a folder");
    return true;
  }
}

/** `lstat`, or `undefined` when nothing is there. */
export async function lstatOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

function refusal(path: string, why: string): Error {
  return new Error(`refusing to use ${path}: ${why}`);
}
