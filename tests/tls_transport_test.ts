import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as tls from "node:tls";
import { ProtocolError } from "../lib/errors.ts";
import { PeerConnection } from "../lib/peer_conn.ts";
import {
  listenSecure,
  looksLikeTlsClientHello,
  looksLikeTlsFrameLength,
  PLAINTEXT_REFUSED_MESSAGE,
  type SecureStream,
  tlsDialer,
} from "../lib/tls_transport.ts";
import { makeSelfSignedCertificate, PEER_CERT_CN } from "../lib/identity.ts";
import { toHex } from "../lib/units.ts";
import { decodeBody, encodeHandshake, encodeHave, FrameDecoder } from "../lib/wire.ts";
import {
  closeBoth,
  dialAccepted,
  dialAcceptedWith,
  drain,
  patternBytes,
  peerIdentity,
  readAllPlain,
  testListener,
} from "./tls_kit.ts";

const serverId = await peerIdentity();
const clientId = await peerIdentity();

Deno.test("looksLikeTlsClientHello() tells a ClientHello from p2p-share frames", () => {
  const cases: [number[], boolean][] = [
    [[0x16], true],
    [[0x16, 0x03, 0x01, 0x02, 0x00], true],
    [[0x16, 0x03, 0x03], true],
    [[0x16, 0x02], false],
    [[0x16, 0x03, 0x09], false],
    [[0x00, 0x00, 0x00, 0x41, 0x00], false], // a p2p-share handshake frame
    [[0x00, 0x00, 0x00, 0x00], false], // a keep-alive
    [[], false],
  ];
  for (const [bytes, expected] of cases) {
    assert.equal(looksLikeTlsClientHello(new Uint8Array(bytes)), expected, `${bytes}`);
  }
  assert.equal(looksLikeTlsFrameLength(0x160301d1), true);
  assert.equal(looksLikeTlsFrameLength(0x41), false);
  assert.equal(looksLikeTlsFrameLength(1024 * 1024 + 64), false);
});

Deno.test("a TLS connection shows each side the other's certificate fingerprint", async () => {
  await using server = await testListener(serverId);
  const [client, accepted] = await dialAccepted(clientId, server);
  try {
    assert.equal(toHex(client.localCertFingerprint), toHex(clientId.fingerprint));
    assert.equal(toHex(client.peerCertFingerprint), toHex(serverId.fingerprint));
    assert.equal(toHex(accepted.localCertFingerprint), toHex(serverId.fingerprint));
    assert.equal(toHex(accepted.peerCertFingerprint), toHex(clientId.fingerprint));
    assert.equal(accepted.hostname, "127.0.0.1");
    assert.match(accepted.remote, /^127\.0\.0\.1:\d+$/);
  } finally {
    await closeBoth(client, accepted);
  }
});

/**
 * Writes `totalMiB` MiB from `from` while `to` reads nothing, until a write has waited 300 ms
 * (backpressure reached the writer); then reads everything on `to` while the rest is written,
 * and checks count, content and the clean end.
 *
 * @returns how many MiB were written before the writer had to wait
 */
async function stallThenDrain(from: SecureStream, to: SecureStream, totalMiB: number) {
  const block = patternBytes(1024 * 1024, 7);
  const nth = (i: number) => {
    const copy = block.slice();
    copy[0] = i;
    return copy;
  };
  const writer = from.writable.getWriter();
  let i = 0;
  for (; i < totalMiB; i++) {
    const write = writer.write(nth(i)).then(() => true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = await Promise.race([
      write,
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 300))),
    ]);
    clearTimeout(timer);
    if (!done) {
      const reading = drain(to.readable);
      await write;
      for (let j = i + 1; j < totalMiB; j++) await writer.write(nth(j));
      await writer.close();
      // Deno 2.9 loses the end of a TLS stream paused at the TLS layer: bounded, not a hang.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const got = await Promise.race([
        reading,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("the reader never saw the end of the stream")),
            20_000,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      assert.equal(got.bytes, totalMiB * block.length);
      const hash = createHash("sha256");
      for (let j = 0; j < totalMiB; j++) hash.update(nth(j));
      assert.equal(got.sha256, hash.digest("hex"));
      return i;
    }
  }
  throw new Error(`all ${totalMiB} MiB were taken without the reader reading`);
}

Deno.test("the socket adapter holds back a writer whose reader does not read, then delivers all and the end", async () => {
  for (const direction of ["client to server", "server to client"]) {
    await using server = await testListener(serverId);
    const [client, accepted] = await dialAccepted(clientId, server);
    try {
      const [from, to] = direction === "client to server" ? [client, accepted] : [accepted, client];
      const aheadMiB = await stallThenDrain(from, to, 48);
      assert.ok(aheadMiB < 40, `${direction}: the writer got ${aheadMiB} MiB ahead of its reader`);
    } finally {
      await closeBoth(client, accepted);
    }
  }
});

