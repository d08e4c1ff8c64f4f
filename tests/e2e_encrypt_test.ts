/**
 * End-to-end encrypted transport: real `create`, `seed`, `download` and `tracker` processes on
 * 127.0.0.1 (port 0 everywhere) under narrow permission flags, synchronised on their `--json`
 * events, never on a sleep. Each role's identity lives in the default `<workdir>/.identity`,
 * inside the folder the role may already write.
 *
 * - A transfer captured on the loopback interface (tcpdump, filtered on the seeder's port)
 *   holds no 32-byte window of the (random) file and not the info hash with `--encrypt` on
 *   both sides, and holds both in plaintext.
 * - A plaintext peer and an encrypting peer refuse each other with one clear line each side.
 * - A private share: metadata written owner-only, holders download without `--encrypt`,
 *   everyone else (the CLI with other metadata, a raw TLS client sending garbage or a made-up
 *   or even the real info hash) gets a silent close after at most one 32-byte nonce.
 * - Resume after SIGKILL and a tracker swarm work encrypted.
 * - `--identity DIR` with write access to DIR only (ignored: a bug in lib/identity.ts, below).
 */

import assert from "node:assert/strict";
import { makeSelfSignedCertificate, PEER_CERT_CN } from "../lib/identity.ts";
import { AUTH_CHALLENGE, AUTH_PROOF } from "../lib/secure_handshake.ts";
import { PLAINTEXT_REFUSED_MESSAGE, type SecureStream, tlsDialer } from "../lib/tls_transport.ts";
import { encodeError, encodeFrame, encodeHandshake } from "../lib/wire.ts";
import {
  type CaptureResult,
  captureSupport,
  findFileWindow,
  startCapture,
  tcpPayloadBytes,
} from "./capture_kit.ts";
import {
  assertSameFile,
  type CliResult,
  createMeta,
  downloadArgs,
  exists,
  type JsonEvent,
  listDir,
  onlyEvent,
  parseEvents,
  perms,
  randomFile,
  runCli,
  type Seeder,
  spawnCli,
  startGateProxy,
  startSeeder,
  stateHave,
  type TempDir,
  tempDir,
  waitFor,
} from "./helpers.ts";
import { msLeft, startSwarmDownloader, type TimedCli } from "./swarm_kit.ts";
import { pollStats, startTracker, swarmOf } from "./tracker_kit.ts";
import { concatBytes } from "../lib/units.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

