import assert from "node:assert/strict";
import { ProtocolError } from "../lib/errors.ts";
import {
  allocPieceFrame,
  decodeBody,
  encodeBitfield,
  encodeCancel,
  encodeError,
  encodeFrame,
  encodeHandshake,
  encodeHave,
  encodeKeepAlive,
  encodePort,
  encodeReject,
  encodeRequest,
  encodeRequests,
  encodeSignal,
  FrameDecoder,
  INFO_HASH_BYTES,
  MAX_BLOCK_BYTES,
  MAX_ERROR_TEXT_BYTES,
  MAX_FRAME_BYTES,
  MAX_HANDSHAKE_FRAME_BYTES,
  type Message,
  MessageType,
  PEER_ID_BYTES,
  PIECE_HEADER_BYTES,
  PROTOCOL_MAGIC,
  PROTOCOL_VERSION,
} from "../lib/wire.ts";

const INFO_HASH = Uint8Array.from({ length: INFO_HASH_BYTES }, (_, i) => i);
const PEER_ID = Uint8Array.from({ length: PEER_ID_BYTES }, (_, i) => 0xa0 + i);

function pieceFrame(index: number, begin: number, bytes: number[]): Uint8Array {
  const { frame, data } = allocPieceFrame(index, begin, bytes.length);
  data.set(bytes);
  return frame;
}

/** A raw frame: length prefix, then the body bytes as given. */
function rawFrame(body: number[]): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Takes every whole message out of the decoder. */
function drain(decoder: FrameDecoder): Message[] {
  const out: Message[] = [];
  for (let message = decoder.next(); message !== undefined; message = decoder.next()) {
    out.push(message);
  }
  return out;
}

function assertProtocolError(fn: () => unknown, pattern: RegExp, label?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `${label ?? ""}: expected ProtocolError, got ${err}`);
    assert.equal(err.name, "ProtocolError");
    assert.match(err.message, pattern, label);
    return true;
  });
}

/** One frame of every message type, and what it must decode to. */
const EVERY_MESSAGE: [string, Uint8Array, Message][] = [
  [
    "handshake",
    encodeHandshake(INFO_HASH, PEER_ID, 0xbeef),
    {
      type: "handshake",
      version: PROTOCOL_VERSION,
      flags: 0xbeef,
      infoHash: INFO_HASH,
      peerId: PEER_ID,
    },
  ],
  [
    "handshake without flags",
    encodeHandshake(INFO_HASH, PEER_ID),
    {
      type: "handshake",
      version: PROTOCOL_VERSION,
      flags: 0,
      infoHash: INFO_HASH,
      peerId: PEER_ID,
    },
  ],
  ["keep-alive", encodeKeepAlive(), { type: "keepalive" }],
  ["error", encodeError("no such share"), { type: "error", message: "no such share" }],
  ["error unicode", encodeError("café ☕ 日本"), { type: "error", message: "café ☕ 日本" }],
  ["error empty", encodeError(""), { type: "error", message: "" }],
  [
    "bitfield",
    encodeBitfield(new Uint8Array([0xff, 0x00, 0xa5])),
    { type: "bitfield", bytes: new Uint8Array([0xff, 0x00, 0xa5]) },
  ],
  ["bitfield empty", encodeBitfield(new Uint8Array(0)), {
    type: "bitfield",
    bytes: new Uint8Array(0),
  }],
  ["have", encodeHave(42), { type: "have", index: 42 }],
  ["have max", encodeHave(0xffffffff), { type: "have", index: 0xffffffff }],
  ["request", encodeRequest(1, 16384, 16384), {
    type: "request",
    index: 1,
    begin: 16384,
    length: 16384,
  }],
  [
    "request max",
    encodeRequest(0xffffffff, 0xfffffffe, 0xfffffffd),
    { type: "request", index: 0xffffffff, begin: 0xfffffffe, length: 0xfffffffd },
  ],
  [
    "piece",
    pieceFrame(7, 1024, [1, 2, 3, 4, 5]),
    { type: "piece", index: 7, begin: 1024, data: new Uint8Array([1, 2, 3, 4, 5]) },
  ],
  ["piece empty", pieceFrame(0, 0, []), {
    type: "piece",
    index: 0,
    begin: 0,
    data: new Uint8Array(0),
  }],
  ["cancel", encodeCancel(2, 0, 512), { type: "cancel", index: 2, begin: 0, length: 512 }],
  ["reject", encodeReject(3, 512, 256), { type: "reject", index: 3, begin: 512, length: 256 }],
  ["choke", encodeSignal(MessageType.CHOKE), { type: "choke" }],
  ["unchoke", encodeSignal(MessageType.UNCHOKE), { type: "unchoke" }],
  ["interested", encodeSignal(MessageType.INTERESTED), { type: "interested" }],
  ["not interested", encodeSignal(MessageType.NOT_INTERESTED), { type: "not_interested" }],
  ["unknown code", rawFrame([200, 9, 9, 9]), { type: "unknown", code: 200 }],
];