Deno.test("the dialer's PeerConnection reads a listener gone without a TLS close_notify as a clean end after its frames", async () => {
  await using server = await testListener(serverId);
  const [client, accepted] = await dialAccepted(clientId, server);
  const conn = new PeerConnection(client, `127.0.0.1:${server.port}`);
  try {
    const writer = accepted.writable.getWriter();
    for (let i = 0; i < 64; i++) await writer.write(encodeHave(i));
    // Cancelling the adapter's readable destroys the socket: a TCP FIN without a TLS
    // close_notify, as when a seeder exits, which Deno's TLS reports as an error.
    await accepted.readable.cancel();
    for (let i = 0; i < 64; i++) assert.deepEqual(await conn.receive(), { type: "have", index: i });
    assert.equal(await conn.receive(), undefined);
  } finally {
    conn.close();
    await closeBoth(client, accepted);
  }
});

Deno.test("close() on one side ends the other side's readable", async () => {
  await using server = await testListener(serverId);
  const [client, accepted] = await dialAccepted(clientId, server);
  const writer = accepted.writable.getWriter();
  await writer.write(new TextEncoder().encode("last words"));
  accepted.close();
  const got = await drain(client.readable);
  assert.equal(got.bytes, "last words".length);
  await closeBoth(client, accepted);
  await assert.rejects(writer.write(new Uint8Array(1)));
});

Deno.test("a plaintext p2p-share peer gets a plaintext ERROR frame and the refusal is reported", async () => {
  await using server = await testListener(serverId);
  const refusal = server.nextRefusal();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    await conn.write(encodeHandshake(new Uint8Array(32).fill(0xab), new Uint8Array(20)));
    const received = await readAllPlain(conn);
    const decoder = new FrameDecoder();
    decoder.push(received);
    const body = decoder.nextBody();
    assert.ok(body, "no whole frame received");
    assert.deepEqual(decodeBody(body), { type: "error", message: PLAINTEXT_REFUSED_MESSAGE });
    assert.equal(decoder.buffered, 0, "nothing after the ERROR frame");
    const { remote, reason } = await refusal;
    assert.equal(remote, `127.0.0.1:${(conn.localAddr as Deno.NetAddr).port}`);
    assert.match(reason, /plaintext connection .* refused: this peer requires encrypted transport/);
  } finally {
    conn.close();
  }
});

Deno.test("a plaintext peer reading with PeerConnection sees the refusal as one clear line", async () => {
  await using server = await testListener(serverId);
  const refusal = server.nextRefusal();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const peer = new PeerConnection(conn, `127.0.0.1:${server.port}`);
  try {
    await assert.rejects(
      peer.handshakeAsInitiator(new Uint8Array(32), new Uint8Array(20)),
      new ProtocolError(`peer 127.0.0.1:${server.port} refused: ${PLAINTEXT_REFUSED_MESSAGE}`),
    );
    await refusal;
  } finally {
    peer.close();
  }
});

Deno.test("the dialer says a plaintext p2p-share peer does not speak encrypted transport", async () => {
  // A real plaintext responder: PeerConnection answering as the seeder does on a bad frame.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const peer = new PeerConnection(conn, "dialer");
    try {
      await peer.handshakeAsResponder(() => undefined, new Uint8Array(20));
    } catch (err) {
      await peer.sendErrorAndClose((err as Error).message);
      return (err as Error).message;
    } finally {
      peer.close();
    }
  })();
  try {
    const port = listener.addr.port;
    await assert.rejects(
      tlsDialer(clientId)({ hostname: "127.0.0.1", port }, AbortSignal.timeout(10_000)),
      (err: Error) => {
        assert.ok(err instanceof ProtocolError);
        assert.equal(
          err.message,
          `peer 127.0.0.1:${port} does not speak encrypted transport (it runs without --encrypt)`,
        );
        return true;
      },
    );
    // What the plaintext side saw: a TLS record header where a frame length belongs, said
    // plainly.
    assert.equal(await served, "tried an encrypted connection; this peer runs without --encrypt");
  } finally {
    listener.close();
  }
});

Deno.test("the dialer's certificate probe is neither handed over nor reported by the listener", async () => {
  await using server = await testListener(serverId);
  const dial = tlsDialer(clientId);
  // The first dial probes (a node:tls connection that closes without a byte), then connects
  // with the certificate pinned; the second reuses the pin.
  for (const round of [1, 2]) {
    const client = await dial(
      { hostname: "127.0.0.1", port: server.port },
      AbortSignal.timeout(10_000),
    );
    const writer = client.writable.getWriter();
    await writer.write(new TextEncoder().encode(`round ${round}`));
    writer.releaseLock();
    const accepted = await server.next();
    const reader = accepted.readable.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    assert.equal(new TextDecoder().decode(value), `round ${round}`);
    assert.equal(toHex(client.peerCertFingerprint), toHex(serverId.fingerprint));
    await closeBoth(client, accepted);
  }
  assert.deepEqual(server.refusals, []);
});

