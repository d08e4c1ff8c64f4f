import assert from "node:assert/strict";
import { Bitfield } from "../lib/bitfield.ts";

function fieldWith(size: number, indexes: number[]): Bitfield {
  const field = new Bitfield(size);
  for (const i of indexes) field.set(i);
  return field;
}

Deno.test("new Bitfield() starts empty with one byte per eight pieces", () => {
  const cases: [number, number][] = [[0, 0], [1, 1], [7, 1], [8, 1], [9, 2], [16, 2], [17, 3], [
    1000,
    125,
  ]];
  for (const [size, bytes] of cases) {
    const field = new Bitfield(size);
    assert.equal(field.size, size);
    assert.equal(field.bytes.length, bytes, `size ${size}`);
    assert.equal(field.count, 0);
    assert.deepEqual([...field.indexes()], []);
    assert.ok(field.bytes.every((b) => b === 0));
  }
});

Deno.test("new Bitfield() rejects a size that is negative or not an integer", () => {
  for (const size of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
    assert.throws(() => new Bitfield(size), RangeError, `size ${size}`);
  }
});

Deno.test("Bitfield.set() writes the most significant bit first, as on the wire", () => {
  const cases: [number, number[]][] = [
    [0, [0x80, 0x00]],
    [1, [0x40, 0x00]],
    [7, [0x01, 0x00]],
    [8, [0x00, 0x80]],
    [9, [0x00, 0x40]],
  ];
  for (const [index, bytes] of cases) {
    assert.deepEqual(fieldWith(10, [index]).bytes, new Uint8Array(bytes), `set(${index})`);
  }
  assert.deepEqual(fieldWith(10, [0, 2, 4, 6, 8]).bytes, new Uint8Array([0xaa, 0x80]));
});

Deno.test("Bitfield.set(), has(), clear() and count track pieces held", () => {
  const field = new Bitfield(12);
  assert.equal(field.has(3), false);
  field.set(3);
  field.set(11);
  assert.equal(field.has(3), true);
  assert.equal(field.has(11), true);
  assert.equal(field.has(4), false);
  assert.equal(field.count, 2);
  field.set(3); // setting twice counts once
  assert.equal(field.count, 2);
  field.clear(3);
  assert.equal(field.has(3), false);
  assert.equal(field.count, 1);
  field.clear(3); // clearing a clear bit changes nothing
  assert.equal(field.count, 1);
  field.clear(0);
  assert.equal(field.count, 1);
  assert.deepEqual([...field.indexes()], [11]);
  assert.deepEqual(field.bytes, new Uint8Array([0x00, 0x10]));
});

Deno.test("Bitfield.complete is true only once every piece is held", () => {
  const field = new Bitfield(9);
  for (let i = 0; i < 9; i++) {
    assert.equal(field.complete, false, `after ${i} pieces`);
    field.set(i);
  }
  assert.equal(field.complete, true);
  assert.equal(field.count, 9);
  field.clear(4);
  assert.equal(field.complete, false);
});

Deno.test("Bitfield.full() sets every piece and no spare bit", () => {
  const cases: [number, number[]][] = [[0, []], [1, [0x80]], [8, [0xff]], [10, [0xff, 0xc0]], [15, [
    0xff,
    0xfe,
  ]]];
  for (const [size, bytes] of cases) {
    const field = Bitfield.full(size);
    assert.deepEqual(field.bytes, new Uint8Array(bytes), `full(${size})`);
    assert.equal(field.count, size);
    assert.equal(field.complete, true);
  }
});

Deno.test("Bitfield.has() is false for any index out of range", () => {
  const field = Bitfield.full(10);
  for (const index of [-1, -8, 10, 11, 15, 16, 1000, NaN, Infinity, -Infinity]) {
    assert.equal(field.has(index), false, `has(${index})`);
  }
});

Deno.test("Bitfield.set() and clear() throw a RangeError for an index out of range", () => {
  const field = new Bitfield(10);
  for (const index of [-1, 10, 15, 1.5, NaN, Infinity]) {
    assert.throws(() => field.set(index), RangeError, `set(${index})`);
    assert.throws(() => field.clear(index), RangeError, `clear(${index})`);
  }
  assert.equal(field.count, 0);
  assert.deepEqual(field.bytes, new Uint8Array(2));
});

Deno.test("a Bitfield of size 0 is empty, complete and refuses every index", () => {
  const field = new Bitfield(0);
  assert.equal(field.bytes.length, 0);
  assert.equal(field.count, 0);
  assert.equal(field.complete, true);
  assert.equal(field.has(0), false);
  assert.throws(() => field.set(0), RangeError);
  assert.equal(field.toRanges(), "");
  assert.equal(Bitfield.fromRanges("", 0).size, 0);
  assert.throws(() => Bitfield.fromRanges("0", 0), RangeError);
  assert.equal(Bitfield.fromBytes(new Uint8Array(0), 0).count, 0);
  assert.throws(() => Bitfield.fromBytes(new Uint8Array(1), 0), RangeError);
});

