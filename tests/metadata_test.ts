import assert from "node:assert/strict";
import { MetadataError } from "../lib/errors.ts";
import {
  AUTO_MAX_PIECE_LENGTH,
  AUTO_MIN_PIECE_LENGTH,
  autoPieceLength,
  buildMetadata,
  canonicalJson,
  computeInfoHash,
  encodeMetadata,
  FORMAT_VERSION,
  type Info,
  isDirectoryShare,
  MAX_COMMENT_CHARS,
  MAX_PIECE_LENGTH,
  MAX_TRACKERS,
  type Metadata,
  MIN_PIECE_LENGTH,
  parseMetadata,
  pieceCountFor,
  shareEntries,
  sortEntries,
  validateInfo,
} from "../lib/metadata.ts";
import { sha256 } from "../lib/hash.ts";
import { toHex } from "../lib/units.ts";

const HASH_A = "a".repeat(64);
const HASH_B = "b".repeat(64);
const HASH_C = "c".repeat(64);

/** A fixed info section: 3000 bytes in pieces of 1024 (the last piece 952 bytes). */
function demoInfo(): Info {
  return { name: "demo.bin", length: 3000, pieceLength: 1024, pieces: [HASH_A, HASH_B, HASH_C] };
}

/**
 * Pinned values for {@linkcode demoInfo}, computed independently with
 * `printf '%s' '<canonical>' | sha256sum`. A change here breaks every existing `.p2pmeta`.
 */
const DEMO_CANONICAL =
  `{"length":3000,"name":"demo.bin","pieceLength":1024,"pieces":["${HASH_A}",` +
  `"${HASH_B}","${HASH_C}"]}`;
const DEMO_INFO_HASH = "75bf8a6841bcd5494c094e46d644d71f6be01a8bb369fb140331c73b023048d2";

/** The JSON text of a metadata file, built by hand so a test can break one field at a time. */
function metaText(edit: (raw: Record<string, unknown>) => void = () => {}): string {
  const raw: Record<string, unknown> = {
    version: FORMAT_VERSION,
    infoHash: DEMO_INFO_HASH,
    info: demoInfo(),
  };
  edit(raw);
  return JSON.stringify(raw);
}

function infoOf(raw: Record<string, unknown>): Record<string, unknown> {
  return raw.info as Record<string, unknown>;
}

async function assertRejects(text: string, pattern: RegExp, label: string): Promise<void> {
  await assert.rejects(parseMetadata(text), (err: unknown) => {
    assert.ok(err instanceof MetadataError, `${label}: expected MetadataError, got ${err}`);
    assert.equal(err.name, "MetadataError");
    assert.match(err.message, pattern, label);
    return true;
  });
}

Deno.test("autoPieceLength() picks the smallest power of two giving at most 2000 pieces", () => {
  const cases: [number, number][] = [
    [0, 16 * 1024],
    [1, 16 * 1024],
    [16 * 1024, 16 * 1024],
    [2000 * 16 * 1024, 16 * 1024],
    [2000 * 16 * 1024 + 1, 32 * 1024],
    [2000 * 32 * 1024, 32 * 1024],
    [2000 * 32 * 1024 + 1, 64 * 1024],
    [1024 ** 3, 1024 * 1024], // 1 GiB -> 1024 pieces of 1 MiB
    [2000 * 8 * 1024 * 1024, 8 * 1024 * 1024],
    [2000 * 8 * 1024 * 1024 + 1, 16 * 1024 * 1024],
    [2000 * 16 * 1024 * 1024, 16 * 1024 * 1024],
    [2000 * 16 * 1024 * 1024 + 1, 16 * 1024 * 1024], // capped: more than 2000 pieces
    [1024 ** 5, 16 * 1024 * 1024],
    [Number.MAX_SAFE_INTEGER, 16 * 1024 * 1024],
  ];
  for (const [length, expected] of cases) {
    assert.equal(autoPieceLength(length), expected, `autoPieceLength(${length})`);
  }
});