Deno.test("MessageType codes are pinned (changing one breaks interoperability)", () => {
  assert.deepEqual({ ...MessageType }, {
    HANDSHAKE: 0,
    ERROR: 1,
    BITFIELD: 2,
    HAVE: 3,
    REQUEST: 4,
    PIECE: 5,
    CANCEL: 6,
    REJECT: 7,
    CHOKE: 8,
    UNCHOKE: 9,
    INTERESTED: 10,
    NOT_INTERESTED: 11,
    PORT: 12,
  });
  assert.equal(new TextDecoder().decode(PROTOCOL_MAGIC), "P2PSHARE");
});

Deno.test("encodePort() round trips and decodeBody() refuses port 0", () => {
  assert.deepEqual([...encodePort(6881)], [0, 0, 0, 3, 12, 0x1a, 0xe1]);
  assert.deepEqual(decodeBody(encodePort(6881).subarray(4)), { type: "port", port: 6881 });
  assert.throws(() => decodeBody(new Uint8Array([12, 0, 0])), ProtocolError);
  assert.throws(() => encodePort(0), RangeError);
});

Deno.test("encoders write the documented byte layout", () => {
  const cases: [string, Uint8Array, number[]][] = [
    ["keep-alive", encodeKeepAlive(), [0, 0, 0, 0]],
    ["choke", encodeSignal(MessageType.CHOKE), [0, 0, 0, 1, 8]],
    ["unchoke", encodeSignal(MessageType.UNCHOKE), [0, 0, 0, 1, 9]],
    ["interested", encodeSignal(MessageType.INTERESTED), [0, 0, 0, 1, 10]],
    ["not interested", encodeSignal(MessageType.NOT_INTERESTED), [0, 0, 0, 1, 11]],
    ["have", encodeHave(0x01020304), [0, 0, 0, 5, 3, 1, 2, 3, 4]],
    ["request", encodeRequest(1, 2, 3), [0, 0, 0, 13, 4, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]],
    ["cancel", encodeCancel(0x0a, 0x0b00, 0x0c0000), [
      0,
      0,
      0,
      13,
      6,
      0,
      0,
      0,
      10,
      0,
      0,
      11,
      0,
      0,
      12,
      0,
      0,
    ]],
    ["reject", encodeReject(1, 2, 3), [0, 0, 0, 13, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]],
    ["bitfield", encodeBitfield(new Uint8Array([0xf0, 0x0f])), [0, 0, 0, 3, 2, 0xf0, 0x0f]],
    ["error", encodeError("hi"), [0, 0, 0, 3, 1, 0x68, 0x69]],
  ];
  for (const [label, actual, expected] of cases) {
    assert.deepEqual(actual, new Uint8Array(expected), label);
  }
});

