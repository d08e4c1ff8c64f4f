import assert from "node:assert/strict";
import { join } from "node:path";
import { Bitfield } from "../lib/bitfield.ts";
import { type DownloadResult, runDownload } from "../lib/downloader.ts";
import { errorMessage, ProtocolError } from "../lib/errors.ts";
import type { EventSink, P2PEvent } from "../lib/events.ts";
import { NULL_SINK } from "../lib/events.ts";
import { BufferPool, newPeerId, PeerConnection } from "../lib/peer_conn.ts";
import { PeerServer } from "../lib/peer_server.ts";
import { ShareStorage } from "../lib/storage.ts";
import { fromHex } from "../lib/units.ts";
import {
  allocPieceFrame,
  encodeBitfield,
  encodeHandshake,
  encodeHave,
  encodeReject,
  encodeRequest,
  encodeSignal,
  type Message,
  MessageType,
} from "../lib/wire.ts";
import {
  exists,
  makeShare,
  PIECE,
  pieceOf,
  recordingSink,
  type Share,
  tempDir,
} from "./fixtures.ts";

const HOST = "127.0.0.1";
/** 40 pieces, the last one short. */
const SHARE_BYTES = 40 * PIECE - 300;
const PIECES = 40;

// ---------------------------------------------------------------------------------------------
// Fixtures

