/**
 * Raw loopback copy through each peer transport, between two processes: how much encryption
 * costs before any p2p-share logic runs.
 *
 * - `plain`: `Deno.listen`/`Deno.connect` and their streams (today's peer transport)
 * - `plain-node`: `node:net` through `socketByteStream` (the adapter alone)
 * - `tls`: `listenSecure`/`tlsDialer` (TLS 1.3, both certificates), in the direction pieces flow:
 *   the listener (`node:tls` through the adapter, as a seeder) sends, the dialer (Deno's TLS
 *   pinned to the listener's certificate, as a downloader) receives
 * - `tls-gated`: as `tls`, read through an `AuthGate` as `PeerConnection` would read it
 *
 * Usage: `deno run --allow-net=127.0.0.1 --allow-run --allow-read --allow-env
 * bench/transport_bench.ts [--size 1G] [--runs 3] [--modes plain,tls] [--hash]`. `--hash`
 * makes the receiver SHA-256 what it reads, as a downloader does (compare with bench.ts's
 * "Deno TCP copy + SHA-256" baseline). Prints one line per mode (median MB/s) and the
 * encrypted/plaintext ratio. Exported {@linkcode benchTransport}
 * lets `bench/bench.ts` include the figures.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { makeSelfSignedCertificate, PEER_CERT_CN } from "../lib/identity.ts";
import type { ByteStream } from "../lib/peer_conn.ts";
import { AuthGate } from "../lib/secure_handshake.ts";
import { listenSecure, tlsDialer } from "../lib/tls_transport.ts";
import * as net from "node:net";
import { socketByteStream } from "../lib/tls_transport.ts";
import { parseSize } from "../lib/units.ts";

/** Transports measured. */
export const MODES = ["plain", "plain-node", "tls", "tls-gated"] as const;
export type Mode = (typeof MODES)[number];

const CHUNK_BYTES = 1024 * 1024;
/** What the receiver reads into at a time: a 256 KiB block, as in a PIECE frame. */
const READ_BYTES = 256 * 1024;
const SELF = new URL(import.meta.url).pathname;

/** One measured copy. */
export interface TransportFigure {
  mode: Mode;
  bytes: number;
  seconds: number;
  mbPerSec: number;
}

/** Set in the receiving process by `--hash`: hash what arrives, as a downloader does. */
let hashing = false;

async function readAll(stream: ByteStream, gated: boolean, sha256 = hashing): Promise<number> {
  const readable = gated ? openGate(stream) : stream.readable;
  const hash = sha256 ? createHash("sha256") : undefined;
  let bytes = 0;
  try {
    // Into one reused buffer where the stream allows, as `PeerConnection` reads frames.
    let byob: ReadableStreamBYOBReader | undefined;
    try {
      byob = readable.getReader({ mode: "byob" });
    } catch {
      // Not a byte stream.
    }
    if (byob) {
      let buffer = new ArrayBuffer(READ_BYTES);
      for (;;) {
        const { done, value } = await byob.read(new Uint8Array(buffer));
        if (done) break;
        hash?.update(value);
        bytes += value.length;
        buffer = value.buffer as ArrayBuffer;
      }
    } else {
      for await (const chunk of readable) {
        hash?.update(chunk);
        bytes += chunk.length;
      }
    }
  } catch (err) {
    // Deno's TLS: the `node:tls` sender closed without a close_notify; the count tells.
    if (!(err instanceof Deno.errors.UnexpectedEof)) throw err;
  }
  hash?.digest();
  return bytes;
}

function openGate(stream: ByteStream): ReadableStream<Uint8Array> {
  const gate = new AuthGate(stream);
  gate.open(new Uint8Array(0));
  return gate.readable;
}

/** The receiving process: listens, prints its port, reads one connection to the end. */
async function receiver(mode: Mode): Promise<void> {
  const say = (line: string) => console.log(line);
  if (mode === "plain") {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    say(`port ${listener.addr.port}`);
    const conn = await listener.accept();
    const bytes = await readAll(conn, false);
    say(`done ${bytes}`);
    listener.close();
    return;
  }
  if (mode === "plain-node") {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    say(`port ${(server.address() as net.AddressInfo).port}`);
    const socket = await new Promise<net.Socket>((resolve) => server.once("connection", resolve));
    const stream = socketByteStream(socket);
    const bytes = await readAll(stream, false);
    say(`done ${bytes}`);
    stream.close();
    await stream.closed;
    server.close();
    return;
  }
  // Encrypted: this side listens and sends, as a seeder does (see `copyOnce`).
  const identity = await makeSelfSignedCertificate({ commonName: PEER_CERT_CN });
  const listener = await listenSecure({ hostname: "127.0.0.1", port: 0, identity });
  say(`port ${listener.addr.port}`);
  for await (const stream of listener.accept()) {
    const sent = await writeAll(stream, sendBytes);
    say(`done ${sent}`);
    stream.close();
    await stream.closed;
    break;
  }
  listener.close();
}

/** Bytes the encrypted modes' listening side sends (`--size` in the child). */
let sendBytes = 0;