Deno.test("autoPieceLength() always returns a valid power of two within the automatic bounds", () => {
  for (let exp = 0; exp <= 52; exp++) {
    const length = 2 ** exp + 12345;
    const pl = autoPieceLength(length);
    assert.ok(
      pl >= AUTO_MIN_PIECE_LENGTH && pl <= AUTO_MAX_PIECE_LENGTH,
      `length ${length}: ${pl}`,
    );
    assert.ok(pl >= MIN_PIECE_LENGTH && pl <= MAX_PIECE_LENGTH);
    assert.equal(pl & (pl - 1), 0, `length ${length}: ${pl} is not a power of two`);
    if (pl < AUTO_MAX_PIECE_LENGTH) assert.ok(Math.ceil(length / pl) <= 2000);
  }
});

Deno.test("pieceCountFor() rounds up and gives zero pieces for an empty share", () => {
  const cases: [number, number, number][] = [
    [0, 1024, 0],
    [1, 1024, 1],
    [1024, 1024, 1],
    [1025, 1024, 2],
    [3000, 1024, 3],
    [4096, 1024, 4],
  ];
  for (const [length, pieceLength, expected] of cases) {
    assert.equal(
      pieceCountFor(length, pieceLength),
      expected,
      `pieceCountFor(${length}, ${pieceLength})`,
    );
  }
});

Deno.test("canonicalJson() sorts keys at every depth and writes no whitespace", () => {
  const cases: [unknown, string][] = [
    [{}, "{}"],
    [[], "[]"],
    [{ b: 1, a: 2 }, `{"a":2,"b":1}`],
    [
      { z: { y: 1, x: [3, { d: null, c: true }] }, a: "s" },
      `{"a":"s","z":{"x":[3,{"c":true,"d":null}],"y":1}}`,
    ],
    [
      { pieces: [], name: "n", length: 0, pieceLength: 1024 },
      `{"length":0,"name":"n","pieceLength":1024,"pieces":[]}`,
    ],
    [{ B: 1, a: 2, _: 3, "1": 4 }, `{"1":4,"B":1,"_":3,"a":2}`],
    [{ "é": 1, z: 2 }, `{"z":2,"é":1}`],
    [["b", "a"], `["b","a"]`], // arrays keep their order
    [{ a: undefined, b: 1 }, `{"b":1}`],
    [{ text: 'line\nquote"tab\t' }, `{"text":"line\\nquote\\"tab\\t"}`],
    [{ text: "日本 😀" }, `{"text":"日本 😀"}`],
    [-0, "0"],
    [-42, "-42"],
    [Number.MAX_SAFE_INTEGER, "9007199254740991"],
    [null, "null"],
    [false, "false"],
    ["s", `"s"`],
  ];
  for (const [value, expected] of cases) {
    assert.equal(canonicalJson(value), expected, `canonicalJson(${JSON.stringify(value)})`);
  }
});

Deno.test("canonicalJson() gives the same text whatever the key insertion order", () => {
  const a = { name: "x", length: 5, pieceLength: 1024, pieces: [HASH_A] };
  const b = { pieces: [HASH_A], pieceLength: 1024, length: 5, name: "x" };
  assert.equal(canonicalJson(a), canonicalJson(b));
  assert.equal(canonicalJson(a).includes(" "), false);
});

Deno.test("canonicalJson() rejects numbers that are not safe integers", () => {
  const bad: unknown[] = [
    1.5,
    0.1,
    NaN,
    Infinity,
    -Infinity,
    Number.MAX_SAFE_INTEGER + 1,
    { nested: { value: 2.5 } },
    [1, 2, 3.25],
  ];
  for (const value of bad) {
    assert.throws(() => canonicalJson(value), RangeError, `canonicalJson(${String(value)})`);
  }
});

Deno.test("computeInfoHash() of a fixed info section is pinned", async () => {
  assert.equal(canonicalJson(demoInfo()), DEMO_CANONICAL);
  assert.equal(await computeInfoHash(demoInfo()), DEMO_INFO_HASH);
  const reordered: Info = {
    pieces: [HASH_A, HASH_B, HASH_C],
    pieceLength: 1024,
    length: 3000,
    name: "demo.bin",
  };
  assert.equal(await computeInfoHash(reordered), DEMO_INFO_HASH);
});