Deno.test("the dialer probes again when the peer comes back with another certificate", async () => {
  const dial = tlsDialer(clientId);
  const first = await testListener(serverId);
  const port = first.port;
  const [client] = await dialAcceptedWith(dial, first);
  assert.equal(toHex(client.peerCertFingerprint), toHex(serverId.fingerprint));
  await first[Symbol.asyncDispose]();
  const otherId = await peerIdentity();
  await using second = await testListener(otherId, port);
  const [again, accepted] = await dialAcceptedWith(dial, second);
  assert.equal(toHex(again.peerCertFingerprint), toHex(otherId.fingerprint));
  assert.equal(toHex(accepted.peerCertFingerprint), toHex(clientId.fingerprint));
  await closeBoth(again, accepted);
  await closeBoth(client);
});

Deno.test("the dialer falls back to node:tls when Deno's TLS refuses the peer's certificate (a clock set wrong)", async () => {
  const DAY_MS = 86_400_000;
  const expiredId = await makeSelfSignedCertificate({
    commonName: PEER_CERT_CN,
    notBefore: new Date(Date.now() - 10 * DAY_MS),
    notAfter: new Date(Date.now() - DAY_MS),
  });
  await using server = await testListener(expiredId);
  const dial = tlsDialer(clientId);
  const [client, accepted] = await dialAcceptedWith(dial, server);
  try {
    assert.equal(toHex(client.peerCertFingerprint), toHex(expiredId.fingerprint));
    assert.equal(toHex(accepted.peerCertFingerprint), toHex(clientId.fingerprint));
    // Frames flow both ways over the fallback connection.
    const writer = accepted.writable.getWriter();
    await writer.write(encodeHave(3));
    writer.releaseLock();
    const conn = new PeerConnection(client, `127.0.0.1:${server.port}`);
    assert.deepEqual(await conn.receive(), { type: "have", index: 3 });
    conn.close();
  } finally {
    await closeBoth(client, accepted);
  }
  // The listener saw the one refused attempt; the next connection goes to node:tls directly.
  assert.deepEqual(server.refusals.map((r) => r.reason), [
    "TLS handshake failed: received fatal alert: CertificateExpired (the other machine's clock " +
    "is outside our certificate's dates; a p2p-share peer retries over node:tls)",
  ]);
  const [again, acceptedAgain] = await dialAcceptedWith(dial, server);
  await closeBoth(again, acceptedAgain);
  assert.equal(server.refusals.length, 1);
});

Deno.test("the dialer reports a closed port as Deno.errors.ConnectionRefused", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await assert.rejects(
    tlsDialer(clientId)({ hostname: "127.0.0.1", port }, AbortSignal.timeout(10_000)),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("the dialer stops when its signal aborts", async () => {
  // A TCP listener that never answers the ClientHello.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held = listener.accept();
  const controller = new AbortController();
  const dialing = tlsDialer(clientId)(
    { hostname: "127.0.0.1", port: listener.addr.port },
    controller.signal,
  );
  const conn = await held;
  controller.abort(new Error("download ended"));
  await assert.rejects(dialing, /download ended/);
  conn.close();
  listener.close();
});

Deno.test("the listener refuses a TLS client without a certificate", async () => {
  await using server = await testListener(serverId);
  const refusal = server.nextRefusal();
  const socket = tls.connect({
    host: "127.0.0.1",
    port: server.port,
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
  });
  const closed = new Promise((resolve) => socket.on("close", resolve));
  socket.on("error", () => {});
  const { reason } = await refusal;
  assert.match(reason, /no certificate|certificate/);
  socket.destroy();
  await closed;
});

Deno.test("closing the listener ends accept() and frees the port", async () => {
  const server = await testListener(serverId);
  const port = server.port;
  const waiting = server.next().then(() => "accepted", (err) => (err as Error).message);
  await server[Symbol.asyncDispose]();
  assert.equal(await waiting, "listener closed");
  const again = Deno.listen({ hostname: "127.0.0.1", port });
  again.close();
});

Deno.test("the listener drops a connection that sends nothing, and reports it", async () => {
  const refusals: string[] = [];
  let reported: (() => void) | undefined;
  const listener = await listenSecure({
    hostname: "127.0.0.1",
    port: 0,
    identity: serverId,
    handshakeTimeoutMs: 200,
    onRefused: (_remote, reason) => {
      refusals.push(reason);
      reported?.();
    },
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  try {
    await new Promise<void>((resolve) => (reported = resolve));
    assert.deepEqual(refusals, ["nothing received in time (TLS handshake timed out)"]);
    assert.equal((await readAllPlain(conn)).length, 0);
  } finally {
    conn.close();
    listener.close();
  }
});

Deno.test("the dialer gives up on a silent peer after its handshake timeout", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held = listener.accept();
  try {
    const port = listener.addr.port;
    await assert.rejects(
      tlsDialer(clientId, { handshakeTimeoutMs: 200 })(
        { hostname: "127.0.0.1", port },
        AbortSignal.timeout(10_000),
      ),
      new ProtocolError(
        `TLS handshake with 127.0.0.1:${port} timed out (is it a p2p-share peer running with --encrypt?)`,
      ),
    );
  } finally {
    (await held).close();
    listener.close();
  }
});