Deno.test("encodeHandshake() writes magic, version, flags, info hash and peer id in order", () => {
  const frame = encodeHandshake(INFO_HASH, PEER_ID, 0x0102);
  const payloadBytes = PROTOCOL_MAGIC.length + 2 + 2 + INFO_HASH_BYTES + PEER_ID_BYTES;
  assert.equal(frame.length, 4 + 1 + payloadBytes);
  assert.equal(new DataView(frame.buffer).getUint32(0), 1 + payloadBytes);
  assert.ok(1 + payloadBytes <= MAX_HANDSHAKE_FRAME_BYTES);
  assert.equal(frame[4], MessageType.HANDSHAKE);
  assert.deepEqual(frame.subarray(5, 13), PROTOCOL_MAGIC);
  assert.deepEqual(frame.subarray(13, 15), new Uint8Array([0, PROTOCOL_VERSION]));
  assert.deepEqual(frame.subarray(15, 17), new Uint8Array([0x01, 0x02]));
  assert.deepEqual(frame.subarray(17, 17 + INFO_HASH_BYTES), INFO_HASH);
  assert.deepEqual(frame.subarray(17 + INFO_HASH_BYTES), PEER_ID);
});

Deno.test("encodeHandshake() rejects an info hash or peer id of the wrong length", () => {
  const cases: [Uint8Array, Uint8Array][] = [
    [new Uint8Array(31), PEER_ID],
    [new Uint8Array(33), PEER_ID],
    [new Uint8Array(20), PEER_ID],
    [INFO_HASH, new Uint8Array(19)],
    [INFO_HASH, new Uint8Array(21)],
    [INFO_HASH, new Uint8Array(0)],
  ];
  for (const [infoHash, peerId] of cases) {
    assert.throws(
      () => encodeHandshake(infoHash, peerId),
      RangeError,
      `${infoHash.length}/${peerId.length}`,
    );
  }
});

Deno.test("every message type round trips through FrameDecoder", () => {
  for (const [label, frame, expected] of EVERY_MESSAGE) {
    const decoder = new FrameDecoder(MAX_FRAME_BYTES);
    decoder.push(frame);
    assert.deepEqual(decoder.next(), expected, label);
    assert.equal(decoder.next(), undefined, label);
    assert.equal(decoder.buffered, 0, label);
    decoder.finish();
  }
});

Deno.test("FrameDecoder decodes several frames from one chunk", () => {
  const decoder = new FrameDecoder(MAX_FRAME_BYTES);
  decoder.push(concat(EVERY_MESSAGE.map(([, frame]) => frame)));
  assert.deepEqual(drain(decoder), EVERY_MESSAGE.map(([, , message]) => message));
  assert.equal(decoder.buffered, 0);
  decoder.finish();
});

Deno.test("encodeRequests() is the requests' frames back to back, in order", () => {
  const blocks = [
    { index: 3, begin: 0, length: 262144 },
    { index: 3, begin: 262144, length: 1000 },
    { index: 9, begin: 0, length: 16384 },
  ];
  const batch = encodeRequests(blocks);
  assert.deepEqual(
    batch,
    Uint8Array.from(blocks.flatMap((b) => [...encodeRequest(b.index, b.begin, b.length)])),
  );
  const decoder = new FrameDecoder(MAX_FRAME_BYTES);
  decoder.push(batch);
  assert.deepEqual(drain(decoder), blocks.map((b) => ({ type: "request", ...b })));
  assert.equal(encodeRequests([]).length, 0);
});

Deno.test("FrameDecoder decodes a stream split at every byte boundary", () => {
  const stream = concat(EVERY_MESSAGE.map(([, frame]) => frame));
  const expected = EVERY_MESSAGE.map(([, , message]) => message);
  for (let cut = 0; cut <= stream.length; cut++) {
    const decoder = new FrameDecoder(MAX_FRAME_BYTES);
    decoder.push(stream.subarray(0, cut));
    const got = drain(decoder);
    decoder.push(stream.subarray(cut));
    got.push(...drain(decoder));
    assert.deepEqual(got, expected, `cut at ${cut}`);
    decoder.finish();
  }
});