const support = await captureSupport();
if (!support.ok) {
  console.warn(
    `e2e_encrypt_test: the packet capture test is skipped because tcpdump cannot capture on lo ` +
      `here: ${support.reason}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Kit

/** A random file named `name` and its metadata (`create --private` with `private`). */
async function share(
  dir: TempDir,
  name: string,
  bytes: number,
  pieceSize: string,
  options: { private?: boolean; output?: string } = {},
): Promise<{ source: string; meta: string; infoHash: string }> {
  const source = dir.join(name);
  if (!(await exists(source))) await randomFile(source, bytes);
  const { meta, created } = await createMeta(source, {
    pieceSize,
    output: options.output,
    extraArgs: options.private ? ["--private"] : [],
  });
  assert.match(String(created.infoHash), /^[0-9a-f]{64}$/);
  return { source, meta, infoHash: created.infoHash as string };
}

/** `download --host 127.0.0.1 --port P --json` plus `extra`, run to the end. */
async function download(
  meta: string,
  workdir: string,
  port: number,
  options: { parallel?: number; extra?: string[] } = {},
): Promise<CliResult & { events: JsonEvent[] }> {
  const result = await runCli(
    [...downloadArgs(meta, workdir, port, options.parallel ?? 4), ...(options.extra ?? [])],
    { perms: perms.download(meta, workdir), timeoutMs: 30_000 },
  );
  return { ...result, events: parseEvents(result.stdout) };
}

/** Asserts a download completed with the source's bytes; returns its `complete` event. */
async function expectDownloaded(
  result: CliResult & { events: JsonEvent[] },
  path: string,
  source: string,
): Promise<JsonEvent> {
  assert.equal(result.code, 0, `download failed (exit ${result.code}):\n${result.stderr}`);
  const complete = onlyEvent(result.events, "complete");
  await assertSameFile(path, source);
  return complete;
}

/**
 * Asserts that a download failed with exactly one error line (one `error` event on stdout,
 * one `error: ...` line on stderr) matching `pattern`, without ever connecting.
 */
function expectOneError(result: CliResult & { events: JsonEvent[] }, pattern: RegExp): string {
  assert.equal(result.code, 1, `exit ${result.code}, expected 1:\n${result.stderr}`);
  const error = onlyEvent(result.events, "error");
  const message = String(error.message);
  assert.match(message, pattern);
  const lines = result.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.deepEqual(lines, [`error: ${message}`], "stderr should hold exactly the one error line");
  assert.equal(result.events.filter((e) => e.event === "peer_connected").length, 0);
  assert.equal(result.events.filter((e) => e.event === "complete").length, 0);
  return message;
}

/** Stops a seeder (SIGTERM), checks it exited 0, and returns its warning messages. */
async function stopAndWarnings(seeder: Seeder): Promise<string[]> {
  const stopped = await seeder.stop();
  assert.equal(stopped.code, 0, `the seeder exited ${stopped.code}:\n${stopped.stderr}`);
  return parseEvents(stopped.stdout).filter((e) => e.event === "warning").map((e) =>
    String(e.message)
  );
}

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!.map((b) => parseInt(b, 16)));
}

// ---------------------------------------------------------------------------------------------
// 1. What the wire shows

Deno.test({
  name: "capture: with --encrypt on both sides no 32-byte window of the file nor the info hash " +
    "crosses loopback; in plaintext both do",
  ignore: !support.ok,
  fn: async () => {
    const FILE_BYTES = 1 * MiB;
    await using dir = await tempDir("p2p_enc_");
    const { source, meta, infoHash } = await share(dir, "wire.bin", FILE_BYTES, "16K");
    const file = await Deno.readFile(source);
    const hashBytes = fromHex(infoHash);

    /** A whole transfer, captured on the seeder's port only. */
    const capturedTransfer = async (encrypt: boolean): Promise<CaptureResult> => {
      const tag = encrypt ? "enc" : "plain";
      const extra = encrypt ? ["--encrypt"] : [];
      await using seeder = await startSeeder({
        meta,
        source,
        workdir: dir.join(`seed-${tag}`),
        extraArgs: extra,
      });
      const capture = await startCapture([seeder.port]);
      let captured: CaptureResult;
      try {
        const workdir = dir.join(`dl-${tag}`);
        const result = await download(meta, workdir, seeder.port, { extra });
        await expectDownloaded(result, dir.join(`dl-${tag}`, "wire.bin"), source);
      } finally {
        captured = await capture.stop();
      }
      // A capture proves an absence only if it is whole: no drops, at least the file's length
      // of TCP payload.
      assert.equal(captured.droppedByKernel, 0, `${tag}: the kernel dropped packets`);
      const payload = tcpPayloadBytes(captured.bytes);
      assert.ok(payload >= FILE_BYTES, `${tag}: only ${payload} bytes of TCP payload captured`);
      return captured;
    };

    const encrypted = await capturedTransfer(true);
    const hit = findFileWindow(encrypted.bytes, file);
    assert.equal(
      hit,
      undefined,
      `encrypted capture holds file bytes ${hit?.fileOffset}..+32 at ${hit?.captureOffset}`,
    );
    assert.equal(findFileWindow(encrypted.bytes, hashBytes), undefined, "info hash on the wire");

    const plain = await capturedTransfer(false);
    assert.ok(findFileWindow(plain.bytes, file), "the plaintext capture does not show the file");
    assert.ok(findFileWindow(plain.bytes, hashBytes), "the plaintext capture lacks the info hash");
  },
});

// ---------------------------------------------------------------------------------------------
// 2. No silent fallback

Deno.test("a plaintext downloader and an encrypting seeder refuse each other with one clear line on each side, and vice versa", async () => {
  await using dir = await tempDir("p2p_enc_");
  const { source, meta } = await share(dir, "mixed.bin", 256 * KiB, "16K");

  // Plaintext downloader -> encrypting seeder.
  {
    await using seeder = await startSeeder({
      meta,
      source,
      workdir: dir.join("seed-enc"),
      extraArgs: ["--encrypt"],
    });
    const workdir = dir.join("dl-plain");
    const result = await download(meta, workdir, seeder.port, { parallel: 1 });
    expectOneError(
      result,
      /^peer 127\.0\.0\.1:\d+ refused: this peer requires encrypted transport \(run with --encrypt\)/,
    );
    assert.ok(!(await exists(dir.join("dl-plain", ".identity"))), "a plaintext run made keys");
    const warnings = await stopAndWarnings(seeder);
    assert.equal(warnings.length, 1, `seeder warnings: ${JSON.stringify(warnings)}`);
    assert.match(
      warnings[0],
      /^rejected connection from 127\.0\.0\.1:\d+: plaintext connection .*requires encrypted transport/,
    );
  }

  // Encrypting downloader -> plaintext seeder.
  {
    await using seeder = await startSeeder({ meta, source, workdir: dir.join("seed-plain") });
    const workdir = dir.join("dl-enc");
    const result = await download(meta, workdir, seeder.port, {
      parallel: 1,
      extra: ["--encrypt"],
    });
    expectOneError(
      result,
      /^peer 127\.0\.0\.1:\d+ does not speak encrypted transport \(it runs without --encrypt\)/,
    );
    const warnings = await stopAndWarnings(seeder);
    assert.equal(warnings.length, 1, `seeder warnings: ${JSON.stringify(warnings)}`);
    assert.match(
      warnings[0],
      /^rejected connection from 127\.0\.0\.1:\d+: tried an encrypted connection; this peer runs without --encrypt$/,
    );
  }
});

// ---------------------------------------------------------------------------------------------
// 3. Private shares

/** What a raw TLS client read from the seeder, and how the connection ended. */
interface RawExchange {
  /** Every byte received after the TLS handshake, in order. */
  bytes: Uint8Array;
  /** The stream's error when it was reset rather than closed cleanly. */
  error?: string;
}

/**
 * A stranger with its own certificate: TLS handshake with the seeder, then `first` (as is),
 * then once `afterBytes` bytes arrived, `then`; reads everything until the seeder closes.
 */
async function rawTlsExchange(
  port: number,
  first: Uint8Array,
  options: { afterBytes?: number; then?: Uint8Array } = {},
): Promise<RawExchange> {
  const identity = await makeSelfSignedCertificate({ commonName: PEER_CERT_CN });
  const stream: SecureStream = await tlsDialer(identity)(
    { hostname: "127.0.0.1", port },
    AbortSignal.timeout(10_000),
  );
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const chunks: Uint8Array[] = [];
  let received = 0;
  let error: string | undefined;
  const deadline = performance.now() + 15_000;
  try {
    await writer.write(first);
    let sentThen = options.then === undefined;
    for (;;) {
      if (!sentThen && received >= (options.afterBytes ?? 0)) {
        sentThen = true;
        await writer.write(options.then!).catch((err) => (error = String(err)));
      }
      const next = await waitFor(reader.read(), msLeft(deadline), "the seeder to close");
      if (next.done) break;
      chunks.push(next.value);
      received += next.value.length;
    }
  } catch (err) {
    if (String(err).includes("timed out")) throw err;
    error = String(err); // a reset instead of a clean close: still nothing more to read
  } finally {
    reader.releaseLock();
    writer.releaseLock();
    stream.close();
    await waitFor(stream.closed, 10_000, "the raw TLS socket to close");
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return { bytes, error };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(parts);
}

const random32 = () => crypto.getRandomValues(new Uint8Array(32));

/**
 * Asserts that a stranger saw exactly one AUTH_CHALLENGE frame (32 random bytes, nothing
 * share-specific) and then the close.
 */
function expectNonceOnly(exchange: RawExchange, infoHash: Uint8Array, what: string): void {
  const { bytes } = exchange;
  assert.equal(
    bytes.length,
    4 + 1 + 32,
    `${what}: got ${bytes.length} application bytes after the TLS handshake, expected only the ` +
      `37-byte AUTH_CHALLENGE frame`,
  );
  assert.equal(new DataView(bytes.buffer).getUint32(0), 33, `${what}: frame length`);
  assert.equal(bytes[4], AUTH_CHALLENGE, `${what}: the one frame is not AUTH_CHALLENGE`);
  assert.equal(findFileWindow(bytes, infoHash), undefined, `${what}: the info hash came back`);
}

Deno.test("a private share: owner-only metadata, holders download without --encrypt, strangers get a silent close", async () => {
  const FILE_BYTES = 512 * KiB;
  await using dir = await tempDir("p2p_enc_");
  const { source, meta, infoHash } = await share(dir, "secret.bin", FILE_BYTES, "16K", {
    private: true,
  });
  // The metadata is the key: written owner-only, marked private, with a salt.
  assert.equal((await Deno.stat(meta)).mode! & 0o777, 0o600, "private metadata is not 0600");
  const info = JSON.parse(await Deno.readTextFile(meta)).info;
  assert.equal(info.private, true);
  assert.match(info.salt, /^[0-9a-f]{64}$/);
  // Metadata of the same file made public (another info hash), and of another file.
  const samePublic = await share(dir, "secret.bin", FILE_BYTES, "16K", {
    output: dir.join("secret-public.p2pmeta"),
  });
  assert.notEqual(samePublic.infoHash, infoHash);
  const other = await share(dir, "other.bin", FILE_BYTES, "16K");

  // Served encrypted without being told (no --encrypt on either side).
  await using seeder = await startSeeder({ meta, source, workdir: dir.join("seed") });
  assert.ok(await exists(dir.join("seed", ".identity", "peer-key.pem")), "no seeder identity");

  // A holder of the metadata, without --encrypt: completes, identical.
  const holder = await download(meta, dir.join("dl"), seeder.port, { parallel: 1 });
  await expectDownloaded(holder, dir.join("dl", "secret.bin"), source);
  const key = await Deno.stat(dir.join("dl", ".identity", "peer-key.pem"));
  assert.equal(key.mode! & 0o777, 0o600, "the downloader's identity key is not owner-only");

  // Encrypting downloaders with metadata that is not this share's: the seeder closes after its
  // nonce without a word (no ERROR, no handshake), and the downloader says so.
  for (
    const [label, stranger] of [["another file", other], ["the public twin", samePublic]] as const
  ) {
    const workdir = dir.join(`stranger-${label.replaceAll(" ", "-")}`);
    const result = await download(stranger.meta, workdir, seeder.port, {
      parallel: 1,
      extra: ["--encrypt"],
    });
    const message = expectOneError(
      result,
      /closed the connection during authentication \(it does not serve this share, or its metadata differs/,
    );
    assert.doesNotMatch(message, /refused|authentication failed/, `${label}: ${message}`);
    assert.ok(!(await exists(`${workdir}/${stranger.source.split("/").pop()}`)));
  }

  // Raw TLS strangers. Garbage (not even a frame), and a well-formed frame of an unknown type:
  // not one application byte back.
  const hashBytes = fromHex(infoHash);
  for (
    const [label, garbage] of [
      ["HTTP garbage", new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
      ["an unknown frame", encodeFrame(99, new Uint8Array([1, 2, 3]))],
      ["AUTH_PROOF first", encodeFrame(AUTH_PROOF, random32())],
    ] as const
  ) {
    const exchange = await rawTlsExchange(seeder.port, garbage);
    assert.equal(exchange.bytes.length, 0, `${label}: ${exchange.bytes.length} bytes came back`);
  }
  // A handshake (a made-up info hash, then the real one without the metadata) and a challenge:
  // one 32-byte nonce, then, after any proof, a silent close. Both look exactly alike.
  for (
    const [label, hash] of [
      ["a made-up info hash", random32()],
      ["the real info hash", hashBytes],
    ] as const
  ) {
    const hello = concat(
      encodeHandshake(hash, random32().subarray(0, 20)),
      encodeFrame(AUTH_CHALLENGE, random32()),
    );
    const exchange = await rawTlsExchange(seeder.port, hello, {
      afterBytes: 37,
      then: encodeFrame(AUTH_PROOF, random32()),
    });
    expectNonceOnly(exchange, hashBytes, label);
  }

  // A plaintext stranger, even one that knows the info hash, gets the listener's generic
  // refusal (the same for every encrypting peer, before any share is looked at) and the close.
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port: seeder.port });
    await conn.write(encodeHandshake(hashBytes, random32().subarray(0, 20)));
    const answer = new Uint8Array(await new Response(conn.readable).arrayBuffer());
    assert.deepEqual(answer, encodeError(PLAINTEXT_REFUSED_MESSAGE));
  }

  // The seeder served the holder only.
  const stopped = await seeder.stop();
  assert.equal(stopped.code, 0, stopped.stderr);
  const events = parseEvents(stopped.stdout);
  assert.equal(
    events.filter((e) => e.event === "peer_connected").length,
    1,
    "only the holder's one connection may get in",
  );
  const serving = onlyEvent(events, "serving");
  assert.doesNotMatch(String(serving.hint), /--encrypt/, "a private share needs no --encrypt");
});

// ---------------------------------------------------------------------------------------------
// 4. Resume

Deno.test("an encrypted download killed with SIGKILL mid-way resumes encrypted, fetches only what is missing, ends identical", async () => {
  const FILE_BYTES = 16 * MiB;
  const PIECES = 256; // 64 KiB pieces
  await using dir = await tempDir("p2p_enc_");
  const { source, meta } = await share(dir, "big.bin", FILE_BYTES, "64K");
  await using seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--encrypt"],
  });
  const workdir = dir.join("dl");
  const statePath = dir.join("dl", "big.bin.state.json");

  // Through a TCP gate that passes about 6 MiB of the (encrypted) stream and then holds: the
  // download is stuck part-way, with pieces verified and recorded, however fast the machine.
  {
    await using proxy = startGateProxy(seeder.port, 6 * MiB);
    const running = spawnCli([...downloadArgs(meta, workdir, proxy.port, 2), "--encrypt"], {
      perms: perms.download(meta, workdir),
    });
    try {
      await running.log.next("progress", {
        match: (e) => (e.piecesDone as number) > 0 && (e.piecesDone as number) < PIECES,
        timeoutMs: 30_000,
        what: "a progress event with 0 < piecesDone < piecesTotal",
      });
      await waitFor(
        async () => ((await stateHave(statePath))?.length ?? 0) > 0,
        10_000,
        "the state file to list verified pieces",
      );
    } finally {
      running.child.kill("SIGKILL");
    }
    const killed = await running.finished();
    assert.equal(killed.signal, "SIGKILL", `ended by itself first: ${killed.stderr}`);
    assert.equal(running.log.all("complete").length, 0, "completed before the kill");
    assert.ok(running.log.all("peer_connected").length > 0, "never passed the share proof");
  }
  const have = (await stateHave(statePath)) ?? [];
  assert.ok(have.length > 0 && have.length < PIECES, `state lists ${have.length} pieces`);
  assert.ok(!(await exists(dir.join("dl", "big.bin"))), "final file present after the kill");

  const again = await download(meta, workdir, seeder.port, { extra: ["--encrypt"] });
  const complete = await expectDownloaded(again, dir.join("dl", "big.bin"), source);
  assert.equal(complete.piecesTotal, PIECES);
  assert.equal(complete.piecesFetched, PIECES - have.length);
  assert.equal(onlyEvent(again.events, "started").piecesNeeded, PIECES - have.length);
  assert.deepEqual(await listDir(workdir), [".identity", "big.bin"]);
});

// ---------------------------------------------------------------------------------------------
// 5. Swarm

Deno.test("an encrypted swarm: tracker, encrypting seeder and three encrypting downloaders that trade, all identical", async () => {
  // 4 MiB at 1 MiB/s from the seeder: 12 s for three copies alone; the downloaders are given
  // 20 s and trade what they hold, over TLS with the share proof both ways.
  const FILE_BYTES = 4 * MiB;
  const DOWNLOADERS = 3;
  await using dir = await tempDir("p2p_enc_");
  await using tracker = await startTracker({ interval: 1 });
  const { source, meta, infoHash } = await share(dir, "swarm.bin", FILE_BYTES, "64K");
  await using seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--encrypt", "--tracker", tracker.address, "--max-upload-rate", "1M"],
  });
  await pollStats(tracker.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
    timeoutMs: 10_000,
    what: "the seeder in /stats",
  });

  await using stack = new AsyncDisposableStack();
  const deadline = performance.now() + 20_000;
  const downloaders: TimedCli[] = [];
  for (let i = 0; i < DOWNLOADERS; i++) {
    downloaders.push(stack.use(startSwarmDownloader({
      meta,
      workdir: dir.join(`dl${i}`),
      tracker: tracker.address,
      extraArgs: ["--encrypt"],
    })));
  }
  const completes = await Promise.all(downloaders.map(async (peer, i) => {
    const complete = await peer.log.next("complete", {
      timeoutMs: msLeft(deadline),
      what: `downloader ${i}'s complete event`,
    }).catch((err) => {
      throw new Error(`downloader ${i}: ${(err as Error).message}\n${peer.stderr()}`);
    });
    const result = await waitFor(peer.finished(), msLeft(deadline), `downloader ${i}'s exit`);
    assert.equal(result.code, 0, `downloader ${i} exited ${result.code}:\n${result.stderr}`);
    return complete;
  }));
  for (let i = 0; i < DOWNLOADERS; i++) {
    await assertSameFile(dir.join(`dl${i}`, "swarm.bin"), source);
    assert.equal(completes[i].bytes, FILE_BYTES);
    const warnings = downloaders[i].log.all("warning").map((e) => String(e.message));
    assert.ok(
      !warnings.some((w) => /plaintext|encrypted transport|authentication/.test(w)),
      `downloader ${i} warned: ${JSON.stringify(warnings)}`,
    );
  }
  const traded = completes.reduce((sum, c) => sum + (c.bytesUploaded as number), 0);
  assert.ok(traded > 0, "the downloaders uploaded nothing to each other");
  const stopped = await seeder.stop();
  assert.equal(stopped.code, 0, stopped.stderr);
});

