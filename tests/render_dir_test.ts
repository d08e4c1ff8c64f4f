import assert from "node:assert/strict";
import { renderLine } from "../lib/cli/render.ts";

const HASH = "3f".repeat(32);

Deno.test("renderLine() says a created folder share is a folder with N files", () => {
  const line = renderLine({
    event: "created",
    path: "holiday.p2pmeta",
    infoHash: HASH,
    name: "holiday",
    bytes: 70000,
    pieces: 5,
    pieceLength: 16384,
    directory: true,
    files: 12,
  }, "create");
  assert.deepEqual(line, {
    text:
      `[create] wrote holiday.p2pmeta (holiday/, 68.4 KiB in 12 files, 5 pieces of 16.0 KiB)\n[create] info hash ${HASH}`,
    stream: "out",
  });
});

Deno.test("renderLine() lists a folder share's files with sizes under `info`", () => {
  const line = renderLine({
    event: "share",
    path: "holiday.p2pmeta",
    name: "holiday",
    bytes: 71024,
    pieceLength: 16384,
    pieces: 5,
    infoHash: HASH,
    trackers: [],
    comment: null,
    createdBy: null,
    creationDate: null,
    directory: true,
    files: [
      { path: "a.txt", bytes: 1024, dir: false },
      { path: "empty", bytes: 0, dir: true },
      { path: "photos/été.jpg", bytes: 70000, dir: false },
      { path: "photos/zero.txt", bytes: 0, dir: false },
    ],
  }, "info");
  assert.equal(
    line?.text,
    [
      "holiday.p2pmeta",
      "  name:         holiday",
      "  size:         69.4 KiB (71024 bytes)",
      "  pieces:       5 of 16.0 KiB",
      `  info hash:    ${HASH}`,
      "  trackers:     (none)",
      "  files:        3 files, 1 empty folder",
      "      1.00 KiB  a.txt",
      "        folder  empty/",
      "      68.4 KiB  photos/été.jpg",
      "           0 B  photos/zero.txt",
    ].join("\n"),
  );
});

Deno.test("renderLine() keeps a single file's info without a file list", () => {
  const line = renderLine({
    event: "share",
    path: "demo.p2pmeta",
    name: "demo.txt",
    bytes: 10,
    pieceLength: 16384,
    pieces: 1,
    infoHash: HASH,
    trackers: [],
    comment: null,
    createdBy: null,
    creationDate: null,
    directory: false,
    files: [{ path: "demo.txt", bytes: 10, dir: false }],
  }, "info");
  assert.doesNotMatch(line?.text ?? "", /files:/);
});

Deno.test("renderLine() names the bad files of a folder that fails verify", () => {
  const base = {
    event: "verified" as const,
    path: "downloads/holiday",
    ok: false,
    piecesGood: 4,
    piecesTotal: 5,
  };
  assert.deepEqual(
    renderLine({ ...base, badPieces: [2], badFiles: ["a.txt", "b/c.txt"] }, "verify"),
    {
      text:
        "[verify] FAILED: downloads/holiday has 1 bad pieces of 5: 2; bad files: a.txt, b/c.txt",
      stream: "err",
    },
  );
  assert.equal(
    renderLine({ ...base, piecesGood: 5, badPieces: [], badFiles: ["empty"] }, "verify")?.text,
    "[verify] FAILED: downloads/holiday has 0 bad pieces of 5; bad files: empty",
  );
  const many = Array.from({ length: 25 }, (_, i) => `f${i}`);
  assert.match(
    renderLine({ ...base, badPieces: [0], badFiles: many }, "verify")?.text ?? "",
    /bad files: f0, .*, f19, \.\.\.$/,
  );
});