Deno.test("FrameDecoder decodes a stream split at every pair of byte boundaries", () => {
  const stream = concat(EVERY_MESSAGE.map(([, frame]) => frame));
  const expected = EVERY_MESSAGE.map(([, , message]) => message);
  for (let first = 0; first <= stream.length; first += 2) {
    for (let second = first; second <= stream.length; second += 3) {
      const decoder = new FrameDecoder(MAX_FRAME_BYTES);
      const got: Message[] = [];
      for (
        const part of [
          stream.subarray(0, first),
          stream.subarray(first, second),
          stream.subarray(second),
        ]
      ) {
        decoder.push(part);
        got.push(...drain(decoder));
      }
      assert.deepEqual(got, expected, `cuts at ${first} and ${second}`);
      assert.equal(decoder.buffered, 0);
    }
  }
});

Deno.test("FrameDecoder decodes a stream fed one byte at a time", () => {
  const stream = concat(EVERY_MESSAGE.map(([, frame]) => frame));
  const decoder = new FrameDecoder(MAX_FRAME_BYTES);
  const got: Message[] = [];
  for (let i = 0; i < stream.length; i++) {
    decoder.push(stream.subarray(i, i + 1));
    assert.equal(decoder.buffered <= 4 + MAX_FRAME_BYTES, true);
    got.push(...drain(decoder));
  }
  assert.deepEqual(got, EVERY_MESSAGE.map(([, , message]) => message));
  decoder.finish();
});

Deno.test("FrameDecoder reports buffered bytes and ignores empty chunks", () => {
  const decoder = new FrameDecoder();
  decoder.push(new Uint8Array(0));
  assert.equal(decoder.buffered, 0);
  const have = encodeHave(5);
  decoder.push(have.subarray(0, 3));
  assert.equal(decoder.buffered, 3);
  assert.equal(decoder.next(), undefined);
  decoder.push(new Uint8Array(0));
  decoder.push(have.subarray(3, 6));
  assert.equal(decoder.buffered, 6);
  assert.equal(decoder.next(), undefined);
  decoder.push(have.subarray(6));
  assert.deepEqual(decoder.next(), { type: "have", index: 5 });
  assert.equal(decoder.buffered, 0);
});

Deno.test("FrameDecoder returns a frame inside one chunk as a view, a split frame as its own copy", () => {
  const frame = pieceFrame(1, 2, [9, 8, 7]);
  const whole = new FrameDecoder();
  whole.push(frame);
  const view = whole.nextBody();
  assert.ok(view);
  assert.equal(view.buffer, frame.buffer);
  assert.equal(view.byteOffset, 4);
  assert.deepEqual(view, frame.subarray(4));

  const split = new FrameDecoder();
  split.push(frame.subarray(0, 10));
  split.push(frame.subarray(10));
  const copy = split.nextBody();
  assert.ok(copy);
  assert.notEqual(copy.buffer, frame.buffer);
  assert.equal(copy.byteLength, frame.length - 4);
  assert.deepEqual(copy, frame.subarray(4));
});

Deno.test("FrameDecoder decodes a keep-alive between other frames", () => {
  const decoder = new FrameDecoder();
  decoder.push(concat([encodeKeepAlive(), encodeHave(1), encodeKeepAlive(), encodeKeepAlive()]));
  assert.deepEqual(drain(decoder), [
    { type: "keepalive" },
    { type: "have", index: 1 },
    { type: "keepalive" },
    { type: "keepalive" },
  ]);
  assert.deepEqual(decodeBody(new Uint8Array(0)), { type: "keepalive" });
});