// ---------------------------------------------------------------------------------------------
// 6. --identity

Deno.test({
  name:
    "--identity DIR keeps the identity in DIR, with write access to DIR and the work folder only",

  fn: async () => {
    await using dir = await tempDir("p2p_enc_");
    const { source, meta } = await share(dir, "id.bin", 256 * KiB, "16K");
    await using seeder = await startSeeder({
      meta,
      source,
      workdir: dir.join("seed"),
      extraArgs: ["--encrypt"],
    });
    const workdir = dir.join("dl");
    const identity = dir.join("my-identity");
    const result = await runCli(
      [...downloadArgs(meta, workdir, seeder.port, 1), "--encrypt", "--identity", identity],
      {
        perms: [
          "--allow-net=127.0.0.1",
          `--allow-read=${meta},${workdir},${identity}`,
          `--allow-write=${workdir},${identity}`,
        ],
        timeoutMs: 30_000,
      },
    );
    await expectDownloaded(
      { ...result, events: parseEvents(result.stdout) },
      dir.join("dl", "id.bin"),
      source,
    );
    assert.equal((await Deno.stat(identity)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(`${identity}/peer-key.pem`)).mode! & 0o777, 0o600);
    assert.ok(!(await exists(dir.join("dl", ".identity"))), "made the default identity too");
  },
});
