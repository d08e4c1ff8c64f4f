import assert from "node:assert/strict";
import {
  type CaptureResult,
  captureSupport,
  findFileWindow,
  startCapture,
  tcpPayloadBytes,
} from "./capture_kit.ts";
import {
  closeBoth,
  dialAccepted,
  drain,
  patternBytes,
  peerIdentity,
  testListener,
} from "./tls_kit.ts";

const support = await captureSupport();
if (!support.ok) console.warn(`packet capture tests skipped: ${support.reason}`);

/** The "file": 1 MiB that is not all zeros, so a window match means the file, not padding. */
const FILE = patternBytes(1024 * 1024, Date.now() & 0xffff);

Deno.test("findFileWindow() finds any 32-byte window and nothing shorter", () => {
  const file = patternBytes(4096, 5);
  const hay = patternBytes(10_000, 9);
  assert.equal(findFileWindow(hay, file), undefined);
  hay.set(file.subarray(1000, 1032), 777);
  assert.deepEqual(findFileWindow(hay, file), { captureOffset: 777, fileOffset: 1000 });
  const short = patternBytes(10_000, 9);
  short.set(file.subarray(2000, 2031), 50);
  assert.equal(findFileWindow(short, file), undefined);
});

Deno.test({
  name: "capture: a plaintext TCP transfer shows the file on the wire",
  ignore: !support.ok,
  fn: async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const capture = await startCapture([listener.addr.port]);
    let captured: CaptureResult | undefined;
    try {
      const accepted = listener.accept();
      const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
      const server = await accepted;
      const received = drain(server.readable);
      const writer = client.writable.getWriter();
      await writer.write(FILE);
      await writer.close();
      assert.equal((await received).bytes, FILE.length);
    } finally {
      listener.close();
      captured = await capture.stop();
    }
    assert.ok(tcpPayloadBytes(captured.bytes) >= FILE.length);
    assert.ok(findFileWindow(captured.bytes, FILE), "the plaintext file is not in the capture");
  },
});

Deno.test({
  name: "capture: a TLS transfer through the adapter shows no 32-byte window of the file",
  ignore: !support.ok,
  fn: async () => {
    const [serverId, clientId] = await Promise.all([peerIdentity(), peerIdentity()]);
    await using server = await testListener(serverId);
    const capture = await startCapture([server.port]);
    let captured: CaptureResult | undefined;
    try {
      const [client, accepted] = await dialAccepted(clientId, server);
      const received = drain(accepted.readable);
      const writer = client.writable.getWriter();
      await writer.write(FILE);
      await writer.close();
      assert.equal((await received).bytes, FILE.length);
      await closeBoth(client, accepted);
    } finally {
      captured = await capture.stop();
    }
    // A complete capture (no drops, at least the file's length of TCP payload: the ciphertext
    // of the whole transfer) with no window of the file in it.
    assert.equal(captured.droppedByKernel, 0);
    const payload = tcpPayloadBytes(captured.bytes);
    assert.ok(payload > FILE.length, `only ${payload} bytes of TCP payload captured`);
    assert.equal(findFileWindow(captured.bytes, FILE), undefined);
  },
});
