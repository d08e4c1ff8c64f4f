/**
 * @module units
 * Parsing and formatting of byte sizes, rates and durations given by people.
 * Pure: no I/O.
 */

const SIZE_SUFFIX: Record<string, number> = {
  "": 1,
  B: 1,
  K: 1024,
  KB: 1024,
  KIB: 1024,
  M: 1024 ** 2,
  MB: 1024 ** 2,
  MIB: 1024 ** 2,
  G: 1024 ** 3,
  GB: 1024 ** 3,
  GIB: 1024 ** 3,
};

/**
 * Parses a size such as `256K`, `4M`, `1.5G` or `65536` into bytes (binary multiples).
 *
 * @param text the size as typed
 * @returns a whole number of bytes
 * @throws {RangeError} when the text is not a size
 * @example parseSize("256K") === 262144
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const multiplier = match ? SIZE_SUFFIX[match[2].toUpperCase()] : undefined;
  if (!match || multiplier === undefined) {
    throw new RangeError(`invalid size "${text}" (examples: 65536, 256K, 4M, 1G)`);
  }
  const bytes = Math.round(Number(match[1]) * multiplier);
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`size "${text}" is too large`);
  return bytes;
}

/**
 * Parses a duration such as `90s`, `10m`, `1h` or `1500ms` into milliseconds.
 *
 * @throws {RangeError} when the text is not a duration
 */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!match) throw new RangeError(`invalid duration "${text}" (examples: 90s, 10m, 1h)`);
  const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "s"] ?? 1000;
  return Math.round(Number(match[1]) * unitMs);
}

/** Formats bytes for people: `1.5 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  // Compare against the rounded display value so 1048575 B reads "1.00 MiB", not "1024.0 KiB".
  while (value >= 1023.95 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 9.995 ? 2 : 1)} ${units[unit]}`;
}

/** Formats a duration in seconds for people: `42s`, `3m05s`, `1h02m`. */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

/** Lower-case hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/**
 * Parses lower- or upper-case hex into bytes.
 *
 * @throws {SyntaxError} on an odd length or a non-hex character
 */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new SyntaxError(`invalid hex string "${hex.slice(0, 16)}..."`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** The bytes of `parts`, one after another, in a new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