Deno.test("computeInfoHash() changes when any info field changes", async () => {
  const variants: Info[] = [
    { ...demoInfo(), name: "demo2.bin" },
    { ...demoInfo(), length: 2999 },
    { ...demoInfo(), pieceLength: 2048 },
    { ...demoInfo(), pieces: [HASH_A, HASH_C, HASH_B] },
  ];
  const seen = new Set([DEMO_INFO_HASH]);
  for (const info of variants) {
    const hash = await computeInfoHash(info);
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.equal(seen.has(hash), false, `duplicate hash for ${JSON.stringify(info)}`);
    seen.add(hash);
  }
});

Deno.test("buildMetadata() fills version, info hash and options", async () => {
  const meta = await buildMetadata(demoInfo(), {
    trackers: ["http://127.0.0.1:6969/announce"],
    comment: "hello",
    createdBy: "p2p-share test",
    creationDate: "2024-01-02T03:04:05Z",
  });
  assert.deepEqual(meta, {
    version: FORMAT_VERSION,
    info: demoInfo(),
    infoHash: DEMO_INFO_HASH,
    trackers: ["http://127.0.0.1:6969/announce"],
    comment: "hello",
    createdBy: "p2p-share test",
    creationDate: "2024-01-02T03:04:05Z",
  });
  const bare = await buildMetadata(demoInfo());
  assert.deepEqual(bare, {
    version: FORMAT_VERSION,
    info: demoInfo(),
    infoHash: DEMO_INFO_HASH,
    trackers: [],
  });
  assert.equal("comment" in bare, false);
});

Deno.test("buildMetadata() refuses an inconsistent info section", async () => {
  const bad: [Info, RegExp][] = [
    [{ ...demoInfo(), name: "../x" }, /unsafe name/],
    [{ ...demoInfo(), length: -1 }, /invalid length/],
    [{ ...demoInfo(), pieceLength: 1000 }, /invalid piece length/],
    [
      { ...demoInfo(), pieces: [HASH_A] },
      /piece count 1 does not match length 3000 \(expected 3\)/,
    ],
  ];
  for (const [info, pattern] of bad) {
    await assert.rejects(buildMetadata(info), (err: unknown) => {
      assert.ok(err instanceof MetadataError);
      assert.match(err.message, pattern);
      return true;
    });
  }
});

Deno.test("encodeMetadata() and parseMetadata() round trip both ways", async () => {
  const metas: Metadata[] = [
    await buildMetadata(demoInfo()),
    await buildMetadata(demoInfo(), {
      trackers: ["http://a.example/announce", "http://b.example/announce"],
      comment: 'a comment with "quotes" and ünïcödé',
      createdBy: "p2p-share 0.1",
      creationDate: "2024-01-02T03:04:05Z",
    }),
    await buildMetadata({ name: "empty.txt", length: 0, pieceLength: 16384, pieces: [] }),
    await buildMetadata({ name: "日本語.txt", length: 1024, pieceLength: 1024, pieces: [HASH_A] }),
  ];
  for (const meta of metas) {
    const text = encodeMetadata(meta);
    assert.ok(text.endsWith("}\n"));
    const parsed = await parseMetadata(text);
    assert.deepEqual(parsed, meta);
    assert.equal(encodeMetadata(parsed), text);
  }
});

