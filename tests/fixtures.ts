/**
 * Tiny in-memory fixtures for unit tests of the storage and peer modules: deterministic bytes,
 * shares with 1 KiB pieces (so every multi-piece path runs in milliseconds), a recording event
 * sink and self-removing temp folders.
 */

import type { EventSink, P2PEvent } from "../lib/events.ts";
import { sha256 } from "../lib/hash.ts";
import { buildMetadata, type Metadata, MIN_PIECE_LENGTH } from "../lib/metadata.ts";
import { toHex } from "../lib/units.ts";

/** Piece length of every fixture share. */
export const PIECE = MIN_PIECE_LENGTH;

/** Deterministic bytes that differ from piece to piece (mulberry32). */
export function fixtureBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let a = seed >>> 0;
  for (let i = 0; i < length; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (t ^ (t >>> 14)) & 0xff;
  }
  return out;
}

/** A share: its metadata and the bytes it describes. */
export interface Share {
  meta: Metadata;
  data: Uint8Array;
}

/** Builds a share of `length` fixture bytes with 1 KiB pieces. */
export async function makeShare(
  length: number,
  options: { name?: string; seed?: number } = {},
): Promise<Share> {
  const data = fixtureBytes(length, options.seed ?? 1);
  const pieces: string[] = [];
  for (let offset = 0; offset < length; offset += PIECE) {
    pieces.push(toHex(await sha256(data.subarray(offset, offset + PIECE))));
  }
  const name = options.name ?? "data.bin";
  return { meta: await buildMetadata({ name, length, pieceLength: PIECE, pieces }), data };
}

/** The bytes of piece `index` of a share. */
export function pieceOf(share: Share, index: number): Uint8Array {
  return share.data.slice(index * PIECE, Math.min((index + 1) * PIECE, share.data.length));
}

/** An EventSink that records every event. */
export function recordingSink(): EventSink & { events: P2PEvent[] } {
  const events: P2PEvent[] = [];
  return { events, emit: (event) => void events.push(event) };
}

/** A temp folder removed on dispose. */
export async function tempDir(prefix = "p2p_test_"): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

/** True when something (even a dangling link) exists at `path`. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