Deno.test("FrameDecoder.next() rejects a frame over the limit from its length prefix alone", () => {
  const cases: [number, number][] = [
    [MAX_HANDSHAKE_FRAME_BYTES, MAX_HANDSHAKE_FRAME_BYTES + 1],
    [MAX_HANDSHAKE_FRAME_BYTES, 0xffffffff],
    [MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1],
    [MAX_FRAME_BYTES, 0x7fffffff],
    [MAX_FRAME_BYTES, 0xffffffff],
    [0, 1],
  ];
  for (const [limit, length] of cases) {
    const decoder = new FrameDecoder(limit);
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, length);
    decoder.push(header);
    assertProtocolError(
      () => decoder.next(),
      new RegExp(`frame of ${length} bytes exceeds the limit of ${limit}`),
      `${length} > ${limit}`,
    );
    assert.equal(decoder.buffered, 4, "nothing past the header was needed");
  }
});

Deno.test("FrameDecoder rejects an oversized length prefix split across chunks", () => {
  const decoder = new FrameDecoder();
  decoder.push(new Uint8Array([0x00, 0x10]));
  assert.equal(decoder.next(), undefined);
  decoder.push(new Uint8Array([0x00]));
  assert.equal(decoder.next(), undefined);
  decoder.push(new Uint8Array([0x00]));
  assertProtocolError(() => decoder.next(), /frame of 1048576 bytes exceeds the limit of 256/);
});

Deno.test("FrameDecoder accepts a frame of exactly the limit", () => {
  const decoder = new FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES);
  const body = [250, ...new Array(MAX_HANDSHAKE_FRAME_BYTES - 1).fill(7)];
  const frame = rawFrame(body);
  decoder.push(frame.subarray(0, 4));
  assert.equal(decoder.next(), undefined);
  decoder.push(frame.subarray(4));
  assert.deepEqual(decoder.next(), { type: "unknown", code: 250 });
});

Deno.test("FrameDecoder defaults to the handshake limit, which can be raised after the handshake", () => {
  const decoder = new FrameDecoder();
  assert.equal(decoder.maxFrameBytes, MAX_HANDSHAKE_FRAME_BYTES);
  decoder.push(encodeHandshake(INFO_HASH, PEER_ID));
  assert.equal(decoder.next()?.type, "handshake");
  const data = Array.from({ length: 1000 }, (_, i) => i & 0xff);
  decoder.push(pieceFrame(0, 0, data));
  assertProtocolError(() => decoder.next(), /exceeds the limit of 256/);

  const raised = new FrameDecoder();
  raised.push(encodeHandshake(INFO_HASH, PEER_ID));
  assert.equal(raised.next()?.type, "handshake");
  raised.maxFrameBytes = MAX_FRAME_BYTES;
  raised.push(pieceFrame(0, 0, data));
  assert.deepEqual(raised.next(), {
    type: "piece",
    index: 0,
    begin: 0,
    data: new Uint8Array(data),
  });
});

Deno.test("the largest block fits in the largest frame", () => {
  const { frame, data } = allocPieceFrame(3, 0, MAX_BLOCK_BYTES);
  data.fill(0x5a);
  assert.ok(new DataView(frame.buffer).getUint32(0) <= MAX_FRAME_BYTES);
  const decoder = new FrameDecoder(MAX_FRAME_BYTES);
  decoder.push(frame.subarray(0, 100_000));
  assert.equal(decoder.next(), undefined);
  decoder.push(frame.subarray(100_000));
  const message = decoder.next();
  assert.ok(message?.type === "piece");
  assert.equal(message.index, 3);
  assert.equal(message.data.length, MAX_BLOCK_BYTES);
  assert.ok(message.data.every((b) => b === 0x5a));
});

Deno.test("decodeBody() rejects a handshake with a bad protocol id", () => {
  for (const at of [5, 8, 12]) {
    const frame = encodeHandshake(INFO_HASH, PEER_ID);
    frame[at] ^= 0xff;
    const decoder = new FrameDecoder();
    decoder.push(frame);
    assertProtocolError(() => decoder.next(), /bad protocol id/, `byte ${at}`);
  }
  const bittorrent = new TextEncoder().encode("BitTorrent protocol").subarray(0, 8);
  const frame = encodeHandshake(INFO_HASH, PEER_ID);
  frame.set(bittorrent, 5);
  assertProtocolError(() => decodeBody(frame.subarray(4)), /not a p2p-share peer/);
});

