/**
 * @module tls_kit
 * Shared kit for the encrypted-transport tests: identities made once per test file in a temp
 * folder, a listener plus a dialed pair on 127.0.0.1 port 0, and byte helpers. Does I/O.
 * Everything it opens has an owner that closes it (the sanitizers are on).
 */

import { type Identity, makeSelfSignedCertificate, PEER_CERT_CN } from "../lib/identity.ts";
import {
  type AcceptedSecureStream,
  listenSecure,
  type SecureDialer,
  type SecureListener,
  type SecureStream,
  tlsDialer,
} from "../lib/tls_transport.ts";
import { SwarmTable } from "../lib/swarm_table.ts";
import { createTrackerHandler } from "../lib/tracker_server.ts";
import { concatBytes } from "../lib/units.ts";

/** A fresh peer identity (not stored: tests that need files use `loadOrCreateIdentity`). */
export function peerIdentity(): Promise<Identity> {
  return makeSelfSignedCertificate({ commonName: PEER_CERT_CN });
}

/** A listener on 127.0.0.1 port 0 with the refusals it reported. */
export interface TestListener extends AsyncDisposable {
  listener: SecureListener;
  port: number;
  refusals: { remote: string; reason: string }[];
  /** Resolves on the next refusal. */
  nextRefusal(): Promise<{ remote: string; reason: string }>;
  /** The next accepted connection. */
  next(): Promise<AcceptedSecureStream>;
}

/** Starts a secure listener on 127.0.0.1, port 0 (or `port`). */
export async function testListener(identity: Identity, port = 0): Promise<TestListener> {
  const refusals: { remote: string; reason: string }[] = [];
  let onRefusal: ((r: { remote: string; reason: string }) => void) | undefined;
  const listener = await listenSecure({
    hostname: "127.0.0.1",
    port,
    identity,
    onRefused: (remote, reason) => {
      refusals.push({ remote, reason });
      onRefusal?.({ remote, reason });
    },
  });
  const incoming = listener.accept()[Symbol.asyncIterator]();
  return {
    listener,
    port: listener.addr.port,
    refusals,
    nextRefusal: () => new Promise((resolve) => (onRefusal = resolve)),
    async next() {
      const { done, value } = await incoming.next();
      if (done) throw new Error("listener closed");
      return value;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await incoming.return?.();
    },
  };
}

/**
 * Dials the test listener and returns both ends of the connection, with nothing left unread.
 * The listener hands a connection over only with its first bytes (a dialer that just reads
 * the certificate sends none), so the client sends a keep-alive frame, which the accepted
 * end reads off here.
 */
export function dialAccepted(
  identity: Identity,
  server: TestListener,
): Promise<[SecureStream, AcceptedSecureStream]> {
  return dialAcceptedWith(tlsDialer(identity), server);
}

/** {@linkcode dialAccepted} with a given dialer (one that may remember the peer). */
export async function dialAcceptedWith(
  dial: SecureDialer,
  server: TestListener,
): Promise<[SecureStream, AcceptedSecureStream]> {
  const client = await dial(
    { hostname: "127.0.0.1", port: server.port },
    AbortSignal.timeout(10_000),
  );
  const writer = client.writable.getWriter();
  await writer.write(new Uint8Array(4)); // a keep-alive frame
  writer.releaseLock();
  const accepted = await server.next();
  const reader = accepted.readable.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(4);
  for (let got = 0; got < 4;) {
    const { done, value } = await reader.read(new Uint8Array(buffer, got, 4 - got));
    if (done) throw new Error("connection ended before the keep-alive frame");
    buffer = value.buffer as ArrayBuffer;
    got += value.length;
  }
  reader.releaseLock();
  if (new Uint8Array(buffer).some((b) => b !== 0)) throw new Error("expected a keep-alive frame");
  return [client, accepted];
}

/** Closes both ends and waits (10 s at most) until both sockets are gone. */
export async function closeBoth(...streams: SecureStream[]): Promise<void> {
  for (const s of streams) s.close();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      Promise.all(streams.map((s) => s.closed)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("a socket did not close within 10 s")), 10_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads a stream to its end, returning the byte count and the SHA-256 of what was read. */
export async function drain(
  readable: ReadableStream<Uint8Array>,
): Promise<{ bytes: number; sha256: string }> {
  const { createHash } = await import("node:crypto");
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of readable) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/** A deterministic pseudo-random block (xorshift), so the data is not all zeros. */
export function patternBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Reads everything a plain `Deno.Conn` receives until the peer closes (bounded by a timeout). */
export async function readAllPlain(conn: Deno.Conn, timeoutMs = 10_000): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch {
        break; // reset or closed by the timer: what arrived is what counts
      }
      if (n === null) break;
      parts.push(buf.slice(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  return concatBytes(parts);
}

/**
 * An HTTPS tracker (the real handler) in this process on 127.0.0.1, port 0: for certificates
 * the `tracker` command refuses to start with (expired, wrong host).
 */
export function httpsTrackerInProcess(id: Identity) {
  const table = new SwarmTable();
  const handler = createTrackerHandler(table, { intervalSec: 30 });
  const server = serveHttps(id, (req, info) => handler(req, info.remoteAddr));
  return {
    url: `https://127.0.0.1:${server.port}/announce`,
    port: server.port,
    table,
    [Symbol.asyncDispose]: server[Symbol.asyncDispose],
  };
}

/**
 * An HTTPS server in this process on 127.0.0.1, port 0, with `id`'s certificate, stopped on
 * dispose. A client that refuses the certificate aborts the handshake: answered 500, not thrown.
 */
export function serveHttps(id: Identity, handler: Deno.ServeHandler<Deno.NetAddr>) {
  const controller = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: id.certPem,
    key: id.keyPem,
    signal: controller.signal,
    onListen: () => {},
    onError: () => new Response('{"error":"internal error"}', { status: 500 }),
  }, handler);
  return {
    port: server.addr.port,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await server.finished;
    },
  };
}

/** A tracker certificate written to files, as `tracker --tls-cert/--tls-key` takes them. */
export interface TrackerCertFiles {
  identity: Identity;
  /** PEM certificate, mode 0644 (also usable as `--tracker-ca`). */
  certFile: string;
  /** PEM PKCS#8 key, mode 0600. */
  keyFile: string;
}

/**
 * Makes a self-signed tracker certificate (ECDSA P-256, CA:FALSE, CN "tracker") with the given
 * subjectAltName entries and validity, and writes it as `DIR/NAME-cert.pem` and `DIR/NAME-key.pem`.
 *
 * @param options `altNames` (default `["127.0.0.1"]`), `notBefore`/`notAfter` (default: valid now)
 */
export async function trackerCertFiles(
  dir: string,
  name: string,
  options: { altNames?: string[]; notBefore?: Date; notAfter?: Date } = {},
): Promise<TrackerCertFiles> {
  const identity = await makeSelfSignedCertificate({
    commonName: "tracker",
    altNames: options.altNames ?? ["127.0.0.1"],
    notBefore: options.notBefore,
    notAfter: options.notAfter,
  });
  const certFile = `${dir}/${name}-cert.pem`;
  const keyFile = `${dir}/${name}-key.pem`;
  await Deno.writeTextFile(certFile, identity.certPem, { mode: 0o644 });
  await Deno.writeTextFile(keyFile, identity.keyPem, { mode: 0o600 });
  await Deno.chmod(keyFile, 0o600);
  return { identity, certFile, keyFile };
}
