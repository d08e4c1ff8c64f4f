import assert from "node:assert/strict";
import { type BlockSpan, PieceLayout } from "../lib/pieces.ts";

Deno.test("PieceLayout counts pieces, rounding the last one up", () => {
  const cases: [number, number, number][] = [
    [0, 1024, 0],
    [1, 1024, 1],
    [1023, 1024, 1],
    [1024, 1024, 1],
    [1025, 1024, 2],
    [3000, 1024, 3],
    [4096, 1024, 4],
    [2 ** 40, 2 ** 24, 2 ** 16],
  ];
  for (const [total, pieceLength, count] of cases) {
    const layout = new PieceLayout(total, pieceLength);
    assert.equal(layout.pieceCount, count, `${total} / ${pieceLength}`);
    assert.equal(layout.totalLength, total);
    assert.equal(layout.pieceLength, pieceLength);
  }
});

Deno.test("PieceLayout.pieceSize() gives the full length except for a short last piece", () => {
  const cases: [number, number, number[]][] = [
    [3000, 1024, [1024, 1024, 952]],
    [4096, 1024, [1024, 1024, 1024, 1024]],
    [1, 1024, [1]],
    [1024, 1024, [1024]],
    [1025, 1024, [1024, 1]],
  ];
  for (const [total, pieceLength, sizes] of cases) {
    const layout = new PieceLayout(total, pieceLength);
    const actual = Array.from({ length: layout.pieceCount }, (_, i) => layout.pieceSize(i));
    assert.deepEqual(actual, sizes, `${total} / ${pieceLength}`);
    assert.equal(actual.reduce((a, b) => a + b, 0), total);
  }
});

Deno.test("PieceLayout.span() gives each piece's offset and length, tiling the share", () => {
  const layout = new PieceLayout(3000, 1024);
  assert.deepEqual(layout.span(0), { index: 0, offset: 0, length: 1024 });
  assert.deepEqual(layout.span(1), { index: 1, offset: 1024, length: 1024 });
  assert.deepEqual(layout.span(2), { index: 2, offset: 2048, length: 952 });
  const big = new PieceLayout(5 * 2 ** 32 + 7, 2 ** 24);
  let next = 0;
  for (let i = 0; i < big.pieceCount; i++) {
    const span = big.span(i);
    assert.equal(span.offset, next, `piece ${i}`);
    next += span.length;
  }
  assert.equal(next, big.totalLength);
  assert.deepEqual(big.span(big.pieceCount - 1), {
    index: big.pieceCount - 1,
    offset: 5 * 2 ** 32,
    length: 7,
  });
});

Deno.test("PieceLayout.validBlock() accepts only ranges inside an existing piece", () => {
  const layout = new PieceLayout(3000, 1024); // pieces of 1024, 1024, 952
  const cases: [number, number, number, boolean][] = [
    [0, 0, 1024, true],
    [0, 0, 1, true],
    [0, 1023, 1, true],
    [0, 512, 512, true],
    [1, 0, 1024, true],
    [2, 0, 952, true],
    [2, 951, 1, true],
    [0, 0, 1025, false],
    [0, 1, 1024, false],
    [0, 1024, 1, false],
    [0, 1023, 2, false],
    [2, 0, 953, false],
    [2, 952, 1, false],
    [2, 0, 1024, false],
    [0, 0, 0, false],
    [0, 0, -1, false],
    [0, -1, 2, false],
    [-1, 0, 1, false],
    [3, 0, 1, false],
    [4, 0, 1, false],
    [0.5, 0, 1, false],
    [NaN, 0, 1, false],
    [0, NaN, 1, false],
    [0, 0, NaN, false],
    [0, 0, Infinity, false],
    [0, 0xffffffff, 0xffffffff, false],
  ];
  for (const [index, begin, length, expected] of cases) {
    assert.equal(
      layout.validBlock(index, begin, length),
      expected,
      `validBlock(${index}, ${begin}, ${length})`,
    );
  }
});

Deno.test("PieceLayout.validBlock() refuses everything in an empty share", () => {
  const layout = new PieceLayout(0, 1024);
  assert.equal(layout.pieceCount, 0);
  assert.equal(layout.validBlock(0, 0, 1), false);
  assert.equal(layout.validBlock(-1, 0, 1), false);
});

Deno.test("PieceLayout.blocks() splits a piece into blocks of at most the given size", () => {
  const layout = new PieceLayout(3000, 1024);
  const cases: [number, number, [number, number][]][] = [
    [0, 1024, [[0, 1024]]],
    [0, 16384, [[0, 1024]]],
    [0, 512, [[0, 512], [512, 512]]],
    [0, 400, [[0, 400], [400, 400], [800, 224]]],
    [2, 400, [[0, 400], [400, 400], [800, 152]]],
    [2, 952, [[0, 952]]],
    [2, 951, [[0, 951], [951, 1]]],
    [1, 1, Array.from({ length: 1024 }, (_, i): [number, number] => [i, 1])],
  ];
  for (const [index, blockBytes, expected] of cases) {
    const blocks = layout.blocks(index, blockBytes);
    const want: BlockSpan[] = expected.map(([begin, length]) => ({ index, begin, length }));
    assert.deepEqual(blocks, want, `blocks(${index}, ${blockBytes})`);
  }
});

Deno.test("PieceLayout.blocks() covers each piece exactly, with every block valid", () => {
  const layout = new PieceLayout(10_000, 4096);
  for (let index = 0; index < layout.pieceCount; index++) {
    for (const blockBytes of [1000, 1024, 4096, 5000]) {
      const blocks = layout.blocks(index, blockBytes);
      let next = 0;
      for (const block of blocks) {
        assert.equal(block.begin, next);
        assert.ok(block.length > 0 && block.length <= blockBytes);
        assert.ok(layout.validBlock(block.index, block.begin, block.length));
        next += block.length;
      }
      assert.equal(next, layout.pieceSize(index));
    }
  }
});
