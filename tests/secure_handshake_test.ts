import assert from "node:assert/strict";
import { ProtocolError } from "../lib/errors.ts";
import { PeerConnection } from "../lib/peer_conn.ts";
import {
  AUTH_CHALLENGE,
  AUTH_PROOF,
  AuthGate,
  encodeAuthChallenge,
  encodeAuthProof,
  secureHandshakeAsInitiator,
  secureHandshakeAsResponder,
  type ShareAccess,
} from "../lib/secure_handshake.ts";
import type { Info } from "../lib/metadata.ts";
import { AUTH_BYTES, shareKey } from "../lib/share_auth.ts";
import type { SecureStream } from "../lib/tls_transport.ts";
import { fromHex, toHex } from "../lib/units.ts";
import {
  allocPieceFrame,
  decodeBody,
  encodeBitfield,
  encodeHandshake,
  FrameDecoder,
  MessageType,
} from "../lib/wire.ts";
import { closeBoth, dialAccepted, peerIdentity, testListener } from "./tls_kit.ts";

const seederId = await peerIdentity();
const leecherId = await peerIdentity();
const strangerId = await peerIdentity();
const mitmId = await peerIdentity();

const INFO: Info = {
  name: "secret.bin",
  length: 5,
  pieceLength: 16384,
  pieces: ["a".repeat(64)],
};
const INFO_HASH = fromHex("11".repeat(32));
const OTHER_INFO: Info = { ...INFO, name: "other.bin" };
const KEY = await shareKey(INFO);
const WRONG_KEY = await shareKey(OTHER_INFO);
const SEEDER_PEER_ID = new Uint8Array(20).fill(0x5e);
const LEECHER_PEER_ID = new Uint8Array(20).fill(0x1e);

/** One encrypted connection with a PeerConnection on an AuthGate at each end. */
interface Pair extends AsyncDisposable {
  initiator: { conn: PeerConnection; gate: AuthGate; stream: SecureStream };
  responder: { conn: PeerConnection; gate: AuthGate; stream: SecureStream };
}

async function securePair(): Promise<Pair> {
  const server = await testListener(seederId);
  const [client, accepted] = await dialAccepted(leecherId, server);
  const side = (stream: SecureStream, remote: string) => {
    const gate = new AuthGate(stream);
    return { conn: new PeerConnection(gate, remote), gate, stream };
  };
  const pair = {
    initiator: side(client, `127.0.0.1:${server.port}`),
    responder: side(accepted, accepted.remote),
  };
  return {
    ...pair,
    async [Symbol.asyncDispose]() {
      pair.initiator.conn.close();
      pair.responder.conn.close();
      await closeBoth(client, accepted);
      await server[Symbol.asyncDispose]();
    },
  };
}

function access(isPrivate: boolean): (hex: string) => ShareAccess | undefined {
  return (hex) =>
    hex === toHex(INFO_HASH) ? { key: KEY, ourInfoHash: INFO_HASH, private: isPrivate } : undefined;
}

function initiate(pair: Pair, key = KEY, infoHash = INFO_HASH) {
  const { conn, gate, stream } = pair.initiator;
  return secureHandshakeAsInitiator(conn, {
    gate,
    infoHash,
    peerId: LEECHER_PEER_ID,
    key,
    localFp: stream.localCertFingerprint,
    peerFp: stream.peerCertFingerprint,
  });
}

function respond(pair: Pair, isPrivate: boolean, privateOnly = isPrivate) {
  const { conn, gate, stream } = pair.responder;
  return secureHandshakeAsResponder(conn, {
    gate,
    accept: access(isPrivate),
    peerId: SEEDER_PEER_ID,
    localFp: stream.localCertFingerprint,
    peerFp: stream.peerCertFingerprint,
    privateOnly,
  });
}

/** Settles both, returning [initiator outcome, responder outcome] as values or error messages. */
async function both<A, B>(a: Promise<A>, b: Promise<B>): Promise<[A | string, B | string]> {
  const [x, y] = await Promise.allSettled([a, b]);
  const out = (r: PromiseSettledResult<unknown>) =>
    r.status === "fulfilled" ? r.value : (r.reason as Error).message;
  return [out(x) as A | string, out(y) as B | string];
}

