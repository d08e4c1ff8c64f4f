/**
 * @module paths
 * The one validator for names and paths that come from untrusted metadata, so that nothing a
 * stranger writes into a `.p2pmeta` can make us write outside the chosen work folder, on any OS;
 * plus the canonical order of paths in a directory share and the key that finds paths one
 * file system would confuse. Pure: no I/O.
 */

/** Longest single name we accept, in UTF-8 bytes (the common file-system limit). */
export const MAX_NAME_BYTES = 255;
/**
 * Longest path we accept, in UTF-8 bytes, counted as `<name>/<segment>/.../<segment>` (what is
 * created under the work folder): Linux's PATH_MAX.
 */
export const MAX_PATH_BYTES = 4096;

const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i;

/**
 * Checks one path segment (a file or folder name) from metadata.
 *
 * @param name the segment
 * @returns a reason it is unsafe, or `undefined` when it is safe
 */
export function unsafeSegmentReason(name: string): string | undefined {
  if (name.length === 0) return "empty name";
  if (name === "." || name === "..") return `"${name}" segment`;
  // A lone surrogate has no UTF-8 form: two such names could land on one file.
  if (!name.isWellFormed()) return "name is not valid Unicode";
  // deno-lint-ignore no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(name)) return "control character in name";
  if (name.includes("/") || name.includes("\\")) return "path separator in name";
  if (/^[a-zA-Z]:/.test(name)) return "drive letter";
  if (/[<>:"|?*]/.test(name)) return "character not allowed on Windows";
  if (WINDOWS_RESERVED.test(name)) return "name reserved on Windows";
  if (/[. ]$/.test(name)) return "name ending in a dot or space";
  if (new TextEncoder().encode(name).length > MAX_NAME_BYTES) {
    return `name longer than ${MAX_NAME_BYTES} bytes`;
  }
  return undefined;
}

/**
 * Checks one path of a directory share: a list of segments under the share's top folder.
 *
 * @param segments the path's names, outermost first
 * @param options `prefixBytes`: UTF-8 bytes of what comes before the path (`<name>/`), counted
 *   towards {@linkcode MAX_PATH_BYTES}
 * @returns a reason it is unsafe, or `undefined` when it is safe
 */
export function unsafePathReason(
  segments: readonly string[],
  options: { prefixBytes?: number } = {},
): string | undefined {
  if (segments.length === 0) return "empty path";
  const first = segments[0];
  if ((first === "" && segments.length > 1) || /^[/\\]/.test(first)) return "absolute path";
  let bytes = options.prefixBytes ?? 0;
  for (const segment of segments) {
    if (segment === "") return "empty segment";
    if (/^[a-zA-Z]:/.test(segment)) return "drive letter";
    if (segment.includes("\\")) return "backslash in name";
    if (segment.includes("/")) return "slash inside a name";
    // C1 controls too: some terminals take U+009B as the start of an escape sequence.
    if (/[\u0080-\u009f]/.test(segment)) return "control character in name";
    const reason = unsafeSegmentReason(segment);
    if (reason) return reason;
    bytes += utf8Length(segment) + 1;
  }
  if (bytes - 1 > MAX_PATH_BYTES) return `path longer than ${MAX_PATH_BYTES} bytes`;
  return undefined;
}

/**
 * Orders two names by their UTF-8 bytes (the same as by Unicode code points), the order every
 * language can reproduce. JavaScript's `<` compares UTF-16 code units, which differs for
 * characters above U+FFFF, so those are remapped before comparing.
 *
 * @returns negative, zero or positive, like a sort comparator
 */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/** Orders two paths segment by segment with {@linkcode compareNames}; a prefix comes first. */
export function comparePaths(a: readonly string[], b: readonly string[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const order = compareNames(a[i], b[i]);
    if (order !== 0) return order;
  }
  return a.length - b.length;
}

/**
 * The key under which a case-insensitive or normalising file system (Windows, macOS) would
 * store a path: NFC-normalised, lower-cased, segments joined by `/`. Two paths with one key
 * would overwrite each other there.
 */
export function pathKey(segments: readonly string[]): string {
  return segments.map((s) => s.normalize("NFC").toLowerCase()).join("/");
}

/** Longest path shown in a message before it is cut (the message stays one readable line). */
const DISPLAY_CHARS = 200;

/**
 * A path for messages: segments joined by `/`, quoted and escaped like JSON so control
 * characters can never break the line or reach the terminal, cut when very long.
 */
export function displayPath(segments: readonly string[]): string {
  const joined = segments.join("/");
  const cut = joined.length > DISPLAY_CHARS ? `${joined.slice(0, DISPLAY_CHARS)}…` : joined;
  // C1 controls are escaped too, which JSON.stringify does not do.
  return JSON.stringify(cut).replace(
    /[\u0080-\u009f]/g,
    (c) => `\\u00${c.charCodeAt(0).toString(16)}`,
  );
}

function utf8Length(text: string): number {
  let bytes = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return bytes;
}

/** Maps a UTF-16 code unit so that numeric order equals code point order. */
function codePointRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000; // surrogates: above U+FFFF
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}
