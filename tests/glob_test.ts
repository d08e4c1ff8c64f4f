import assert from "node:assert/strict";
import { compileGlob, matchGlob, matchGlobOrParent, selectFiles } from "../lib/glob.ts";

const p = (text: string): string[] => text.split("/");

/** [pattern, path, matches] */
const CASES: [string, string, boolean][] = [
  // literal
  ["a.txt", "a.txt", true],
  ["a.txt", "b.txt", false],
  ["a.txt", "A.TXT", false], // case-sensitive
  ["docs/a.txt", "docs/a.txt", true],
  ["docs/a.txt", "a.txt", false],
  // * stays within one name
  ["*.txt", "a.txt", true],
  ["*.txt", ".txt", true],
  ["*.txt", "docs/a.txt", false],
  ["*", "anything", true],
  ["*", "a/b", false],
  ["docs/*", "docs/a", true],
  ["docs/*", "docs/a/b", false],
  ["a*b*c", "abc", true],
  ["a*b*c", "axxbyyc", true],
  ["a*b*c", "axxbyy", false],
  ["*a*a*a*", "aaa", true],
  ["*a*a*a*", "aa", false],
  // ? is exactly one character, a code point (not a UTF-16 unit)
  ["?.txt", "a.txt", true],
  ["?.txt", "ab.txt", false],
  ["?.txt", ".txt", false],
  ["?.png", "😀.png", true],
  ["??.png", "😀.png", false],
  // ** spans any number of folders, including none
  ["**", "a", true],
  ["**", "a/b/c", true],
  ["**/*.jpg", "a.jpg", true],
  ["**/*.jpg", "x/y/a.jpg", true],
  ["**/*.jpg", "x/y/a.png", false],
  ["photos/**", "photos/a/b.jpg", true],
  ["photos/**", "other/a.jpg", false],
  ["a/**/z", "a/z", true],
  ["a/**/z", "a/b/c/z", true],
  ["a/**/z", "a/b/c/y", false],
  ["**/b/**", "a/b/c", true],
  ["**/b/**", "a/c/d", false],
  ["a**b", "axxb", true], // ** inside a name acts as *
  ["a**b", "ax/xb", false],
  // normalisation: empty names and ./ are ignored, NFC on both sides
  ["./docs//a.txt/", "docs/a.txt", true],
  ["/docs/a.txt", "docs/a.txt", true],
  ["caf\u00e9.txt", "cafe\u0301.txt", true],
  ["cafe\u0301.txt", "caf\u00e9.txt", true],
  // other characters are literal
  ["[ab].txt", "a.txt", false],
  ["[ab].txt", "[ab].txt", true],
  ["a+b(1).txt", "a+b(1).txt", true],
];

Deno.test("matchGlob() follows the documented rules for *, ** and ?", () => {
  for (const [pattern, path, expected] of CASES) {
    assert.equal(matchGlob(compileGlob(pattern), p(path)), expected, `${pattern} vs ${path}`);
  }
});

Deno.test("matchGlobOrParent() lets a pattern naming a folder select what it holds", () => {
  assert.equal(matchGlobOrParent(compileGlob("photos"), p("photos/2024/a.jpg")), true);
  assert.equal(matchGlobOrParent(compileGlob("photos/2024"), p("photos/2024/a.jpg")), true);
  assert.equal(matchGlobOrParent(compileGlob("pho*"), p("photos/a.jpg")), true);
  assert.equal(matchGlobOrParent(compileGlob("photos"), p("photos-old/a.jpg")), false);
  assert.equal(matchGlobOrParent(compileGlob("a.jpg"), p("photos/a.jpg")), false);
});

Deno.test("compileGlob() refuses an empty pattern", () => {
  for (const pattern of ["", "/", "./", "//."]) {
    assert.throws(() => compileGlob(pattern), RangeError, JSON.stringify(pattern));
  }
});

Deno.test("matchGlob() stays fast on patterns with many stars", () => {
  const glob = compileGlob(`${"**/".repeat(20)}${"*a".repeat(20)}*b`);
  const path = Array.from({ length: 30 }, () => "a".repeat(60));
  const started = performance.now();
  assert.equal(matchGlob(glob, path), false);
  assert.ok(performance.now() - started < 1000, "memoised, not exponential");
});

Deno.test("selectFiles() returns the matched entries in order and the patterns that matched nothing", () => {
  const paths = [p("a.txt"), p("docs/b.md"), p("docs/img/c.png"), p("empty"), p("z.txt")];
  assert.deepEqual(selectFiles(paths, ["*.txt"]), { files: [0, 4], unmatched: [] });
  assert.deepEqual(selectFiles(paths, ["docs", "z.txt"]), { files: [1, 2, 4], unmatched: [] });
  assert.deepEqual(selectFiles(paths, ["**/*.png", "nope/*"]), {
    files: [2],
    unmatched: ["nope/*"],
  });
  assert.deepEqual(selectFiles(paths, ["**"]).files, [0, 1, 2, 3, 4]);
  assert.deepEqual(selectFiles(paths, []), { files: [], unmatched: [] });
  assert.throws(() => selectFiles(paths, [""]), RangeError);
});

Deno.test("glob.ts is pure: no Deno namespace, timers or imports", async () => {
  const source = await Deno.readTextFile(new URL("../lib/glob.ts", import.meta.url));
  for (const word of ["Deno.", "setTimeout", "performance.now", "console.", "import "]) {
    assert.equal(source.includes(word), false, `lib/glob.ts uses ${word}`);
  }
});