for (const isPrivate of [false, true]) {
  const kind = isPrivate ? "private" : "public";
  Deno.test(`secure handshake: a ${kind} share succeeds both ways, then big frames flow`, async () => {
    await using pair = await securePair();
    const [fromResponder, fromInitiator] = await Promise.all([
      initiate(pair),
      respond(pair, isPrivate),
    ]);
    assert.equal(fromResponder.infoHash, toHex(INFO_HASH));
    assert.equal(fromResponder.peerId, toHex(SEEDER_PEER_ID));
    assert.equal(fromInitiator.infoHash, toHex(INFO_HASH));
    assert.equal(fromInitiator.peerId, toHex(LEECHER_PEER_ID));
    assert.equal(fromInitiator.private, isPrivate);

    // The frame limit was raised by PeerConnection's own handshake: a 4 KiB bitfield and a
    // 1 MiB block get through, in both directions.
    const bits = new Uint8Array(4096).fill(0xff);
    await pair.responder.conn.send(encodeBitfield(bits));
    const { frame, data } = allocPieceFrame(3, 0, 1024 * 1024);
    data.fill(0x42);
    await pair.responder.conn.send(frame);
    await pair.initiator.conn.send(encodeBitfield(bits.subarray(0, 300)));
    const first = await pair.initiator.conn.receive();
    assert.equal(first?.type, "bitfield");
    const second = await pair.initiator.conn.receive();
    assert.ok(second?.type === "piece" && second.data.length === 1024 * 1024);
    assert.ok(second.data.every((b) => b === 0x42));
    const back = await pair.responder.conn.receive();
    assert.ok(back?.type === "bitfield" && back.bytes.length === 300);
  });
}

Deno.test("secure handshake: a wrong share key is refused with a clear error (public share)", async () => {
  await using pair = await securePair();
  const [initiator, responder] = await both(initiate(pair, WRONG_KEY), respond(pair, false));
  assert.equal(initiator, `peer ${pair.initiator.conn.remote} refused: authentication failed`);
  assert.match(String(responder), /failed authentication: it does not hold the metadata of 1111/);
});

Deno.test("secure handshake: a wrong key on a private share gets a silent close", async () => {
  await using pair = await securePair();
  const [initiator, responder] = await both(initiate(pair, WRONG_KEY), respond(pair, true));
  assert.match(
    String(initiator),
    /closed the connection during authentication \(it does not serve this share, or its metadata differs/,
  );
  assert.match(
    String(responder),
    /failed authentication for private share .* \(closed without answer\)/,
  );
});

Deno.test("secure handshake: an unknown share on a public responder gets the usual mismatch error", async () => {
  await using pair = await securePair();
  const other = fromHex("22".repeat(32));
  const [initiator, responder] = await both(initiate(pair, KEY, other), respond(pair, false));
  assert.match(String(initiator), /refused: info hash mismatch: this peer does not serve 2222/);
  assert.match(String(responder), /asked for unknown share 2222.* \(info hash mismatch\)/);
});

/**
 * A stranger speaking the protocol by hand over TLS: sends a handshake for `infoHash` and a
 * challenge, then a made-up proof once a challenge comes back, and records every byte the
 * responder sends until it closes.
 */
async function strangerTranscript(
  isPrivate: boolean,
  infoHash: Uint8Array,
): Promise<{ received: Uint8Array; responder: string }> {
  const server = await testListener(seederId);
  try {
    const [stream, accepted] = await dialAccepted(strangerId, server);
    const gate = new AuthGate(accepted);
    const conn = new PeerConnection(gate, accepted.remote);
    const responding = secureHandshakeAsResponder(conn, {
      gate,
      accept: access(isPrivate),
      peerId: SEEDER_PEER_ID,
      localFp: accepted.localCertFingerprint,
      peerFp: accepted.peerCertFingerprint,
      privateOnly: isPrivate,
    }).then(() => "accepted", (err: Error) => err.message);
    const writer = stream.writable.getWriter();
    await writer.write(encodeHandshake(infoHash, new Uint8Array(20).fill(7)));
    await writer.write(encodeAuthChallenge(new Uint8Array(AUTH_BYTES).fill(9)));
    const parts: Uint8Array[] = [];
    let sentProof = false;
    for await (const chunk of stream.readable) {
      parts.push(chunk.slice());
      if (!sentProof) {
        sentProof = true;
        await writer.write(encodeAuthProof(new Uint8Array(AUTH_BYTES).fill(1))).catch(() => {});
      }
    }
    const received = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      received.set(p, at);
      at += p.length;
    }
    const responder = await responding;
    conn.close();
    await closeBoth(stream, accepted);
    return { received, responder };
  } finally {
    await server[Symbol.asyncDispose]();
  }
}

function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

