import assert from "node:assert/strict";
import {
  compareNames,
  comparePaths,
  displayPath,
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  pathKey,
  unsafePathReason,
  unsafeSegmentReason,
} from "../lib/paths.ts";

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

// ---------------------------------------------------------------------------------------------
// Paths of directory shares

/** One bad path per class the metadata must refuse, and the reason `unsafePathReason` gives. */
const BAD_PATHS: { what: string; path: string[]; reason: RegExp }[] = [
  {
    what: "absolute path (leading empty segment)",
    path: ["", "etc", "passwd"],
    reason: /^absolute path$/,
  },
  { what: "absolute path (leading slash)", path: ["/etc", "passwd"], reason: /^absolute path$/ },
  { what: "absolute path (UNC)", path: ["\\\\server\\share"], reason: /^absolute path$/ },
  { what: "drive letter", path: ["C:", "Windows"], reason: /^drive letter$/ },
  { what: "drive letter with a path", path: ["c:evil.txt"], reason: /^drive letter$/ },
  { what: "dot-dot segment", path: ["a", "..", "..", "etc"], reason: /^"\.\." segment$/ },
  { what: "dot segment", path: ["a", ".", "b"], reason: /^"\." segment$/ },
  { what: "empty segment", path: ["a", "", "b"], reason: /^empty segment$/ },
  { what: "trailing empty segment", path: ["a", ""], reason: /^empty segment$/ },
  { what: "backslash", path: ["a\\..\\b"], reason: /^backslash in name$/ },
  { what: "slash inside a name", path: ["a/../b"], reason: /^slash inside a name$/ },
  { what: "NUL", path: ["a\u0000b"], reason: /^control character in name$/ },
  { what: "newline", path: ["evil\nname"], reason: /^control character in name$/ },
  { what: "C1 control", path: ["a\u009bb"], reason: /^control character in name$/ },
  { what: "Windows reserved name", path: ["docs", "CON"], reason: /^name reserved on Windows$/ },
  { what: "Windows reserved name with extension", path: ["com1.txt"], reason: /reserved/ },
  { what: "overlong name", path: ["a".repeat(256)], reason: /^name longer than 255 bytes$/ },
  {
    what: "overlong path",
    path: Array.from({ length: 20 }, () => "d".repeat(250)),
    reason: /^path longer than 4096 bytes$/,
  },
  { what: "lone surrogate", path: ["\ud800"], reason: /^name is not valid Unicode$/ },
  { what: "no segment at all", path: [], reason: /^empty path$/ },
];

for (const { what, path, reason } of BAD_PATHS) {
  Deno.test(`unsafePathReason() refuses a path with: ${what}`, () => {
    assert.match(unsafePathReason(path) ?? "(accepted)", reason);
  });
}

Deno.test("unsafePathReason() accepts nested, hidden, unicode and maximal paths", () => {
  const good: string[][] = [
    ["a"],
    ["photos", "2024", "IMG_0001.JPG"],
    [".hidden", ".config"],
    ["日本語", "ファイル.txt"],
    ["😀", "naïve café.md"],
    ["a".repeat(255)],
    // 16 names of 255 bytes and their 15 slashes: 4095 bytes
    Array.from({ length: 16 }, () => "d".repeat(255)),
  ];
  for (const path of good) assert.equal(unsafePathReason(path), undefined, JSON.stringify(path));
});

Deno.test("unsafePathReason() counts the share's name towards the path limit", () => {
  // 15 × 255 + 14 slashes = 3839 bytes; with a 250-byte name and its slash: 4090.
  const path = Array.from({ length: 15 }, () => "d".repeat(255));
  assert.equal(unsafePathReason(path, { prefixBytes: 251 }), undefined);
  assert.match(unsafePathReason(path, { prefixBytes: 300 }) ?? "", /path longer than 4096/);
  assert.equal(MAX_PATH_BYTES, 4096);
});

Deno.test("compareNames() orders by code point (UTF-8 bytes), not by UTF-16 code units", () => {
  // U+FF5E (one UTF-16 unit, 0xFF5E) sorts before U+1F600 (surrogates 0xD83D 0xDE00) by code
  // point, though JavaScript's `<` puts the surrogate pair first.
  assert.ok("\ud83d\ude00" < "\uff5e", "precondition: code unit order differs");
  assert.ok(compareNames("\uff5e", "\ud83d\ude00") < 0);
  assert.ok(compareNames("\ud83d\ude00", "\uff5e") > 0);
  const names = ["b", "a", "B", "é", "e", "😀", "～", "a0", "", "A"];
  const sorted = [...names].sort(compareNames);
  const utf8 = [...names].sort((x, y) => {
    const a = new TextEncoder().encode(x);
    const b = new TextEncoder().encode(y);
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
  });
  assert.deepEqual(sorted, utf8);
  assert.deepEqual(sorted, ["", "A", "B", "a", "a0", "b", "e", "é", "～", "😀"]);
  assert.equal(compareNames("same", "same"), 0);
});

Deno.test("comparePaths() compares segment by segment and puts a folder's prefix first", () => {
  const paths = [["b"], ["a", "z"], ["a-b"], ["a"], ["a", "b", "c"], ["a", "b"]];
  assert.deepEqual([...paths].sort(comparePaths), [
    ["a"],
    ["a", "b"],
    ["a", "b", "c"],
    ["a", "z"],
    ["a-b"],
    ["b"],
  ]);
});

Deno.test("pathKey() is the same for paths that differ only in case or Unicode normalisation", () => {
  assert.equal(pathKey(["Photos", "IMG.JPG"]), pathKey(["photos", "img.jpg"]));
  assert.equal(pathKey(["caf\u00e9"]), pathKey(["cafe\u0301"]), "NFC and NFD");
  assert.notEqual(pathKey(["a", "b"]), pathKey(["a", "c"]));
});

Deno.test("displayPath() quotes and escapes, so a bad name can never break the line", () => {
  assert.equal(displayPath(["a", "b.txt"]), '"a/b.txt"');
  assert.equal(displayPath(["evil\nname"]), '"evil\\nname"');
  assert.equal(displayPath(["esc\u001b[31m"]), '"esc\\u001b[31m"');
  assert.equal(displayPath(["c1\u009b"]), '"c1\\u009b"');
  const long = displayPath(["x".repeat(5000)]);
  assert.ok(long.length < 300, `${long.length} characters`);
  // deno-lint-ignore no-control-regex -- control characters are what must not come out
  assert.ok(!/[\u0000-\u001f\u007f-\u009f]/.test(displayPath(["\u0000\u0085\u009f"])));
});
