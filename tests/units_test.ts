import assert from "node:assert/strict";
import {
  formatBytes,
  formatSeconds,
  fromHex,
  parseDuration,
  parseSize,
  toHex,
} from "../lib/units.ts";

const KIB = 1024;
const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

Deno.test("parseSize() reads plain numbers and binary suffixes", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["65536", 65536],
    ["1B", 1],
    ["1b", 1],
    ["256K", 256 * KIB],
    ["256k", 256 * KIB],
    ["256KB", 256 * KIB],
    ["256KiB", 256 * KIB],
    ["256kib", 256 * KIB],
    ["4M", 4 * MIB],
    ["4MB", 4 * MIB],
    ["4MiB", 4 * MIB],
    ["1G", GIB],
    ["1GB", GIB],
    ["1GiB", GIB],
    ["1.5G", 1.5 * GIB],
    ["0.5K", 512],
    [" 16 K ", 16 * KIB],
    ["16 M", 16 * MIB],
  ];
  for (const [text, expected] of cases) {
    assert.equal(parseSize(text), expected, `parseSize(${JSON.stringify(text)})`);
  }
});

Deno.test("parseSize() rounds fractional bytes to a whole number", () => {
  assert.equal(parseSize("1.4"), 1);
  assert.equal(parseSize("1.6"), 2);
  assert.equal(parseSize("0.001K"), 1);
  assert.ok(Number.isInteger(parseSize("1.3333K")));
});

Deno.test("parseSize() rejects text that is not a size with a RangeError", () => {
  const bad = [
    "",
    " ",
    "K",
    "-1",
    "-1K",
    "+1K",
    "1.",
    ".5K",
    "1e6",
    "0x10",
    "1T",
    "1TB",
    "1 K B",
    "4MM",
    "12abc",
    "1,5M",
    "one",
    "NaN",
    "Infinity",
  ];
  for (const text of bad) {
    assert.throws(() => parseSize(text), RangeError, `parseSize(${JSON.stringify(text)})`);
  }
});

Deno.test("parseSize() names the bad input in its error message", () => {
  assert.throws(() => parseSize("12abc"), (err: unknown) => {
    assert.ok(err instanceof RangeError);
    assert.match(err.message, /"12abc"/);
    return true;
  });
});

Deno.test("parseSize() rejects a size beyond the safe integer range", () => {
  assert.throws(() => parseSize("99999999999G"), /too large/);
  assert.throws(() => parseSize("9007199254740993"), RangeError);
  assert.equal(parseSize("8388607G"), 8388607 * GIB);
});

Deno.test("parseDuration() converts each unit to milliseconds", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["1500ms", 1500],
    ["90s", 90_000],
    ["90", 90_000],
    ["10m", 600_000],
    ["1h", 3_600_000],
    ["1.5s", 1500],
    ["0.5h", 1_800_000],
    ["2.5ms", 3],
    [" 30 s ", 30_000],
  ];
  for (const [text, expected] of cases) {
    assert.equal(parseDuration(text), expected, `parseDuration(${JSON.stringify(text)})`);
  }
});

Deno.test("parseDuration() rejects text that is not a duration with a RangeError", () => {
  const bad = ["", "s", "-1s", "1d", "1 min", "10sec", "1h30m", "1e3ms", "abc", ".5s", "1.s"];
  for (const text of bad) {
    assert.throws(() => parseDuration(text), RangeError, `parseDuration(${JSON.stringify(text)})`);
  }
});

Deno.test("formatBytes() picks the largest binary unit below the value", () => {
  const cases: [number, string][] = [
    [0, "0 B"],
    [1, "1 B"],
    [1023, "1023 B"],
    [1024, "1.00 KiB"],
    [1536, "1.50 KiB"],
    [10 * KIB, "10.0 KiB"],
    [1000 * KIB, "1000.0 KiB"],
    [MIB, "1.00 MiB"],
    [1.5 * MIB, "1.50 MiB"],
    [123 * MIB, "123.0 MiB"],
    [GIB, "1.00 GiB"],
    [1024 * GIB, "1.00 TiB"],
    [2048 * 1024 * GIB, "2048.0 TiB"],
  ];
  for (const [bytes, expected] of cases) {
    assert.equal(formatBytes(bytes), expected, `formatBytes(${bytes})`);
  }
});

Deno.test("formatSeconds() formats seconds, minutes and hours", () => {
  const cases: [number, string][] = [
    [0, "0s"],
    [0.4, "0s"],
    [42, "42s"],
    [59, "59s"],
    [59.5, "1m00s"],
    [60, "1m00s"],
    [185, "3m05s"],
    [3599, "59m59s"],
    [3600, "1h00m"],
    [3720, "1h02m"],
    [3780 + 59, "1h03m"],
    [100 * 3600, "100h00m"],
  ];
  for (const [seconds, expected] of cases) {
    assert.equal(formatSeconds(seconds), expected, `formatSeconds(${seconds})`);
  }
});

Deno.test("formatSeconds() shows -- for an unknown or negative duration", () => {
  for (const seconds of [NaN, Infinity, -Infinity, -1, -0.1]) {
    assert.equal(formatSeconds(seconds), "--", `formatSeconds(${seconds})`);
  }
});

Deno.test("toHex() writes two lower-case digits per byte", () => {
  const cases: [number[], string][] = [
    [[], ""],
    [[0], "00"],
    [[1, 15, 16, 255], "010f10ff"],
    [[0xde, 0xad, 0xbe, 0xef], "deadbeef"],
  ];
  for (const [bytes, expected] of cases) {
    assert.equal(toHex(new Uint8Array(bytes)), expected);
  }
});

Deno.test("fromHex() reads lower- and upper-case hex", () => {
  const cases: [string, number[]][] = [
    ["", []],
    ["00", [0]],
    ["010f10ff", [1, 15, 16, 255]],
    ["DEADBEEF", [0xde, 0xad, 0xbe, 0xef]],
    ["DeAdBeEf", [0xde, 0xad, 0xbe, 0xef]],
  ];
  for (const [hex, expected] of cases) {
    assert.deepEqual(fromHex(hex), new Uint8Array(expected), `fromHex(${JSON.stringify(hex)})`);
  }
});

Deno.test("toHex() and fromHex() round trip every byte value", () => {
  const all = new Uint8Array(256).map((_, i) => i);
  const hex = toHex(all);
  assert.equal(hex.length, 512);
  assert.deepEqual(fromHex(hex), all);
  assert.equal(toHex(fromHex(hex.toUpperCase())), hex);
});

Deno.test("fromHex() rejects odd lengths and non-hex characters with a SyntaxError", () => {
  const bad = ["0", "abc", "zz", "0g", "0x12", " 00", "00 ", "-1", "ab:cd", "é0"];
  for (const hex of bad) {
    assert.throws(() => fromHex(hex), SyntaxError, `fromHex(${JSON.stringify(hex)})`);
  }
});
