/**
 * @module paths
 * The one validator for names that come from untrusted metadata, so that nothing a stranger
 * writes into a `.p2pmeta` can make us write outside the chosen work folder, on any OS.
 * Pure: no I/O.
 */

/** Longest single name we accept, in UTF-8 bytes (the common file-system limit). */
export const MAX_NAME_BYTES = 255;

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