Deno.test("encodeMetadata() writes stable, readable JSON with the info section last", async () => {
  const meta = await buildMetadata(demoInfo(), { trackers: ["http://t/announce"], comment: "c" });
  const text = encodeMetadata(meta);
  const raw = JSON.parse(text);
  assert.deepEqual(Object.keys(raw), ["version", "infoHash", "trackers", "comment", "info"]);
  assert.equal(raw.infoHash, DEMO_INFO_HASH);
  assert.match(text, /^\{\n {2}"version": 1,\n/);
  assert.equal("trackers" in JSON.parse(encodeMetadata(await buildMetadata(demoInfo()))), false);
});

Deno.test("parseMetadata() accepts a hand-written file and recomputes the info hash", async () => {
  const meta = await parseMetadata(metaText());
  assert.equal(meta.infoHash, DEMO_INFO_HASH);
  assert.deepEqual(meta.info, demoInfo());
  assert.deepEqual(meta.trackers, []);
  // the infoHash field is optional: it is always recomputed
  const without = await parseMetadata(metaText((raw) => delete raw.infoHash));
  assert.equal(without.infoHash, DEMO_INFO_HASH);
});

Deno.test("parseMetadata() accepts an empty file with zero pieces", async () => {
  const info: Info = { name: "empty.txt", length: 0, pieceLength: 16384, pieces: [] };
  const meta = await parseMetadata(JSON.stringify({ version: 1, info }));
  assert.deepEqual(meta.info, info);
  assert.equal(meta.infoHash, "88c33b30c8b83d4301e610779876c5c4ec598ca96db3a4bf709cdc19af1ef751");
  await assertRejects(
    JSON.stringify({ version: 1, info: { ...info, pieces: [HASH_A] } }),
    /piece count 1 does not match length 0/,
    "empty file with a piece",
  );
});

Deno.test("parseMetadata() rejects malformed or unsafe files with a MetadataError", async () => {
  const cases: [string, string, RegExp][] = [
    ["not JSON", "{ version: 1", /not valid JSON/],
    ["empty text", "", /not valid JSON/],
    ["top level array", "[]", /not a JSON object/],
    ["top level null", "null", /not a JSON object/],
    ["top level string", `"x"`, /not a JSON object/],
    ["version 2", metaText((r) => (r.version = 2)), /unsupported format version 2/],
    ["version as string", metaText((r) => (r.version = "1")), /unsupported format version "1"/],
    ["version missing", metaText((r) => delete r.version), /unsupported format version/],
    ["info missing", metaText((r) => delete r.info), /missing "info" object/],
    ["info array", metaText((r) => (r.info = [])), /missing "info" object/],
    ["info null", metaText((r) => (r.info = null)), /missing "info" object/],
    [
      "files not an array",
      metaText((r) => (infoOf(r).files = {})),
      /"info.files" must be an array/,
    ],
    ["name missing", metaText((r) => delete infoOf(r).name), /"info.name" must be a string/],
    ["name number", metaText((r) => (infoOf(r).name = 5)), /"info.name" must be a string/],
    [
      "length string",
      metaText((r) => (infoOf(r).length = "3000")),
      /"info.length" must be an integer/,
    ],
    [
      "length fraction",
      metaText((r) => (infoOf(r).length = 3000.5)),
      /"info.length" must be an integer/,
    ],
    ["length negative", metaText((r) => (infoOf(r).length = -1)), /invalid length -1/],
    [
      "length unsafe",
      metaText((r) => (infoOf(r).length = 2 ** 53)),
      /"info.length" must be an integer/,
    ],
    [
      "piece length fraction",
      metaText((r) => (infoOf(r).pieceLength = 1024.5)),
      /must be an integer/,
    ],
    [
      "piece length 3000",
      metaText((r) => (infoOf(r).pieceLength = 3000)),
      /invalid piece length 3000/,
    ],
    [
      "piece length 1536",
      metaText((r) => (infoOf(r).pieceLength = 1536)),
      /invalid piece length 1536/,
    ],
    ["piece length 0", metaText((r) => (infoOf(r).pieceLength = 0)), /invalid piece length 0/],
    [
      "piece length -1024",
      metaText((r) => (infoOf(r).pieceLength = -1024)),
      /invalid piece length/,
    ],
    [
      "piece length 512",
      metaText((r) => (infoOf(r).pieceLength = 512)),
      /invalid piece length 512/,
    ],
    [
      "piece length 128 MiB",
      metaText((r) => (infoOf(r).pieceLength = 2 ** 27)),
      /invalid piece length/,
    ],
    [
      "pieces not array",
      metaText((r) => (infoOf(r).pieces = HASH_A)),
      /"info.pieces" must be an array/,
    ],
    [
      "pieces with number",
      metaText((r) => (infoOf(r).pieces = [HASH_A, 1, HASH_C])),
      /must be an array/,
    ],
    [
      "too few pieces",
      metaText((r) => (infoOf(r).pieces = [HASH_A, HASH_B])),
      /piece count 2 does not match/,
    ],
    [
      "too many pieces",
      metaText((r) => (infoOf(r).pieces = [HASH_A, HASH_B, HASH_C, HASH_A])),
      /piece count 4/,
    ],
    [
      "upper-case hex",
      metaText((r) => (infoOf(r).pieces = [HASH_A, "B".repeat(64), HASH_C])),
      /piece 1 hash/,
    ],
    [
      "non-hex",
      metaText((r) => (infoOf(r).pieces = [HASH_A, HASH_B, "g".repeat(64)])),
      /piece 2 hash/,
    ],
    [
      "short hash",
      metaText((r) => (infoOf(r).pieces = ["a".repeat(63), HASH_B, HASH_C])),
      /piece 0 hash/,
    ],
    [
      "long hash",
      metaText((r) => (infoOf(r).pieces = ["a".repeat(66), HASH_B, HASH_C])),
      /piece 0 hash/,
    ],
    ["traversal name", metaText((r) => (infoOf(r).name = "..")), /unsafe name/],
    [
      "path name",
      metaText((r) => (infoOf(r).name = "../../etc/passwd")),
      /unsafe name.*path separator/,
    ],
    ["absolute name", metaText((r) => (infoOf(r).name = "/etc/passwd")), /unsafe name/],
    ["empty name", metaText((r) => (infoOf(r).name = "")), /unsafe name.*empty name/],
    [
      "reserved name",
      metaText((r) => (infoOf(r).name = "CON")),
      /unsafe name.*reserved on Windows/,
    ],
    [
      "tampered hash",
      metaText((r) => (r.infoHash = "0".repeat(64))),
      /info hash 0{64} does not match/,
    ],
    [
      "upper-case hash",
      metaText((r) => (r.infoHash = DEMO_INFO_HASH.toUpperCase())),
      /does not match/,
    ],
    [
      "hash of other info",
      metaText((r) => (infoOf(r).name = "other.bin")),
      /does not match its info/,
    ],
    [
      "trackers not array",
      metaText((r) => (r.trackers = "http://t")),
      /"trackers" must be an array/,
    ],
    ["trackers number", metaText((r) => (r.trackers = [1])), /"trackers" must be an array/],
    [
      "too many trackers",
      metaText((
        r,
      ) => (r.trackers = Array.from({ length: MAX_TRACKERS + 1 }, (_, i) => `http://t${i}/`))),
      /too many trackers \(65 > 64\)/,
    ],
  ];
  for (const [label, text, pattern] of cases) {
    await assertRejects(text, pattern, label);
  }
});

Deno.test("parseMetadata() keeps the cause of a JSON syntax error", async () => {
  await assert.rejects(parseMetadata("{"), (err: unknown) => {
    assert.ok(err instanceof MetadataError);
    assert.ok(err.cause instanceof SyntaxError);
    return true;
  });
});

Deno.test("parseMetadata() accepts the piece length bounds", async () => {
  for (const pieceLength of [MIN_PIECE_LENGTH, MAX_PIECE_LENGTH]) {
    const info: Info = {
      name: "x",
      length: pieceLength + 1,
      pieceLength,
      pieces: [HASH_A, HASH_B],
    };
    const meta = await parseMetadata(JSON.stringify({ version: 1, info }));
    assert.equal(meta.info.pieceLength, pieceLength);
  }
});

Deno.test("trackers, comment and creator are not part of the info hash", async () => {
  const bare = await buildMetadata(demoInfo());
  const dressed = await buildMetadata(demoInfo(), {
    trackers: ["http://tracker.example/announce"],
    comment: "anything",
    createdBy: "someone",
    creationDate: "2000-01-01",
  });
  assert.equal(bare.infoHash, DEMO_INFO_HASH);
  assert.equal(dressed.infoHash, DEMO_INFO_HASH);
  const parsed = await parseMetadata(
    metaText((r) => {
      r.trackers = ["http://other.example/announce"];
      r.comment = "changed";
      r.createdBy = "another";
    }),
  );
  assert.equal(parsed.infoHash, DEMO_INFO_HASH);
  assert.deepEqual(parsed.trackers, ["http://other.example/announce"]);
  assert.equal(parsed.comment, "changed");
  assert.equal(parsed.createdBy, "another");
});

Deno.test("parseMetadata() bounds the optional text fields and ignores wrong types", async () => {
  const meta = await parseMetadata(
    metaText((r) => {
      r.comment = "c".repeat(MAX_COMMENT_CHARS + 100);
      r.createdBy = "x".repeat(1000);
      r.creationDate = 12345;
    }),
  );
  assert.equal(meta.comment?.length, MAX_COMMENT_CHARS);
  assert.equal(meta.createdBy?.length, 256);
  assert.equal(meta.creationDate, undefined);
  assert.equal("creationDate" in meta, false);
});

Deno.test("validateInfo() accepts a consistent info section and rejects each inconsistency", () => {
  validateInfo(demoInfo());
  validateInfo({ name: "empty", length: 0, pieceLength: 1024, pieces: [] });
  const bad: Info[] = [
    { ...demoInfo(), name: "a/b" },
    { ...demoInfo(), length: 1.5 },
    { ...demoInfo(), length: NaN },
    { ...demoInfo(), pieceLength: NaN },
    { ...demoInfo(), pieceLength: 2 ** 32 },
    { ...demoInfo(), pieces: [HASH_A, HASH_B, HASH_C, HASH_C] },
    { ...demoInfo(), pieces: [HASH_A, HASH_B, ""] },
  ];
  for (const info of bad) {
    assert.throws(() => validateInfo(info), MetadataError, JSON.stringify(info));
  }
});

// ---------------------------------------------------------------------------------------------
// Directory shares

/** A folder share: 3000 bytes over five files and an empty folder, pieces of 1024. */
function dirInfo(): Info {
  return {
    name: "holiday",
    length: 3000,
    pieceLength: 1024,
    pieces: [HASH_A, HASH_B, HASH_C],
    files: [
      { path: ["a.txt"], length: 1000 },
      { path: ["empty"], length: 0, dir: true },
      { path: ["photos", "b.jpg"], length: 1500 },
      { path: ["photos", "empty.txt"], length: 0 },
      { path: ["photos", "été", "c.txt"], length: 500 },
    ],
  };
}

/** Pinned with `printf '%s' '<canonical>' | sha256sum`: a change breaks every folder share. */
const DIR_CANONICAL = `{"files":[{"length":1000,"path":["a.txt"]},{"dir":true,"length":0,"path":` +
  `["empty"]},{"length":1500,"path":["photos","b.jpg"]},{"length":0,"path":["photos",` +
  `"empty.txt"]},{"length":500,"path":["photos","été","c.txt"]}],"length":3000,` +
  `"name":"holiday","pieceLength":1024,"pieces":["${HASH_A}","${HASH_B}","${HASH_C}"]}`;
const DIR_INFO_HASH = "57345bfacaf2aec64cb870ceaf5e7eb52d9929d83c56674458ca2f806ed38bfe";

/** The text of a folder share's metadata with `edit` applied to its info (hash recomputed). */
async function dirMetaText(edit: (info: Record<string, unknown>) => void): Promise<string> {
  const info = structuredClone(dirInfo()) as unknown as Record<string, unknown>;
  edit(info);
  // A correct info hash for the edited info: the refusal must come from the content itself.
  const infoHash = toHex(await sha256(new TextEncoder().encode(canonicalJson(info))));
  return JSON.stringify({ version: 1, infoHash, info });
}

function filesOf(info: Record<string, unknown>): Record<string, unknown>[] {
  return info.files as Record<string, unknown>[];
}

Deno.test("a folder share's canonical encoding and info hash are pinned", async () => {
  assert.equal(canonicalJson(dirInfo()), DIR_CANONICAL);
  assert.equal(
    await computeInfoHash(dirInfo()),
    toHex(await sha256(new TextEncoder().encode(DIR_CANONICAL))),
  );
  assert.equal(await computeInfoHash(dirInfo()), DIR_INFO_HASH);
});

Deno.test("a folder share survives build -> encode -> parse with the same info hash", async () => {
  const built = await buildMetadata(dirInfo(), { trackers: ["t:7000"], comment: "c" });
  const text = encodeMetadata(built);
  const parsed = await parseMetadata(text);
  assert.deepEqual(parsed.info, dirInfo());
  assert.equal(parsed.infoHash, built.infoHash);
  assert.equal(parsed.infoHash, DIR_INFO_HASH);
  assert.deepEqual(parsed.trackers, ["t:7000"]);
  assert.equal(encodeMetadata(parsed), text, "encode(parse(text)) gives the same text");
  // One line per file entry, listed before the pieces.
  assert.match(text, /\n {6}\{"path":\["photos","été","c\.txt"\],"length":500\}\n/);
  assert.ok(text.indexOf('"files"') < text.indexOf('"pieces"'));
  assert.equal(isDirectoryShare(parsed.info), true);
  assert.deepEqual(shareEntries(parsed.info), dirInfo().files);
});

Deno.test("single-file metadata has no files key and keeps its pinned info hash", async () => {
  const meta = await buildMetadata(demoInfo());
  assert.equal(meta.infoHash, DEMO_INFO_HASH);
  assert.equal("files" in meta.info, false);
  const text = encodeMetadata(meta);
  assert.doesNotMatch(text, /files/);
  assert.equal(isDirectoryShare(meta.info), false);
  assert.deepEqual(shareEntries(meta.info), [{ path: ["demo.bin"], length: 3000 }]);
  assert.equal((await parseMetadata(text)).infoHash, DEMO_INFO_HASH);
});

Deno.test("a folder share may be empty, or hold only empty files and folders", async () => {
  for (
    const files of [
      [],
      [{ path: ["e"], length: 0, dir: true as const }],
      [{ path: ["a"], length: 0 }, { path: ["b", "c"], length: 0, dir: true as const }],
    ]
  ) {
    const info: Info = { name: "x", length: 0, pieceLength: 1024, pieces: [], files };
    const meta = await parseMetadata(JSON.stringify({ version: 1, info }));
    assert.deepEqual(meta.info.files, files);
  }
});

Deno.test("sortEntries() puts entries in the order the metadata requires", () => {
  const entries = [
    { path: ["photos", "été", "c.txt"], length: 500 },
    { path: ["photos", "b.jpg"], length: 1500 },
    { path: ["a.txt"], length: 1000 },
    { path: ["photos", "empty.txt"], length: 0 },
    { path: ["empty"], length: 0, dir: true as const },
  ];
  assert.deepEqual(sortEntries(entries), dirInfo().files);
});

/** Every way a folder share's file list can be wrong, with the one-line reason expected. */
const BAD_FILE_LISTS: {
  what: string;
  edit: (info: Record<string, unknown>) => void;
  reason: RegExp;
}[] = [
  {
    what: "absolute path",
    edit: (i) => (filesOf(i)[0].path = ["", "etc", "passwd"]),
    reason: /unsafe path "\/etc\/passwd": absolute path/,
  },
  {
    what: "path given as a string",
    edit: (i) => (filesOf(i)[0].path = "/etc/passwd"),
    reason: /"info\.files\[0\]\.path" must be an array of names, got "\/etc\/passwd"/,
  },
  {
    what: "drive letter",
    edit: (i) => (filesOf(i)[0].path = ["C:", "evil.txt"]),
    reason: /unsafe path "C:\/evil\.txt": drive letter/,
  },
  {
    what: "dot-dot",
    edit: (i) => (filesOf(i)[0].path = ["..", "..", "a.txt"]),
    reason: /unsafe path "\.\.\/\.\.\/a\.txt": "\.\." segment/,
  },
  {
    what: "dot",
    edit: (i) => (filesOf(i)[0].path = [".", "a.txt"]),
    reason: /unsafe path "\.\/a\.txt": "\." segment/,
  },
  {
    what: "empty segment",
    edit: (i) => (filesOf(i)[0].path = ["a", "", "a.txt"]),
    reason: /unsafe path "a\/\/a\.txt": empty segment/,
  },
  {
    what: "backslash",
    edit: (i) => (filesOf(i)[0].path = ["..\\a.txt"]),
    reason: /unsafe path "\.\.\\\\a\.txt": backslash in name/,
  },
  {
    what: "NUL",
    edit: (i) => (filesOf(i)[0].path = ["a\u0000.txt"]),
    reason: /unsafe path "a\\u0000\.txt": control character in name/,
  },
  {
    what: "Windows reserved name",
    edit: (i) => (filesOf(i)[0].path = ["AUX.txt"]),
    reason: /unsafe path "AUX\.txt": name reserved on Windows/,
  },
  {
    what: "overlong name",
    edit: (i) => (filesOf(i)[0].path = ["a".repeat(256)]),
    reason: /unsafe path "a{200}…": name longer than 255 bytes/,
  },
  {
    what: "overlong path",
    edit: (i) => (filesOf(i)[0].path = Array.from({ length: 17 }, () => "a".repeat(250))),
    reason: /unsafe path "a+.*": path longer than 4096 bytes/,
  },
  {
    what: "duplicate path",
    edit: (i) => (filesOf(i)[3].path = ["photos", "b.jpg"]),
    reason: /duplicate path "photos\/b\.jpg"/,
  },
  {
    what: "paths differing only in case",
    edit: (i) => (filesOf(i)[3].path = ["Photos", "B.JPG"]),
    reason: /paths "photos\/b\.jpg" and "Photos\/B\.JPG" differ only in case/,
  },
  {
    what: "paths differing only in Unicode form",
    edit: (i) => (filesOf(i)[0].path = ["photos", "e\u0301te\u0301", "c.txt"]),
    reason: /paths .* differ only in case or Unicode form/,
  },
  {
    what: "a file used as a folder",
    edit: (i) => (filesOf(i)[0].path = ["photos"]),
    reason: /path "photos" is a file and also a folder \(of "photos\/b\.jpg"\)/,
  },
  {
    what: "an empty folder that holds something",
    edit: (i) => (filesOf(i)[1].path = ["photos"]),
    reason: /empty folder "photos" holds "photos\/b\.jpg"/,
  },
  {
    what: "an empty folder with bytes",
    edit: (i) => (filesOf(i)[1].length = 5),
    reason: /empty folder "empty" has length 5/,
  },
  {
    what: "dir: false",
    edit: (i) => (filesOf(i)[0].dir = false),
    reason: /"info\.files\[0\]\.dir" of "a\.txt" must be true when present/,
  },
  {
    what: "lengths not adding up",
    edit: (i) => (filesOf(i)[0].length = 999),
    reason: /file lengths add up to 2999, not info\.length 3000/,
  },
  {
    what: "a piece count that does not match",
    edit: (i) => {
      i.length = 5000;
      filesOf(i)[0].length = 3000;
    },
    reason: /piece count 3 does not match length 5000/,
  },
  {
    what: "negative length",
    edit: (i) => (filesOf(i)[0].length = -1),
    reason: /invalid length -1 of "a\.txt"/,
  },
  {
    what: "files out of order",
    edit: (i) => filesOf(i).reverse(),
    reason: /files not in canonical order: "photos\/été\/c\.txt" comes before "photos\/empty\.txt"/,
  },
  {
    what: "unknown key in an entry",
    edit: (i) => (filesOf(i)[2].mode = 0o755),
    reason: /unknown field "info\.files\[2\]\.mode"/,
  },
  {
    what: "entry not an object",
    edit: (i) => ((i.files as unknown[])[0] = "a.txt"),
    reason: /"info\.files\[0\]" must be an object/,
  },
];

for (const { what, edit, reason } of BAD_FILE_LISTS) {
  Deno.test(`parseMetadata() refuses a folder share with ${what}, in one line`, async () => {
    const text = await dirMetaText(edit);
    await assertRejects(text, reason, what);
    await assert.rejects(parseMetadata(text), (err: unknown) => {
      assert.doesNotMatch((err as Error).message, /\n/, "one line");
      return true;
    });
  });
}