Deno.test("secure handshake: a stranger to a private share receives a nonce and a close, nothing else", async () => {
  for (const asked of [INFO_HASH, fromHex("33".repeat(32))]) {
    const { received, responder } = await strangerTranscript(true, asked);
    // Exactly one frame: AUTH_CHALLENGE with 32 random bytes. No HANDSHAKE, no ERROR.
    assert.equal(received.length, 5 + AUTH_BYTES, `received ${toHex(received)}`);
    const decoder = new FrameDecoder();
    decoder.push(received);
    const body = decoder.nextBody();
    assert.ok(body);
    assert.equal(body[0], AUTH_CHALLENGE);
    assert.equal(decoder.buffered, 0);
    assert.ok(!containsBytes(received, INFO_HASH), "the info hash was sent");
    assert.ok(!containsBytes(received, SEEDER_PEER_ID), "the peer id was sent");
    assert.ok(
      !containsBytes(received, new TextEncoder().encode("P2PSHARE")),
      "a handshake was sent",
    );
    assert.match(responder, /closed without answer/);
  }
});

Deno.test("secure handshake: a relayed proof fails (a man in the middle with its own certificates)", async () => {
  // Honest responder R behind a listener; the man in the middle M accepts the initiator's
  // connection with its own certificate, dials R with another, and relays bytes both ways.
  const seeder = await testListener(seederId);
  const mitm = await testListener(mitmId);
  const [toMitm, fromInitiator] = await dialAccepted(leecherId, mitm);
  const mitmDialer = await peerIdentity();
  const [toSeeder, fromMitm] = await dialAccepted(mitmDialer, seeder);
  const relays = [
    fromInitiator.readable.pipeTo(toSeeder.writable).catch(() => {}),
    toSeeder.readable.pipeTo(fromInitiator.writable).catch(() => {}),
  ];
  const iGate = new AuthGate(toMitm);
  const iConn = new PeerConnection(iGate, "mitm");
  const rGate = new AuthGate(fromMitm);
  const rConn = new PeerConnection(rGate, fromMitm.remote);
  try {
    const [initiator, responder] = await both(
      secureHandshakeAsInitiator(iConn, {
        gate: iGate,
        infoHash: INFO_HASH,
        peerId: LEECHER_PEER_ID,
        key: KEY,
        localFp: toMitm.localCertFingerprint,
        peerFp: toMitm.peerCertFingerprint,
      }),
      secureHandshakeAsResponder(rConn, {
        gate: rGate,
        accept: access(false),
        peerId: SEEDER_PEER_ID,
        localFp: fromMitm.localCertFingerprint,
        peerFp: fromMitm.peerCertFingerprint,
      }),
    );
    assert.equal(initiator, "peer mitm refused: authentication failed");
    assert.match(String(responder), /failed authentication/);
  } finally {
    iConn.close();
    rConn.close();
    fromInitiator.close();
    toSeeder.close();
    await closeBoth(toMitm, fromMitm);
    await Promise.all([fromInitiator.closed, toSeeder.closed, ...relays]);
    await mitm[Symbol.asyncDispose]();
    await seeder[Symbol.asyncDispose]();
  }
});

Deno.test("secure handshake: the initiator checks the responder's proof before reading its handshake", async () => {
  await using pair = await securePair();
  // A fake responder: answers the challenge, then a handshake and a made-up proof.
  const fake = (async () => {
    const { gate, conn } = pair.responder;
    const opening = await gate.nextFrame();
    assert.equal(opening?.[0], MessageType.HANDSHAKE);
    assert.equal((await gate.nextFrame())?.[0], AUTH_CHALLENGE);
    await conn.send(encodeAuthChallenge(new Uint8Array(AUTH_BYTES).fill(3)));
    assert.equal((await gate.nextFrame())?.[0], AUTH_PROOF);
    await conn.send(encodeHandshake(INFO_HASH, SEEDER_PEER_ID));
    await conn.send(encodeAuthProof(new Uint8Array(AUTH_BYTES).fill(4)));
    const after = await gate.nextFrame();
    return after ? decodeBody(after) : undefined;
  })();
  await assert.rejects(
    initiate(pair),
    (err: Error) =>
      err instanceof ProtocolError && /failed authentication: it could not prove/.test(err.message),
  );
  assert.deepEqual(await fake, { type: "error", message: "authentication failed" });
  assert.ok(pair.initiator.conn.closed);
});

Deno.test("secure handshake: 'too many connections' before the exchange reads as a refusal", async () => {
  await using pair = await securePair();
  const busy = pair.responder.conn.sendErrorAndClose("too many connections, try later");
  await assert.rejects(initiate(pair), /refused: too many connections, try later/);
  await busy;
});
