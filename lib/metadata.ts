/**
 * @module metadata
 * Builds, encodes, parses and validates `.p2pmeta` files, and computes the info hash from a
 * canonical encoding of the `info` section. Pure: bytes and values in and out, no I/O.
 *
 * Canonical encoding (what the info hash is taken over): the `info` object as JSON with object
 * keys sorted by UTF-16 code unit (as RFC 8785 requires), no whitespace, integers only, strings escaped as JSON.stringify
 * does, encoded as UTF-8. For the values `info` may hold this equals RFC 8785 (JCS), so any
 * machine and any language computes the same info hash for the same file.
 */

import { MetadataError } from "./errors.ts";
import { sha256 } from "./hash.ts";
import { unsafeSegmentReason } from "./paths.ts";
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

const INFO_KEYS = new Set(["name", "length", "pieceLength", "pieces"]);

/** The hashed part of the metadata: what is shared. */
export interface Info {
  /** File name (single-file share), later the top folder of a directory share. */
  name: string;
  /** Total length in bytes. */
  length: number;
  /** Length of every piece but the last, a power of two. */
  pieceLength: number;
  /** SHA-256 of every piece, lower-case hex, in order. */
  pieces: string[];
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
  out.info = meta.info; // JSON.stringify puts each piece hash on its own line
  return `${JSON.stringify(out, null, 2)}\n`;
}

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
  if ("files" in raw.info) {
    throw new MetadataError("directory shares are not supported by this version");
  }
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