Deno.test("decodeBody() reports the version and flags a peer sent", () => {
  const frame = encodeHandshake(INFO_HASH, PEER_ID, 0xffff);
  new DataView(frame.buffer).setUint16(13, 0x0203);
  const message = decodeBody(frame.subarray(4));
  assert.ok(message.type === "handshake");
  assert.equal(message.version, 0x0203);
  assert.equal(message.flags, 0xffff);
});

Deno.test("decodeBody() rejects payloads of the wrong size for their type", () => {
  const cases: [string, number, number, RegExp][] = [
    ["handshake empty", MessageType.HANDSHAKE, 0, /handshake message of 0 bytes, expected 64/],
    ["handshake short", MessageType.HANDSHAKE, 63, /handshake message of 63 bytes, expected 64/],
    ["handshake long", MessageType.HANDSHAKE, 65, /handshake message of 65 bytes, expected 64/],
    ["have empty", MessageType.HAVE, 0, /have message of 0 bytes, expected 4/],
    ["have short", MessageType.HAVE, 3, /have message of 3 bytes, expected 4/],
    ["have long", MessageType.HAVE, 5, /have message of 5 bytes, expected 4/],
    ["request short", MessageType.REQUEST, 11, /request message of 11 bytes, expected 12/],
    ["request long", MessageType.REQUEST, 13, /request message of 13 bytes, expected 12/],
    ["cancel short", MessageType.CANCEL, 8, /cancel message of 8 bytes, expected 12/],
    ["cancel long", MessageType.CANCEL, 16, /cancel message of 16 bytes, expected 12/],
    ["reject short", MessageType.REJECT, 0, /reject message of 0 bytes, expected 12/],
    ["reject long", MessageType.REJECT, 13, /reject message of 13 bytes, expected 12/],
    ["piece empty", MessageType.PIECE, 0, /piece message shorter than its header/],
    ["piece short", MessageType.PIECE, 7, /piece message shorter than its header/],
  ];
  for (const [label, code, payloadBytes, pattern] of cases) {
    const body = new Uint8Array(1 + payloadBytes);
    body[0] = code;
    if (code === MessageType.HANDSHAKE) body.set(PROTOCOL_MAGIC.subarray(0, payloadBytes), 1);
    assertProtocolError(() => decodeBody(body), pattern, label);
    const decoder = new FrameDecoder(MAX_FRAME_BYTES);
    decoder.push(rawFrame([...body]));
    assertProtocolError(() => decoder.next(), pattern, `${label} via FrameDecoder`);
  }
});

Deno.test("decodeBody() decodes unknown type codes as unknown so later versions can add messages", () => {
  for (const code of [13, 100, 127, 128, 255]) {
    for (const payload of [[], [1], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]) {
      assert.deepEqual(decodeBody(new Uint8Array([code, ...payload])), { type: "unknown", code });
    }
  }
  const decoder = new FrameDecoder();
  decoder.push(concat([rawFrame([99, 1, 2]), encodeHave(4)]));
  assert.deepEqual(drain(decoder), [{ type: "unknown", code: 99 }, { type: "have", index: 4 }]);
});

Deno.test("decodeBody() copies a bitfield out of decoder memory", () => {
  const frame = encodeBitfield(new Uint8Array([0x80]));
  const message = decodeBody(frame.subarray(4));
  assert.ok(message.type === "bitfield");
  frame[5] = 0x00;
  assert.deepEqual(message.bytes, new Uint8Array([0x80]));
});

