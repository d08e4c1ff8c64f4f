/**
 * @module metadata
 * Builds, encodes, parses and validates `.p2pmeta` files, and computes the info hash from a
 * canonical encoding of the `info` section. A share is one file, or (with `info.files`) a folder
 * whose files are laid end to end in a canonical order. Pure: bytes and values in and out, no I/O.
 *
 * Canonical encoding (what the info hash is taken over): the `info` object as JSON with object
 * keys sorted by UTF-16 code unit (as RFC 8785 requires), no whitespace, integers only, strings escaped as JSON.stringify
 * does, encoded as UTF-8. For the values `info` may hold this equals RFC 8785 (JCS), so any
 * machine and any language computes the same info hash for the same file.
 */

import { MetadataError } from "./errors.ts";
import { sha256 } from "./hash.ts";
import {
  comparePaths,
  displayPath,
  pathKey,
  unsafePathReason,
  unsafeSegmentReason,
} from "./paths.ts";
import { toHex } from "./units.ts";

/** The metadata format this program writes and reads. */
export const FORMAT_VERSION = 1;
/** Smallest piece length accepted in metadata (tiny pieces keep tests fast). */
export const MIN_PIECE_LENGTH = 1024;
/** Largest piece length accepted: one piece is held in memory while it is verified. */
export const MAX_PIECE_LENGTH = 64 * 1024 * 1024;
/** Bounds of the automatic piece length. */
export const AUTO_MIN_PIECE_LENGTH = 16 * 1024;
export const AUTO_MAX_PIECE_LENGTH = 16 * 1024 * 1024;
/** The automatic piece length aims at no more pieces than this. */
export const AUTO_TARGET_PIECES = 2000;
/** Largest metadata file we read: bounds memory for a hostile file. */
export const MAX_METADATA_BYTES = 32 * 1024 * 1024;
/** Most trackers listed in one metadata file. */
export const MAX_TRACKERS = 64;
/** Longest comment kept. */
export const MAX_COMMENT_CHARS = 4096;

/** Most entries (files and empty folders) in one directory share. */
export const MAX_FILES = 1_000_000;

const INFO_KEYS = new Set(["name", "length", "pieceLength", "pieces", "files", "private", "salt"]);
const FILE_KEYS = new Set(["path", "length", "dir"]);

/**
 * One entry of a directory share: a file, or an empty folder (`dir: true`, length 0). Folders
 * that hold something are implied by the paths under them and are not listed.
 */
export interface FileEntry {
  /** Names from the share's top folder down, e.g. `["photos", "a.jpg"]`. */
  path: string[];
  /** Length in bytes (0 for an empty file or folder). */
  length: number;
  /** Present (and `true`) only for an empty folder. */
  dir?: true;
}

/** The hashed part of the metadata: what is shared. */
export interface Info {
  /** File name (single-file share), or the top folder of a directory share. */
  name: string;
  /** Total length in bytes (for a folder: the sum of its files' lengths). */
  length: number;
  /** Length of every piece but the last, a power of two. */
  pieceLength: number;
  /** SHA-256 of every piece, lower-case hex, in order. */
  pieces: string[];
  /**
   * A private share (`create --private`): peers always encrypt, and only holders of this
   * metadata can connect at all. Part of `info`, so it cannot be stripped without changing the
   * info hash.
   */
  private?: true;
  /**
   * 32 random bytes (hex) of a private share: nobody can rebuild `info` (and so the share key)
   * from the file alone.
   */
  salt?: string;
  /**
   * Present only for a directory share: its files and empty folders in canonical order
   * ({@linkcode comparePaths}); pieces run over the files concatenated in this order.
   */
  files?: FileEntry[];
}

/** A parsed, validated `.p2pmeta` file. */
export interface Metadata {
  version: number;
  info: Info;
  /** Lower-case hex SHA-256 of the canonical encoding of `info`. */
  infoHash: string;
  trackers: string[];
  comment?: string;
  createdBy?: string;
  creationDate?: string;
}

/** Options for {@linkcode buildMetadata}. */
export interface BuildOptions {
  trackers?: string[];
  comment?: string;
  createdBy?: string;
  creationDate?: string;
}

/**
 * Picks the automatic piece length for a share of `length` bytes: the smallest power of two
 * between 16 KiB and 16 MiB giving no more than about 2000 pieces.
 */