/** Writes `bytes` of a fixed pattern in 1 MiB chunks and closes the writable. */
async function writeAll(stream: ByteStream, bytes: number): Promise<number> {
  const block = new Uint8Array(CHUNK_BYTES);
  for (let i = 0; i < block.length; i++) block[i] = (i * 131 + 7) & 0xff;
  const writer = stream.writable.getWriter();
  for (let sent = 0; sent < bytes; sent += block.length) {
    await writer.write(sent + block.length <= bytes ? block : block.subarray(0, bytes - sent));
  }
  await writer.close();
  return bytes;
}

async function dial(mode: Mode, port: number): Promise<ByteStream & { closed?: Promise<void> }> {
  if (mode === "plain") return await Deno.connect({ hostname: "127.0.0.1", port });
  if (mode === "plain-node") {
    const socket = net.connect({ host: "127.0.0.1", port });
    await new Promise((resolve) => socket.once("connect", resolve));
    return socketByteStream(socket);
  }
  const identity = await makeSelfSignedCertificate({ commonName: PEER_CERT_CN });
  return await tlsDialer(identity)({ hostname: "127.0.0.1", port }, AbortSignal.timeout(10_000));
}

/**
 * Copies `bytes` over loopback with `mode`: plaintext from this process to a child process,
 * encrypted from the child (listening, as a seeder) to this process (dialing, as a downloader).
 *
 * @returns the wall time from connecting to the receiver having read every byte
 */
export async function copyOnce(
  mode: Mode,
  bytes: number,
  hash = false,
): Promise<TransportFigure> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-read",
      "--allow-env",
      SELF,
      "--role",
      "receive",
      "--modes",
      mode,
      "--size",
      String(bytes),
      ...(hash ? ["--hash"] : []),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const nextLine = async (): Promise<string> => {
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        return line;
      }
      const { done, value } = await lines.read();
      if (done) throw new Error(`receiver for ${mode} exited early`);
      buffered += value;
    }
  };
  const port = Number((await nextLine()).replace(/^port /, ""));
  const started = performance.now();
  const stream = await dial(mode, port);
  let seconds: number;
  if (mode.startsWith("tls")) {
    // Pieces flow from the listener to the dialer: this side dials and reads. The listener
    // hands a connection over with its first bytes (an initiator speaks first): a keep-alive.
    const opener = stream.writable.getWriter();
    await opener.write(new Uint8Array(4));
    opener.releaseLock();
    const got = await readAll(stream, mode === "tls-gated", hash);
    seconds = (performance.now() - started) / 1000;
    if (got !== bytes) throw new Error(`received ${got} of ${bytes} bytes over ${mode}`);
  } else {
    await writeAll(stream, bytes);
    seconds = NaN;
  }
  const done = await nextLine();
  if (!mode.startsWith("tls")) seconds = (performance.now() - started) / 1000;
  if (done !== `done ${bytes}`) throw new Error(`receiver for ${mode} said "${done}"`);
  try {
    stream.close();
  } catch {
    // A Deno.Conn is already closed by closing its writable.
  }
  await stream.closed;
  await lines.cancel();
  await child.status;
  return { mode, bytes, seconds, mbPerSec: bytes / seconds / 1e6 };
}

/**
 * Median of `runs` copies per mode. Modes take turns run by run, so that a machine busy with
 * something else for a while weighs on every mode alike.
 */
export async function benchTransport(
  bytes: number,
  runs: number,
  modes: readonly Mode[] = MODES,
  hash = false,
): Promise<TransportFigure[]> {
  const figures = new Map<Mode, TransportFigure[]>(modes.map((m) => [m, []]));
  for (let i = 0; i < runs; i++) {
    for (const mode of modes) figures.get(mode)!.push(await copyOnce(mode, bytes, hash));
  }
  return modes.map((mode) => {
    const sorted = figures.get(mode)!.sort((a, b) => a.seconds - b.seconds);
    return sorted[Math.floor(sorted.length / 2)];
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      role: { type: "string", default: "send" },
      size: { type: "string", default: "1G" },
      runs: { type: "string", default: "3" },
      modes: { type: "string", default: MODES.join(",") },
      hash: { type: "boolean", default: false },
    },
  });
  hashing = values.hash!;
  sendBytes = parseSize(values.size!);
  const modes = values.modes!.split(",").map((m) => {
    if (!(MODES as readonly string[]).includes(m)) throw new Error(`unknown mode ${m}`);
    return m as Mode;
  });
  if (values.role === "receive") {
    await receiver(modes[0]);
  } else {
    const bytes = parseSize(values.size!);
    const figures = await benchTransport(
      bytes,
      Math.max(1, Number(values.runs)),
      modes,
      hashing,
    );
    for (const f of figures) {
      console.log(
        `${f.mode.padEnd(10)} ${(f.bytes / 2 ** 20).toFixed(0)} MiB in ${
          f.seconds.toFixed(2)
        } s: ` +
          `${f.mbPerSec.toFixed(0)} MB/s`,
      );
    }
    const plain = figures.find((f) => f.mode === "plain");
    for (const f of figures.filter((f) => f.mode.startsWith("tls"))) {
      if (plain) {
        console.log(`${f.mode} / plain: ${(100 * f.mbPerSec / plain.mbPerSec).toFixed(0)}%`);
      }
    }
  }
}