Deno.test("error text is bounded by MAX_ERROR_TEXT_BYTES when sent and when received", () => {
  const long = "x".repeat(MAX_ERROR_TEXT_BYTES + 500);
  const frame = encodeError(long);
  assert.equal(new DataView(frame.buffer).getUint32(0), 1 + MAX_ERROR_TEXT_BYTES);
  assert.deepEqual(decodeBody(frame.subarray(4)), {
    type: "error",
    message: "x".repeat(MAX_ERROR_TEXT_BYTES),
  });
  // a peer that ignores the limit still gets truncated on our side
  const body = new Uint8Array(1 + 3000).fill(0x79);
  body[0] = MessageType.ERROR;
  assert.deepEqual(decodeBody(body), { type: "error", message: "y".repeat(MAX_ERROR_TEXT_BYTES) });
});

Deno.test("FrameDecoder.finish() throws on a stream cut inside a frame", () => {
  const frame = encodeRequest(1, 2, 3);
  for (let cut = 1; cut < frame.length; cut++) {
    const decoder = new FrameDecoder();
    decoder.push(encodeHave(1));
    decoder.push(frame.subarray(0, cut));
    assert.deepEqual(drain(decoder), [{ type: "have", index: 1 }]);
    assertProtocolError(
      () => decoder.finish(),
      new RegExp(`connection closed in the middle of a frame \\(${cut} bytes\\)`),
      `cut at ${cut}`,
    );
  }
});

Deno.test("FrameDecoder.finish() accepts a stream that ends on a frame boundary", () => {
  new FrameDecoder().finish();
  const decoder = new FrameDecoder();
  decoder.push(concat([encodeHave(1), encodeKeepAlive(), encodeSignal(MessageType.CHOKE)]));
  assert.equal(drain(decoder).length, 3);
  decoder.finish();
});

Deno.test("allocPieceFrame() writes the header and returns the data area as a view", () => {
  const { frame, data } = allocPieceFrame(0x01020304, 0x0a0b0c0d, 3);
  assert.equal(PIECE_HEADER_BYTES, 13);
  assert.equal(frame.length, PIECE_HEADER_BYTES + 3);
  assert.deepEqual(
    frame,
    new Uint8Array([0, 0, 0, 12, MessageType.PIECE, 1, 2, 3, 4, 10, 11, 12, 13, 0, 0, 0]),
  );
  assert.equal(data.length, 3);
  assert.equal(data.buffer, frame.buffer);
  assert.equal(data.byteOffset, PIECE_HEADER_BYTES);
  data.set([0xaa, 0xbb, 0xcc]);
  assert.deepEqual(frame.subarray(PIECE_HEADER_BYTES), new Uint8Array([0xaa, 0xbb, 0xcc]));

  const decoder = new FrameDecoder();
  decoder.push(frame);
  assert.deepEqual(decoder.next(), {
    type: "piece",
    index: 0x01020304,
    begin: 0x0a0b0c0d,
    data: new Uint8Array([0xaa, 0xbb, 0xcc]),
  });
});

Deno.test("allocPieceFrame() lays out frames of any block length", () => {
  for (const length of [0, 1, 7, 8, 9, 100, 16384]) {
    const { frame, data } = allocPieceFrame(9, length, length);
    data.fill(length & 0xff);
    assert.equal(frame.length, PIECE_HEADER_BYTES + length);
    assert.equal(new DataView(frame.buffer).getUint32(0), PIECE_HEADER_BYTES - 4 + length);
    const message = decodeBody(frame.subarray(4));
    assert.deepEqual(message, {
      type: "piece",
      index: 9,
      begin: length,
      data: new Uint8Array(length).fill(length & 0xff),
    });
  }
});

Deno.test("encodeFrame() frames any type around a payload, as the typed encoders do", () => {
  const have = encodeHave(0x01020304);
  assert.deepEqual(encodeFrame(MessageType.HAVE, have.subarray(5)), have);
  assert.deepEqual(encodeFrame(99, new Uint8Array([7, 8])), new Uint8Array([0, 0, 0, 3, 99, 7, 8]));
  assert.deepEqual(
    encodeFrame(MessageType.CHOKE, new Uint8Array(0)),
    encodeSignal(MessageType.CHOKE),
  );
});