export function autoPieceLength(length: number): number {
  let pieceLength = AUTO_MIN_PIECE_LENGTH;
  while (
    pieceLength < AUTO_MAX_PIECE_LENGTH && Math.ceil(length / pieceLength) > AUTO_TARGET_PIECES
  ) {
    pieceLength *= 2;
  }
  return pieceLength;
}

/** True when `info` describes a folder rather than one file. */
export function isDirectoryShare(info: Info): boolean {
  return info.files !== undefined;
}

/**
 * The entries of a share as a list: a directory share's `files`, or for a single-file share one
 * entry whose path is the file's name.
 */
export function shareEntries(info: Info): FileEntry[] {
  return info.files ?? [{ path: [info.name], length: info.length }];
}

/** Sorts entries into the canonical order the metadata requires (in place; also returned). */
export function sortEntries(entries: FileEntry[]): FileEntry[] {
  return entries.sort((a, b) => comparePaths(a.path, b.path));
}

/** Number of pieces of a share of `length` bytes. Empty shares have none. */
export function pieceCountFor(length: number, pieceLength: number): number {
  return Math.ceil(length / pieceLength);
}

/** Encodes a JSON value canonically (sorted keys, no whitespace). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record).filter((k) => record[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`).join(",")}}`;
  }
  if (value === undefined) throw new TypeError("canonical encoding has no undefined");
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw new RangeError(`canonical encoding allows integers only, got ${value}`);
  }
  return JSON.stringify(value);
}

/** Computes the info hash (hex) of an `info` section. */
export async function computeInfoHash(info: Info): Promise<string> {
  return toHex(await sha256(new TextEncoder().encode(canonicalJson(info))));
}

/**
 * Builds metadata from the piece hashes of a file.
 *
 * @param info name, length, piece length and piece hashes
 * @param options trackers, comment, creator and date (outside `info`, so not hashed)
 * @throws {MetadataError} when the info is inconsistent
 */
export async function buildMetadata(info: Info, options: BuildOptions = {}): Promise<Metadata> {
  validateInfo(info);
  const meta: Metadata = {
    version: FORMAT_VERSION,
    info,
    infoHash: await computeInfoHash(info),
    trackers: options.trackers ?? [],
  };
  if (options.comment !== undefined) meta.comment = options.comment;
  if (options.createdBy !== undefined) meta.createdBy = options.createdBy;
  if (options.creationDate !== undefined) meta.creationDate = options.creationDate;
  return meta;
}

/** Serialises metadata as the JSON text of a `.p2pmeta` file (pretty, stable key order). */
export function encodeMetadata(meta: Metadata): string {
  const out: Record<string, unknown> = {
    version: meta.version,
    infoHash: meta.infoHash,
  };
  if (meta.trackers.length > 0) out.trackers = meta.trackers;
  if (meta.comment !== undefined) out.comment = meta.comment;
  if (meta.createdBy !== undefined) out.createdBy = meta.createdBy;
  if (meta.creationDate !== undefined) out.creationDate = meta.creationDate;
  const { name, length, pieceLength, files, pieces } = meta.info;
  const privacy = meta.info.private ? { private: true, salt: meta.info.salt } : {};
  // JSON.stringify puts each piece hash on its own line; each file entry gets one line too.
  out.info = files === undefined
    ? { name, length, pieceLength, ...privacy, pieces }
    : { name, length, pieceLength, ...privacy, files: FILES_MARKER, pieces };
  const text = JSON.stringify(out, null, 2);
  if (files === undefined) return `${text}\n`;
  const list = files.length === 0
    ? "[]"
    : `[\n${files.map((f) => `      ${JSON.stringify(f)}`).join(",\n")}\n    ]`;
  return `${text.replace(JSON.stringify(FILES_MARKER), () => list)}\n`;
}

/** Stands in for the file list while the rest of the metadata is laid out. */
const FILES_MARKER = "\u0000files\u0000";

/**
 * Parses and validates the text of a `.p2pmeta` file, recomputing the info hash.
 *
 * @param text the file's contents
 * @returns validated metadata
 * @throws {MetadataError} naming what is wrong
 */