Deno.test("Bitfield.fromBytes() reads a peer's bitfield and counts it", () => {
  const cases: [number[], number, number[]][] = [
    [[0x00], 1, []],
    [[0x80], 1, [0]],
    [[0xff], 8, [0, 1, 2, 3, 4, 5, 6, 7]],
    [[0xa5, 0x80], 9, [0, 2, 5, 7, 8]],
    [[0x00, 0x01], 16, [15]],
    [[0xff, 0xc0], 10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]],
  ];
  for (const [bytes, size, indexes] of cases) {
    const field = Bitfield.fromBytes(new Uint8Array(bytes), size);
    assert.deepEqual([...field.indexes()], indexes, `fromBytes(${bytes}, ${size})`);
    assert.equal(field.count, indexes.length);
    assert.equal(field.complete, indexes.length === size);
  }
});

Deno.test("Bitfield.fromBytes() copies the bytes it is given", () => {
  const source = new Uint8Array([0x80]);
  const field = Bitfield.fromBytes(source, 4);
  source[0] = 0xf0;
  assert.deepEqual([...field.indexes()], [0]);
  field.set(1);
  assert.equal(source[0], 0xf0);
});

Deno.test("Bitfield.fromBytes() rejects the wrong length", () => {
  const cases: [number, number][] = [[0, 1], [2, 8], [1, 9], [3, 16], [125, 1001]];
  for (const [length, size] of cases) {
    assert.throws(
      () => Bitfield.fromBytes(new Uint8Array(length), size),
      /bitfield of \d+ bytes, expected \d+/,
      `${length} bytes for ${size} pieces`,
    );
  }
});

Deno.test("Bitfield.fromBytes() rejects any spare bit set past the last piece", () => {
  const cases: [number[], number][] = [
    [[0x40], 1],
    [[0x01], 1],
    [[0x01], 7],
    [[0xff, 0xe0], 10],
    [[0x00, 0x20], 10],
    [[0xff, 0x01], 15],
  ];
  for (const [bytes, size] of cases) {
    assert.throws(
      () => Bitfield.fromBytes(new Uint8Array(bytes), size),
      /bits set past the last piece/,
      `fromBytes(${bytes}, ${size})`,
    );
  }
});

Deno.test("Bitfield.toRanges() writes runs as ranges and single pieces alone", () => {
  const cases: [number, number[], string][] = [
    [10, [], ""],
    [10, [0], "0"],
    [10, [9], "9"],
    [10, [0, 1], "0-1"],
    [10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "0-9"],
    [10, [0, 2, 4], "0,2,4"],
    [10, [1, 2, 3, 7, 9], "1-3,7,9"],
    [20, [0, 1, 2, 8, 15, 16, 17, 18, 19], "0-2,8,15-19"],
  ];
  for (const [size, indexes, text] of cases) {
    assert.equal(fieldWith(size, indexes).toRanges(), text, `indexes ${indexes}`);
  }
  const big = fieldWith(201, []);
  for (let i = 0; i <= 99; i++) big.set(i);
  big.set(150);
  for (let i = 160; i <= 200; i++) big.set(i);
  assert.equal(big.toRanges(), "0-99,150,160-200");
});

Deno.test("Bitfield.fromRanges() and toRanges() round trip both ways", () => {
  const texts: [string, number][] = [
    ["", 10],
    ["0", 1],
    ["0-9", 10],
    ["1-3,7,9", 10],
    ["0-99,150,160-200", 201],
    ["5", 6],
  ];
  for (const [text, size] of texts) {
    const field = Bitfield.fromRanges(text, size);
    assert.equal(field.toRanges(), text);
    assert.deepEqual(Bitfield.fromRanges(field.toRanges(), size).bytes, field.bytes);
  }
  // every subset of 10 pieces survives toRanges -> fromRanges
  for (let mask = 0; mask < 1 << 10; mask++) {
    const indexes = [...Array(10).keys()].filter((i) => mask & (1 << i));
    const field = fieldWith(10, indexes);
    const back = Bitfield.fromRanges(field.toRanges(), 10);
    assert.deepEqual([...back.indexes()], indexes, `mask ${mask}`);
    assert.equal(back.count, indexes.length);
  }
});

Deno.test("Bitfield.fromRanges() accepts overlapping and unordered ranges", () => {
  const field = Bitfield.fromRanges("5-7,0-2,1-3,6", 10);
  assert.deepEqual([...field.indexes()], [0, 1, 2, 3, 5, 6, 7]);
  assert.equal(field.count, 7);
  assert.equal(field.toRanges(), "0-3,5-7");
});

Deno.test("Bitfield.fromRanges() rejects malformed text", () => {
  const bad = [
    ",",
    "1,",
    ",1",
    "1,,2",
    "a",
    "1-",
    "-1",
    "1--2",
    "1-2-3",
    " 1",
    "1 ",
    "1 - 2",
    "1.5",
    "0x1",
    "+1",
    "1;2",
  ];
  for (const text of bad) {
    assert.throws(
      () => Bitfield.fromRanges(text, 10),
      /malformed piece range/,
      JSON.stringify(text),
    );
  }
});

Deno.test("Bitfield.fromRanges() rejects ranges out of bounds or reversed", () => {
  const bad = ["10", "0-10", "9-10", "3-2", "99999999999999999999", "0-99999999999"];
  for (const text of bad) {
    assert.throws(() => Bitfield.fromRanges(text, 10), /out of bounds/, JSON.stringify(text));
  }
});
