import assert from "node:assert/strict";
import { type BlockSpan, FileLayout, PieceLayout } from "../lib/pieces.ts";

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

// ---------------------------------------------------------------------------------------------
// FileLayout: files laid end to end

/** Files of 1500, 0, 100, 0 (folder), 2000 and 300 bytes: 3900 bytes in pieces of 1024. */
function dirLayout(): FileLayout {
  return new FileLayout([
    { path: ["a"], length: 1500 },
    { path: ["b-empty"], length: 0 },
    { path: ["c"], length: 100 },
    { path: ["d-folder"], length: 0, dir: true },
    { path: ["e", "big"], length: 2000 },
    { path: ["e", "z"], length: 300 },
  ], 1024);
}

Deno.test("FileLayout places files end to end; empty files and folders take no bytes", () => {
  const layout = dirLayout();
  assert.deepEqual(
    layout.files.map((f) => [f.offset, f.length, f.dir]),
    [[0, 1500, false], [1500, 0, false], [1500, 100, false], [1600, 0, true], [1600, 2000, false], [
      3600,
      300,
      false,
    ]],
  );
  assert.equal(layout.totalLength, 3900);
  assert.equal(layout.pieces.pieceCount, 4);
  assert.equal(layout.pieces.pieceSize(3), 3900 - 3072);
});

Deno.test("FileLayout.pieceSpans() splits each piece across the files it runs over", () => {
  const layout = dirLayout();
  const spans = (i: number) =>
    layout.pieceSpans(i).map((s) => [s.file, s.fileOffset, s.length, s.rangeOffset]);
  assert.deepEqual(spans(0), [[0, 0, 1024, 0]]);
  // piece 1 = bytes 1024..2047: the end of a, all of c, the start of e/big (b is empty)
  assert.deepEqual(spans(1), [[0, 1024, 476, 0], [2, 0, 100, 476], [4, 0, 448, 576]]);
  assert.deepEqual(spans(2), [[4, 448, 1024, 0]]);
  // the last, short piece: the rest of e/big and all of e/z
  assert.deepEqual(spans(3), [[4, 1472, 528, 0], [5, 0, 300, 528]]);
  for (let i = 0; i < 4; i++) {
    const total = layout.pieceSpans(i).reduce((n, s) => n + s.length, 0);
    assert.equal(total, layout.pieces.pieceSize(i), `piece ${i} is covered exactly`);
  }
});

Deno.test("FileLayout.spans() maps any byte range, and refuses one outside the share", () => {
  const layout = dirLayout();
  assert.deepEqual(layout.spans(1499, 2), [
    { file: 0, fileOffset: 1499, length: 1, rangeOffset: 0 },
    { file: 2, fileOffset: 0, length: 1, rangeOffset: 1 },
  ]);
  assert.deepEqual(layout.spans(1600, 0), []);
  assert.deepEqual(layout.spans(3899, 1), [{
    file: 5,
    fileOffset: 299,
    length: 1,
    rangeOffset: 0,
  }]);
  assert.throws(() => layout.spans(3899, 2), RangeError);
  assert.throws(() => layout.spans(-1, 1), RangeError);
  assert.throws(() => layout.spans(0.5, 1), RangeError);
});

Deno.test("FileLayout.piecesOfFile() gives the pieces a file touches; none for empty entries", () => {
  const layout = dirLayout();
  assert.deepEqual(layout.piecesOfFile(0), { first: 0, last: 1 });
  assert.equal(layout.piecesOfFile(1), undefined);
  assert.deepEqual(layout.piecesOfFile(2), { first: 1, last: 1 });
  assert.equal(layout.piecesOfFile(3), undefined);
  assert.deepEqual(layout.piecesOfFile(4), { first: 1, last: 3 });
  assert.deepEqual(layout.piecesOfFile(5), { first: 3, last: 3 });
  assert.throws(() => layout.piecesOfFile(6), RangeError);
  assert.deepEqual(layout.piecesOfFiles([2]), [1]);
  assert.deepEqual(layout.piecesOfFiles([5, 0]), [0, 1, 3]);
  assert.deepEqual(layout.piecesOfFiles([1, 3]), []);
});

Deno.test("FileLayout handles many files smaller than a piece, and a share of only empty files", () => {
  const many = new FileLayout(
    Array.from({ length: 100 }, (_, i) => ({ path: [`f${i}`], length: 37 })),
    1024,
  );
  assert.equal(many.pieces.pieceCount, Math.ceil(3700 / 1024));
  const first = many.pieceSpans(0);
  assert.equal(first.length, 28, "27 whole files and the start of the 28th");
  assert.deepEqual(first[27], {
    file: 27,
    fileOffset: 0,
    length: 1024 - 27 * 37,
    rangeOffset: 999,
  });
  const empty = new FileLayout(
    [{ path: ["x"], length: 0 }, { path: ["y"], length: 0, dir: true }],
    1024,
  );
  assert.equal(empty.pieces.pieceCount, 0);
  assert.deepEqual(empty.spans(0, 0), []);
  assert.throws(() => new FileLayout([{ path: ["d"], length: 1, dir: true }], 1024), RangeError);
  assert.throws(() => new FileLayout([{ path: ["d"], length: -1 }], 1024), RangeError);
});