export async function parseMetadata(text: string): Promise<Metadata> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new MetadataError(`not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (!isRecord(raw)) throw new MetadataError("top level is not a JSON object");
  if (raw.version !== FORMAT_VERSION) {
    throw new MetadataError(
      `unsupported format version ${
        JSON.stringify(raw.version)
      } (this program reads ${FORMAT_VERSION})`,
    );
  }
  if (!isRecord(raw.info)) throw new MetadataError(`missing "info" object`);
  // Every key of info is part of what the info hash promises: an unknown one is refused
  // rather than dropped, so two different info sections can never share one hash.
  for (const key of Object.keys(raw.info)) {
    if (!INFO_KEYS.has(key)) throw new MetadataError(`unknown field "info.${key}"`);
  }
  const info: Info = {
    name: expectString(raw.info.name, "info.name"),
    length: expectInteger(raw.info.length, "info.length"),
    pieceLength: expectInteger(raw.info.pieceLength, "info.pieceLength"),
    pieces: expectStringArray(raw.info.pieces, "info.pieces"),
  };
  if (raw.info.files !== undefined) info.files = parseFiles(raw.info.files);
  if (raw.info.private !== undefined) {
    if (raw.info.private !== true) {
      throw new MetadataError(`"info.private" must be true when present`);
    }
    info.private = true;
  }
  if (raw.info.salt !== undefined) info.salt = expectString(raw.info.salt, "info.salt");
  if (info.salt !== undefined && !/^[0-9a-f]{64}$/.test(info.salt)) {
    throw new MetadataError(`"info.salt" must be 64 lower-case hex digits`);
  }
  validateInfo(info);
  const infoHash = await computeInfoHash(info);
  if (raw.infoHash !== undefined && raw.infoHash !== infoHash) {
    throw new MetadataError(`info hash ${String(raw.infoHash)} does not match its info section`);
  }
  const trackers = raw.trackers === undefined ? [] : expectStringArray(raw.trackers, "trackers");
  if (trackers.length > MAX_TRACKERS) {
    throw new MetadataError(`too many trackers (${trackers.length} > ${MAX_TRACKERS})`);
  }
  const meta: Metadata = { version: FORMAT_VERSION, info, infoHash, trackers };
  if (typeof raw.comment === "string") meta.comment = raw.comment.slice(0, MAX_COMMENT_CHARS);
  if (typeof raw.createdBy === "string") meta.createdBy = raw.createdBy.slice(0, 256);
  if (typeof raw.creationDate === "string") meta.creationDate = raw.creationDate.slice(0, 64);
  return meta;
}

/**
 * Checks that an `info` section is consistent and safe to act on.
 *
 * @throws {MetadataError} naming the first problem found
 */
export function validateInfo(info: Info): void {
  const reason = unsafeSegmentReason(info.name);
  if (reason) throw new MetadataError(`unsafe name ${JSON.stringify(info.name)}: ${reason}`);
  if (!Number.isSafeInteger(info.length) || info.length < 0) {
    throw new MetadataError(`invalid length ${info.length}`);
  }
  if (info.files !== undefined) validateFiles(info);
  const pl = info.pieceLength;
  if (
    !Number.isSafeInteger(pl) || pl < MIN_PIECE_LENGTH || pl > MAX_PIECE_LENGTH ||
    (pl & (pl - 1)) !== 0
  ) {
    throw new MetadataError(
      `invalid piece length ${pl} (a power of two from ${MIN_PIECE_LENGTH} to ${MAX_PIECE_LENGTH})`,
    );
  }
  const expected = pieceCountFor(info.length, pl);
  if (info.pieces.length !== expected) {
    throw new MetadataError(
      `piece count ${info.pieces.length} does not match length ${info.length} (expected ${expected})`,
    );
  }
  for (let i = 0; i < info.pieces.length; i++) {
    if (!/^[0-9a-f]{64}$/.test(info.pieces[i])) {
      throw new MetadataError(`piece ${i} hash is not 64 lower-case hex digits`);
    }
  }
}

/**
 * Checks the file list of a directory share: every path safe, no two paths that one file system
 * would confuse, no file also used as a folder, canonical order, lengths adding up.
 *
 * @throws {MetadataError} naming the first bad path
 */
function validateFiles(info: Info): void {
  const files = info.files ?? [];
  if (files.length > MAX_FILES) {
    throw new MetadataError(`too many files (${files.length} > ${MAX_FILES})`);
  }
  const prefixBytes = new TextEncoder().encode(info.name).length + 1;
  let total = 0;
  for (const entry of files) {
    const reason = unsafePathReason(entry.path, { prefixBytes });
    if (reason) throw new MetadataError(`unsafe path ${displayPath(entry.path)}: ${reason}`);
    if (!Number.isSafeInteger(entry.length) || entry.length < 0) {
      throw new MetadataError(`invalid length ${entry.length} of ${displayPath(entry.path)}`);
    }
    if (entry.dir !== undefined && entry.dir !== true) {
      throw new MetadataError(`"dir" of ${displayPath(entry.path)} must be true when present`);
    }
    if (entry.dir && entry.length !== 0) {
      throw new MetadataError(
        `empty folder ${displayPath(entry.path)} has length ${entry.length}, expected 0`,
      );
    }
    total += entry.length;
    if (!Number.isSafeInteger(total)) throw new MetadataError("file lengths add up past 2^53");
  }
  // Same key: the same file on Windows or macOS (case, Unicode normalisation).
  const byKey = new Map<string, FileEntry>();
  for (const entry of files) {
    const key = pathKey(entry.path);
    const seen = byKey.get(key);
    if (seen) {
      const same = seen.path.length === entry.path.length &&
        seen.path.every((s, i) => s === entry.path[i]);
      throw new MetadataError(
        same
          ? `duplicate path ${displayPath(entry.path)}`
          : `paths ${displayPath(seen.path)} and ${
            displayPath(entry.path)
          } differ only in case or Unicode form`,
      );
    }
    byKey.set(key, entry);
  }
  // Every folder a path runs through must not also be a file or an "empty" folder.
  for (const entry of files) {
    for (let depth = 1; depth < entry.path.length; depth++) {
      const holder = byKey.get(pathKey(entry.path.slice(0, depth)));
      if (!holder) continue;
      throw new MetadataError(
        holder.dir
          ? `empty folder ${displayPath(holder.path)} holds ${displayPath(entry.path)}`
          : `path ${displayPath(holder.path)} is a file and also a folder (of ${
            displayPath(entry.path)
          })`,
      );
    }
  }
  for (let i = 1; i < files.length; i++) {
    if (comparePaths(files[i - 1].path, files[i].path) >= 0) {
      throw new MetadataError(
        `files not in canonical order: ${displayPath(files[i - 1].path)} comes before ${
          displayPath(files[i].path)
        }`,
      );
    }
  }
  if (total !== info.length) {
    throw new MetadataError(`file lengths add up to ${total}, not info.length ${info.length}`);
  }
}

/**
 * Reads `info.files` from untrusted JSON into entries with only the known keys.
 *
 * @throws {MetadataError} naming the first malformed entry
 */
function parseFiles(value: unknown): FileEntry[] {
  if (!Array.isArray(value)) throw new MetadataError(`"info.files" must be an array`);
  if (value.length > MAX_FILES) {
    throw new MetadataError(`too many files (${value.length} > ${MAX_FILES})`);
  }
  return value.map((item, i) => {
    const field = `info.files[${i}]`;
    if (!isRecord(item)) throw new MetadataError(`"${field}" must be an object`);
    for (const key of Object.keys(item)) {
      if (!FILE_KEYS.has(key)) throw new MetadataError(`unknown field "${field}.${key}"`);
    }
    const path = item.path;
    if (!Array.isArray(path) || path.some((s) => typeof s !== "string")) {
      throw new MetadataError(
        `"${field}.path" must be an array of names, got ${
          JSON.stringify(path)?.slice(0, 200) ?? "nothing"
        }`,
      );
    }
    const entry: FileEntry = {
      path: path as string[],
      length: expectInteger(item.length, `${field}.length`),
    };
    if (item.dir !== undefined) {
      if (item.dir !== true) {
        throw new MetadataError(
          `"${field}.dir" of ${displayPath(entry.path)} must be true when present`,
        );
      }
      entry.dir = true;
    }
    return entry;
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function expectString(value: unknown, field: string): string {
  if (typeof value !== "string") throw new MetadataError(`"${field}" must be a string`);
  return value;
}

function expectInteger(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new MetadataError(`"${field}" must be an integer`);
  }
  return value;
}

function expectStringArray(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    throw new MetadataError(`"${field}" must be an array of strings`);
  }
  return value as string[];
}