/** Settles with `work`, or rejects when it takes longer than `ms` (then `onTimeout` runs). */
async function within<T>(
  ms: number,
  what: string,
  work: Promise<T>,
  onTimeout?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`${what}: nothing within ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Seeder extends AsyncDisposable {
  port: number;
  storage: ShareStorage;
  sink: EventSink & { events: P2PEvent[] };
}

/**
 * Serves `share` on 127.0.0.1 (port 0) from a temp folder, holding the pieces in `held`
 * (default all).
 */
async function startSeeder(share: Share, held?: number[]): Promise<Seeder> {
  const dir = await Deno.makeTempDir({ prefix: "peer_test_seed_" });
  const sink = recordingSink();
  let storage: ShareStorage;
  if (held === undefined) {
    await Deno.writeFile(join(dir, share.meta.info.name), share.data);
    storage = await ShareStorage.open(share.meta, dir, { sink: NULL_SINK });
    assert.ok(storage.have.complete);
  } else {
    storage = await ShareStorage.open(share.meta, dir, { sink: NULL_SINK });
    for (const i of held) await storage.writeVerifiedPiece(i, pieceOf(share, i));
  }
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const server = new PeerServer(storage, { peerId: newPeerId(), sink });
  const controller = new AbortController();
  const serving = server.serve(listener, controller.signal);
  return {
    port: listener.addr.port,
    storage,
    sink,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await serving;
      await storage.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Downloads `share` from the peer at `port` into a fresh folder, bounded by `timeoutMs`. */
async function download(
  share: Share,
  port: number,
  dir: string,
  options: { connections: number; timeoutMs?: number; sink?: EventSink },
): Promise<DownloadResult> {
  const controller = new AbortController();
  const storage = await ShareStorage.open(share.meta, dir, { sink: NULL_SINK });
  try {
    const running = runDownload(storage, {
      peers: [{ hostname: HOST, port }],
      connections: options.connections,
      sink: options.sink ?? NULL_SINK,
      signal: controller.signal,
    });
    try {
      return await within(
        options.timeoutMs ?? 15_000,
        "download",
        running,
        () => controller.abort(new Error("test timeout")),
      );
    } finally {
      await running.catch(() => {});
    }
  } finally {
    await storage.close();
  }
}

/** A raw client connection to a seeder, after a successful handshake. */
async function connectClient(
  port: number,
  infoHash: string,
): Promise<{ conn: PeerConnection } & Disposable> {
  const conn = new PeerConnection(await Deno.connect({ hostname: HOST, port }), `${HOST}:${port}`);
  try {
    await within(5000, "handshake", conn.handshakeAsInitiator(fromHex(infoHash), newPeerId()));
  } catch (err) {
    conn.close();
    throw err;
  }
  return { conn, [Symbol.dispose]: () => conn.close() };
}

/** Receives messages until the stream ends or fails; PIECE data is copied. */
async function receiveUntilClosed(
  conn: PeerConnection,
): Promise<{ messages: Message[]; error?: string }> {
  const messages: Message[] = [];
  try {
    for (;;) {
      const message = await conn.receive();
      if (message === undefined) return { messages };
      messages.push(
        message.type === "piece" ? { ...message, data: message.data.slice() } : message,
      );
    }
  } catch (err) {
    return { messages, error: errorMessage(err) };
  }
}

/** Receives until a message of `type` arrives. */
async function receiveType<T extends Message["type"]>(
  conn: PeerConnection,
  type: T,
): Promise<Extract<Message, { type: T }>> {
  for (;;) {
    const message = await conn.receive();
    if (message === undefined) throw new Error(`stream ended before a ${type} message`);
    if (message.type === type) {
      return (message.type === "piece"
        ? { ...message, data: message.data.slice() }
        : message) as Extract<Message, { type: T }>;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tests

Deno.test({
  name: "PeerConnection.sendErrorAndClose() leaves no timer running",
}, async () => {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const accepted = listener.accept();
  const conn = new PeerConnection(
    await Deno.connect({ hostname: HOST, port: listener.addr.port }),
    "other side",
  );
  const other = new PeerConnection(await accepted, "us");
  try {
    await conn.sendErrorAndClose("bye");
    assert.equal(conn.closed, true);
    assert.deepEqual(await within(5000, "error", receiveType(other, "error")), {
      type: "error",
      message: "bye",
    });
  } finally {
    conn.close();
    other.close();
  }
});

for (const connections of [1, 3]) {
  Deno.test(`runDownload() with ${connections} connection(s) fetches a 40-piece share byte for byte`, async () => {
    const share = await makeShare(SHARE_BYTES, { name: "share.bin" });
    await using seeder = await startSeeder(share);
    await using dir = await tempDir("peer_test_dl_");
    const sink = recordingSink();
    const result = await download(share, seeder.port, dir.path, { connections, sink });

    assert.equal(result.path, join(dir.path, "share.bin"));
    assert.equal(result.bytes, SHARE_BYTES);
    assert.equal(result.piecesTotal, PIECES);
    assert.equal(result.piecesFetched, PIECES);
    assert.deepEqual(await Deno.readFile(result.path), share.data);
    assert.equal(await exists(join(dir.path, "share.bin.partial")), false);
    assert.equal(await exists(join(dir.path, "share.bin.state.json")), false);
    const started = sink.events.find((e) => e.event === "started");
    assert.ok(started?.event === "started");
    assert.equal(started.piecesNeeded, PIECES);
    assert.equal(started.connections, connections);
    assert.equal(
      sink.events.filter((e) => e.event === "piece_failed" || e.event === "error").length,
      0,
    );
    assert.ok(seeder.sink.events.some((e) => e.event === "peer_connected"));
  });
}

Deno.test("runDownload() fetches only the missing pieces of a partial download", async () => {
  const share = await makeShare(SHARE_BYTES, { name: "share.bin" });
  await using seeder = await startSeeder(share);
  await using dir = await tempDir("peer_test_dl_");
  {
    const storage = await ShareStorage.open(share.meta, dir.path, { sink: NULL_SINK });
    for (let i = 0; i < PIECES; i += 2) await storage.writeVerifiedPiece(i, pieceOf(share, i));
    await storage.close();
  }
  const result = await download(share, seeder.port, dir.path, { connections: 2 });
  assert.equal(result.piecesFetched, PIECES / 2);
  assert.deepEqual(await Deno.readFile(result.path), share.data);
});

Deno.test({
  name: "PeerConnection handshake with a wrong info hash fails naming the info hash",
}, async () => {
  const share = await makeShare(SHARE_BYTES, { name: "share.bin" });
  const other = await makeShare(SHARE_BYTES, { name: "share.bin", seed: 2 });
  await using seeder = await startSeeder(share);
  const conn = new PeerConnection(
    await Deno.connect({ hostname: HOST, port: seeder.port }),
    `${HOST}:${seeder.port}`,
  );
  try {
    await assert.rejects(
      () =>
        within(
          5000,
          "handshake",
          conn.handshakeAsInitiator(fromHex(other.meta.infoHash), newPeerId()),
        ),
      (err: unknown) => {
        assert.ok(err instanceof ProtocolError, String(err));
        assert.match(err.message, /info hash/);
        return true;
      },
    );
  } finally {
    conn.close();
  }
  assert.ok(
    seeder.sink.events.some((e) => e.event === "warning" && /info hash/.test(e.message)),
    "the seeder reports the refused connection",
  );
});

Deno.test({
  name: "PeerConnection as initiator refuses a responder that serves another share",
}, async () => {
  const share = await makeShare(4 * PIECE, { name: "share.bin" });
  const other = await makeShare(4 * PIECE, { name: "share.bin", seed: 2 });
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  // A responder that accepts any info hash but answers with its own.
  const responder = (async () => {
    const conn = new PeerConnection(await listener.accept(), "client");
    try {
      await conn.handshakeAsResponder(() => fromHex(other.meta.infoHash), newPeerId());
      return await receiveUntilClosed(conn);
    } finally {
      conn.close();
    }
  })();
  const conn = new PeerConnection(
    await Deno.connect({ hostname: HOST, port: listener.addr.port }),
    "responder",
  );
  try {
    await assert.rejects(
      () =>
        within(
          5000,
          "handshake",
          conn.handshakeAsInitiator(fromHex(share.meta.infoHash), newPeerId()),
        ),
      /info hash/,
    );
  } finally {
    conn.close();
  }
  const seen = await within(5000, "responder", responder);
  const error = seen.messages.find((m) => m.type === "error");
  assert.ok(
    error?.type === "error" && /info hash mismatch/.test(error.message),
    JSON.stringify(seen),
  );
});

Deno.test({
  name: "runDownload() from a peer serving another share fails naming the info hash",
}, async () => {
  const share = await makeShare(SHARE_BYTES, { name: "share.bin" });
  const other = await makeShare(SHARE_BYTES, { name: "share.bin", seed: 2 });
  await using seeder = await startSeeder(other);
  await using dir = await tempDir("peer_test_dl_");
  await assert.rejects(
    () => download(share, seeder.port, dir.path, { connections: 2, timeoutMs: 10_000 }),
    (err: unknown) => {
      assert.match(errorMessage(err), /info hash/);
      assert.match(errorMessage(err), /run again to resume/);
      return true;
    },
  );
});

Deno.test({
  name: "PeerServer disconnects a client whose request is out of range while another downloads",
}, async () => {
  const share = await makeShare(SHARE_BYTES, { name: "share.bin" });
  await using seeder = await startSeeder(share);
  await using dir = await tempDir("peer_test_dl_");
  const badRequests: [number, number, number][] = [
    [9999, 0, 1024], // no such piece
    [PIECES - 1, 0, PIECE], // past the end of the short last piece
    [0, 1000, 100], // past the end of a piece
    [0, 0, 0], // empty
  ];
  const good = download(share, seeder.port, dir.path, { connections: 2 });
  try {
    for (const [index, begin, length] of badRequests) {
      using client = await connectClient(seeder.port, share.meta.infoHash);
      await client.conn.send(encodeRequest(index, begin, length));
      const seen = await within(5000, "disconnect", receiveUntilClosed(client.conn));
      const error = seen.messages.find((m) => m.type === "error");
      assert.ok(
        error?.type === "error" && /invalid request/.test(error.message),
        `${index}/${begin}/${length}: ${JSON.stringify(seen)}`,
      );
      assert.equal(seen.messages.filter((m) => m.type === "piece").length, 0);
    }
  } finally {
    const result = await good;
    assert.deepEqual(await Deno.readFile(result.path), share.data);
  }
  const disconnects = seeder.sink.events.filter((e) =>
    e.event === "peer_disconnected" && /invalid request/.test(e.reason)
  );
  assert.equal(disconnects.length, badRequests.length);
});

Deno.test("PeerServer answers a request for a piece it lacks with REJECT and serves the ones it has", async () => {
  const share = await makeShare(SHARE_BYTES, { name: "share.bin" });
  const missing = new Set([5, 17, 39]);
  const held = [...Array(PIECES).keys()].filter((i) => !missing.has(i));
  await using seeder = await startSeeder(share, held);
  using client = await connectClient(seeder.port, share.meta.infoHash);
  const { conn } = client;
  const bitfield = await within(5000, "bitfield", receiveType(conn, "bitfield"));
  const peerHas = Bitfield.fromBytes(bitfield.bytes, PIECES);
  assert.deepEqual([...peerHas.indexes()], held);
  // Upload slots go to peers that say they are interested.
  await conn.send(encodeSignal(MessageType.INTERESTED));
  await within(5000, "unchoke", receiveType(conn, "unchoke"));

  await conn.send(encodeRequest(17, 0, PIECE));
  const reject = await within(5000, "reject", receiveType(conn, "reject"));
  assert.deepEqual(reject, { type: "reject", index: 17, begin: 0, length: PIECE });

  await conn.send(encodeRequest(16, 100, 200));
  const piece = await within(5000, "piece", receiveType(conn, "piece"));
  assert.equal(piece.index, 16);
  assert.equal(piece.begin, 100);
  assert.deepEqual(piece.data, pieceOf(share, 16).subarray(100, 300));
  assert.equal(conn.closed, false, "a REJECT does not end the connection");
});

Deno.test("runDownload() from a seeder missing pieces fails with 'run again to resume' instead of hanging", async () => {
  const share = await makeShare(SHARE_BYTES, { name: "share.bin" });
  const missing = new Set([5, 17, 39]);
  const held = [...Array(PIECES).keys()].filter((i) => !missing.has(i));
  await using seeder = await startSeeder(share, held);
  await using dir = await tempDir("peer_test_dl_");
  await assert.rejects(
    () => download(share, seeder.port, dir.path, { connections: 3, timeoutMs: 10_000 }),
    (err: unknown) => {
      assert.match(errorMessage(err), /37\/40 pieces verified \(run again to resume\)/);
      return true;
    },
  );
  // What was verified stays saved for the next run.
  const state = JSON.parse(await Deno.readTextFile(join(dir.path, "share.bin.state.json")));
  assert.equal(state.have, "0-4,6-16,18-38");
});

Deno.test("runDownload() fails with 'run again to resume' when a peer claims pieces but answers REJECT", async () => {
  const share = await makeShare(SHARE_BYTES, { name: "share.bin" });
  const rejected = new Set([3, 30]);
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  // A peer whose bitfield claims every piece, but which rejects requests for two of them.
  const controller = new AbortController();
  const peers = new Set<Promise<void>>();
  const serveOne = async (conn: PeerConnection) => {
    try {
      await conn.handshakeAsResponder(
        (h) => h === share.meta.infoHash ? fromHex(h) : undefined,
        newPeerId(),
      );
      await conn.send(encodeBitfield(Bitfield.full(PIECES).bytes));
      await conn.send(encodeSignal(MessageType.UNCHOKE));
      for (;;) {
        const msg = await conn.receive();
        if (msg === undefined) return;
        if (msg.type !== "request") continue;
        if (rejected.has(msg.index)) {
          await conn.send(encodeReject(msg.index, msg.begin, msg.length));
          continue;
        }
        const { frame, data } = allocPieceFrame(msg.index, msg.begin, msg.length);
        data.set(pieceOf(share, msg.index).subarray(msg.begin, msg.begin + msg.length));
        await conn.send(frame);
      }
    } catch {
      // The downloader hangs up when it gives up.
    } finally {
      conn.close();
    }
  };
  const accepting = (async () => {
    controller.signal.addEventListener("abort", () => listener.close(), { once: true });
    for (;;) {
      let stream: Deno.Conn;
      try {
        stream = await listener.accept();
      } catch {
        return;
      }
      const task: Promise<void> = serveOne(new PeerConnection(stream, "downloader"))
        .finally(() => peers.delete(task));
      peers.add(task);
    }
  })();
  await using dir = await tempDir("peer_test_dl_");
  try {
    await assert.rejects(
      () => download(share, listener.addr.port, dir.path, { connections: 2, timeoutMs: 10_000 }),
      (err: unknown) => {
        assert.match(errorMessage(err), /38\/40 pieces verified \(run again to resume\)/);
        return true;
      },
    );
  } finally {
    controller.abort();
    await accepting;
    await Promise.allSettled([...peers]);
  }
});

Deno.test("PeerConnection closes a silent peer after idleTimeoutMs, sending keep-alives meanwhile", async () => {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const accepted = listener.accept();
  const conn = new PeerConnection(
    await Deno.connect({ hostname: HOST, port: listener.addr.port }),
    "silent",
    { idleTimeoutMs: 300, keepAliveMs: 100 },
  );
  using silent = await accepted; // never writes a byte
  try {
    const startedMs = performance.now();
    await assert.rejects(
      () => within(5000, "idle timeout", conn.receive()),
      (err: unknown) => {
        assert.ok(err instanceof ProtocolError, String(err));
        assert.match(err.message, /stalled/);
        return true;
      },
    );
    const elapsedMs = performance.now() - startedMs;
    assert.ok(elapsedMs >= 300, `closed after ${elapsedMs} ms`);
    assert.equal(conn.closed, true);
    assert.match(conn.closeReason, /stalled/);
    // What reached the silent side is keep-alives only: zero-length frames.
    const received: number[] = [];
    const buf = new Uint8Array(256);
    for (;;) {
      const n = await within(5000, "read", silent.read(buf));
      if (n === null) break;
      received.push(...buf.subarray(0, n));
    }
    assert.ok(received.length >= 4, `received ${received.length} bytes`);
    assert.equal(received.length % 4, 0);
    assert.ok(received.every((b) => b === 0), "only keep-alive frames");
  } finally {
    conn.close();
  }
});

/** A PeerConnection over a `Deno.Conn`, and the raw socket at the other end; both closed on dispose. */
async function rawPair(): Promise<{ conn: PeerConnection; raw: Deno.Conn } & Disposable> {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const accepted = listener.accept();
  const conn = new PeerConnection(
    await Deno.connect({ hostname: HOST, port: listener.addr.port }),
    "raw sender",
  );
  const raw = await accepted;
  return {
    conn,
    raw,
    [Symbol.dispose]() {
      conn.close();
      raw.close();
    },
  };
}

for (const mode of ["cut while receiving", "all buffered before the first read"]) {
  Deno.test(`PeerConnection over Deno.Conn decodes frames, ${mode}, and reuses recycled bodies`, async () => {
    using pair = await rawPair();
    const { conn, raw } = pair;
    // The handshake lifts the frame limit to block size; the prefix arrives in two reads.
    const infoHash = new Uint8Array(32).fill(5);
    const hello = encodeHandshake(infoHash, newPeerId());
    await raw.write(hello.subarray(0, 2));
    const answering = conn.handshakeAsResponder(() => infoHash, newPeerId());
    await raw.write(hello.subarray(2));
    await within(5000, "handshake", answering);
    // Three 20 KiB blocks (pooled size) and small frames between them.
    const blocks = [1, 2, 3].map((seed) =>
      Uint8Array.from({ length: 20 * 1024 }, (_, i) => (i * 7 + seed) & 0xff)
    );
    const frames: Uint8Array[] = [];
    for (const [i, block] of blocks.entries()) {
      const { frame, data } = allocPieceFrame(i, 0, block.length);
      data.set(block);
      frames.push(frame, encodeHave(i), encodeSignal(MessageType.UNCHOKE));
    }
    const bytes = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    frames.reduce((at, f) => (bytes.set(f, at), at + f.length), 0);
    // Cuts that split a length prefix, end a body with 1-3 bytes of the next prefix, or carry
    // several small frames at once; each piece is sent and received before the next is cut.
    const cuts = [1, 3, 5, 4 + 20 * 1024 + 13 - 6, 8, 2, 20 * 1024 - 1, 31, 1];
    const received: Message[] = [];
    let sent = 0;
    const receive = async () => {
      for (let n = 0; n < frames.length; n++) {
        const message = await conn.receive();
        assert.ok(message, `message ${n}`);
        if (message.type === "piece") {
          received.push({ ...message, data: message.data.slice() });
          conn.recycle(message.data); // reused for the next block: must not leak into it
        } else {
          received.push(message);
        }
      }
    };
    // Buffered: every body read can bring the next prefix (4 bytes of room, never more).
    const receiving = mode === "cut while receiving" ? receive() : undefined;
    for (let c = 0; sent < bytes.length; c++) {
      const end = Math.min(bytes.length, sent + (cuts[c] ?? bytes.length));
      await raw.write(bytes.subarray(sent, end));
      sent = end;
    }
    await within(5000, "frames", receiving ?? receive());
    assert.deepEqual(
      received.map((m) => m.type),
      ["piece", "have", "unchoke", "piece", "have", "unchoke", "piece", "have", "unchoke"],
    );
    for (const [i, block] of blocks.entries()) {
      const piece = received[i * 3] as Extract<Message, { type: "piece" }>;
      assert.equal(piece.index, i);
      assert.deepEqual(piece.data, block, `block ${i}`);
    }
    // A frame cut off by the end of the stream is an error, not a message.
    await raw.write(new Uint8Array([0, 0, 0, 9, MessageType.HAVE]));
    raw.closeWrite();
    await assert.rejects(
      () => within(5000, "cut frame", conn.receive()),
      /closed in the middle of a frame \(5 bytes\)/,
    );
  });
}

Deno.test("PeerConnection over Deno.Conn ends cleanly at a frame boundary and fails on a cut prefix", async () => {
  for (const tail of [[], [0, 0]]) {
    using pair = await rawPair();
    const { conn, raw } = pair;
    await raw.write(new Uint8Array([...encodeHave(7), ...tail]));
    raw.closeWrite();
    assert.deepEqual(await within(5000, "have", conn.receive()), { type: "have", index: 7 });
    if (tail.length === 0) {
      assert.equal(await within(5000, "end", conn.receive()), undefined);
    } else {
      await assert.rejects(
        () => within(5000, "cut prefix", conn.receive()),
        /closed in the middle of a frame \(2 bytes\)/,
      );
    }
  }
});

Deno.test("BufferPool hands back a kept buffer of the exact size and keeps no more than its limit", () => {
  const pool = new BufferPool(3 * 1024);
  const a = new ArrayBuffer(1024);
  const b = new ArrayBuffer(2048);
  pool.give(a);
  pool.give(b);
  pool.give(new ArrayBuffer(1024)); // past the 3 KiB limit: dropped
  assert.equal(pool.take(512), undefined);
  assert.equal(pool.take(2048), b);
  assert.equal(pool.take(1024), a);
  assert.equal(pool.take(1024), undefined, "the dropped one was not kept");
});
