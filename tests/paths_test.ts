import assert from "node:assert/strict";
import { MAX_NAME_BYTES, unsafeSegmentReason } from "../lib/paths.ts";

/** [name, the reason `unsafeSegmentReason` must give] */
const UNSAFE: [string, string][] = [
  // empty
  ["", "empty name"],
  // traversal segments
  [".", `"." segment`],
  ["..", `".." segment`],
  // control characters, NUL included
  ["\u0000", "control character in name"],
  ["a\u0000b", "control character in name"],
  ["file.txt\u0000.jpg", "control character in name"],
  ["\u0001", "control character in name"],
  ["tab\there", "control character in name"],
  ["line\nbreak", "control character in name"],
  ["carriage\rreturn", "control character in name"],
  ["escape\u001b[31m", "control character in name"],
  ["unit\u001fsep", "control character in name"],
  ["delete\u007f", "control character in name"],
  // path separators
  ["/", "path separator in name"],
  ["/etc", "path separator in name"],
  ["a/b", "path separator in name"],
  ["../etc/passwd", "path separator in name"],
  ["dir/", "path separator in name"],
  ["\\", "path separator in name"],
  ["a\\b", "path separator in name"],
  ["..\\windows", "path separator in name"],
  ["\\\\server\\share", "path separator in name"],
  // drive letters
  ["C:", "drive letter"],
  ["c:", "drive letter"],
  ["C:file.txt", "drive letter"],
  ["z:evil", "drive letter"],
  // other characters Windows refuses (":" also opens alternate data streams)
  ["file.txt:stream", "character not allowed on Windows"],
  ["a<b", "character not allowed on Windows"],
  ["a>b", "character not allowed on Windows"],
  ['say "hi"', "character not allowed on Windows"],
  ["a|b", "character not allowed on Windows"],
  ["what?", "character not allowed on Windows"],
  ["*.txt", "character not allowed on Windows"],
  // names Windows reserves for devices, any case, with or without an extension
  ["CON", "name reserved on Windows"],
  ["con", "name reserved on Windows"],
  ["PRN", "name reserved on Windows"],
  ["AUX", "name reserved on Windows"],
  ["NUL", "name reserved on Windows"],
  ["nul", "name reserved on Windows"],
  ["NUL.txt", "name reserved on Windows"],
  ["con.tar.gz", "name reserved on Windows"],
  ["COM1", "name reserved on Windows"],
  ["com9", "name reserved on Windows"],
  ["COM0", "name reserved on Windows"],
  ["COM¹", "name reserved on Windows"],
  ["LPT1", "name reserved on Windows"],
  ["lpt9.txt", "name reserved on Windows"],
  ["LpT³.log", "name reserved on Windows"],
  ["CON.", "name reserved on Windows"],
  // trailing dot or space (Windows strips them, so two names would map to one file)
  ["file.", "name ending in a dot or space"],
  ["file ", "name ending in a dot or space"],
  ["file. ", "name ending in a dot or space"],
  ["...", "name ending in a dot or space"],
  [" ", "name ending in a dot or space"],
  ["aux ", "name ending in a dot or space"],
  // overlong (bytes, not characters)
  ["a".repeat(MAX_NAME_BYTES + 1), `name longer than ${MAX_NAME_BYTES} bytes`],
  ["é".repeat(128), `name longer than ${MAX_NAME_BYTES} bytes`],
  ["日".repeat(86), `name longer than ${MAX_NAME_BYTES} bytes`],
  ["😀".repeat(64), `name longer than ${MAX_NAME_BYTES} bytes`],
  ["😀".repeat(63) + "abcd", `name longer than ${MAX_NAME_BYTES} bytes`],
];

const SAFE: string[] = [
  "a",
  "file.txt",
  "demo.bin",
  ".hidden",
  "..a",
  "a..b",
  ".config.json",
  " leading space",
  "with spaces.txt",
  "archive.tar.gz",
  "CONSOLE",
  "COM10",
  "LPT",
  "nul_device",
  "icon.png",
  "auxiliary.txt",
  "1-1 ratio",
  "résumé.pdf",
  "日本語のファイル.txt",
  "Ελληνικά",
  "עברית",
  "😀.png",
  "naïve café",
  "a".repeat(MAX_NAME_BYTES),
  "é".repeat(127),
  "日".repeat(85),
  "😀".repeat(63) + "abc",
];

Deno.test("unsafeSegmentReason() names the reason for every class of unsafe name", () => {
  for (const [name, reason] of UNSAFE) {
    assert.equal(unsafeSegmentReason(name), reason, `unsafeSegmentReason(${JSON.stringify(name)})`);
  }
});

Deno.test("unsafeSegmentReason() accepts ordinary and unicode names", () => {
  for (const name of SAFE) {
    assert.equal(
      unsafeSegmentReason(name),
      undefined,
      `unsafeSegmentReason(${JSON.stringify(name)})`,
    );
  }
});

Deno.test("unsafeSegmentReason() rejects every ASCII control character", () => {
  for (let code = 0; code < 0x20; code++) {
    const name = `a${String.fromCharCode(code)}b`;
    assert.equal(unsafeSegmentReason(name), "control character in name", `code ${code}`);
  }
  assert.equal(unsafeSegmentReason("a\u007fb"), "control character in name");
});

Deno.test("unsafeSegmentReason() rejects every device name COM0-9 and LPT0-9", () => {
  for (const base of ["COM", "LPT", "com", "lpt"]) {
    for (let digit = 0; digit <= 9; digit++) {
      assert.equal(unsafeSegmentReason(`${base}${digit}`), "name reserved on Windows");
      assert.equal(unsafeSegmentReason(`${base}${digit}.txt`), "name reserved on Windows");
    }
  }
});

Deno.test("unsafeSegmentReason() measures the length limit in UTF-8 bytes", () => {
  assert.equal(MAX_NAME_BYTES, 255);
  // 255 bytes exactly is accepted whatever the characters' widths
  for (
    const name of ["a".repeat(255), "é".repeat(127) + "a", "日".repeat(85), "😀".repeat(63) + "abc"]
  ) {
    assert.equal(new TextEncoder().encode(name).length, 255);
    assert.equal(unsafeSegmentReason(name), undefined);
  }
  // one byte more is refused, even though the name is far shorter in characters
  for (const name of ["a".repeat(256), "é".repeat(128), "日".repeat(85) + "a", "😀".repeat(64)]) {
    assert.equal(new TextEncoder().encode(name).length, 256);
    assert.match(unsafeSegmentReason(name) ?? "", /longer than 255 bytes/);
  }
});
