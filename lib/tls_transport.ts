/**
 * @module tls_transport
 * Encrypted peer connections: TLS 1.3 with a certificate on both sides. The listener runs on
 * `node:tls` (Deno's own TLS API cannot show the peer's certificate, which the share proof binds
 * to): it tells TLS from plaintext by the first byte, refuses plaintext peers with a p2p-share
 * ERROR frame they can read, and goes through the adapter from a socket to the `ByteStream` that
 * `PeerConnection` runs on. The dialer probes the peer's certificate over `node:tls` once, then
 * connects with Deno's faster TLS pinned to it. Does network I/O.
 *
 * Certificates are self-signed and not verified by TLS (`rejectUnauthorized: false`): TLS gives
 * secrecy and integrity, the share proof (`secure_handshake`) gives authentication, bound to
 * both certificates' SHA-256 fingerprints so a man in the middle cannot relay it.
 */

import { createHash, X509Certificate } from "node:crypto";
import * as net from "node:net";
import * as tls from "node:tls";
import { ProtocolError } from "./errors.ts";
import type { Identity } from "./identity.ts";
import type { ByteStream } from "./peer_conn.ts";
import { looksLikeTlsClientHello } from "./tls_sniff.ts";
import { encodeError } from "./wire.ts";

export { looksLikeTlsClientHello, looksLikeTlsFrameLength } from "./tls_sniff.ts";

/** How long a TLS handshake (and, on the listener, the first byte) may take. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Bytes read ahead of the consumer before the socket is paused (backpressure). */
export const READ_HIGH_WATER_BYTES = 256 * 1024;
/** The buffer a default (non-BYOB) read of an adapted socket gets. */
const READ_CHUNK_BYTES = 64 * 1024;
/** How long a closing connection may take to flush before it is cut. */
export const CLOSE_LINGER_MS = 2_000;
/** Connections handshaken but not yet taken by `accept()` before new ones are dropped. */
export const MAX_ACCEPT_BACKLOG = 128;
/**
 * Connections still being sniffed or in their TLS handshake at once; more are cut at once, so
 * a flood of half-open connections costs neither memory nor signature work.
 */
export const MAX_PENDING_HANDSHAKES = 64;

/** What an encrypting peer tells a plaintext one, in a plaintext ERROR frame, before closing. */
export const PLAINTEXT_REFUSED_MESSAGE =
  "this peer requires encrypted transport (run with --encrypt)";

/** A TLS connection with both certificates' fingerprints, for the share proof. */
export interface SecureStream extends ByteStream {
  /** SHA-256 of our certificate's DER. */
  localCertFingerprint: Uint8Array;
  /** SHA-256 of the certificate the peer presented, DER. */
  peerCertFingerprint: Uint8Array;
  /** Resolves once the socket is fully closed (after `close()`, or when the peer hangs up). */
  closed: Promise<void>;
}

/** An accepted connection: the stream and who it came from. */
export interface AcceptedSecureStream extends SecureStream {
  /** `host:port` (IPv6 as `[addr]:port`), for messages. */
  remote: string;
  /** The peer's address alone. */
  hostname: string;
}

/** Opens an encrypted connection to a peer. */
export type SecureDialer = (
  peer: { hostname: string; port: number },
  signal: AbortSignal,
) => Promise<SecureStream>;

/** A listening encrypted endpoint. */
export interface SecureListener {
  /** Where it listens (the port the OS picked for port 0). */
  addr: { hostname: string; port: number };
  /** Handshaken connections, until {@linkcode SecureListener.close}. Iterate it once. */
  accept(): AsyncIterable<AcceptedSecureStream>;
  /** Stops listening, drops connections not yet handed out, ends `accept()`. */
  close(): void;
}

/** Options for {@linkcode listenSecure}. */
export interface ListenSecureOptions {
  hostname: string;
  port: number;
  identity: Identity;
  /** Called once for each connection turned away before `accept()` (plaintext, bad TLS...). */
  onRefused?: (remote: string, reason: string) => void;
  handshakeTimeoutMs?: number;
  /** Closes the listener when aborted. */
  signal?: AbortSignal;
}

/** Options for {@linkcode tlsDialer}. */
export interface DialOptions {
  handshakeTimeoutMs?: number;
}

function fingerprintOf(der: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(der).digest());
}

function secureContextFor(identity: Identity): tls.SecureContext {
  return tls.createSecureContext({
    cert: identity.certPem,
    key: identity.keyPem,
    minVersion: "TLSv1.3",
  });
}

/** `host:port`, IPv6 in brackets, as the rest of the program prints addresses. */
export function formatRemote(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/**
 * The peer's certificate (DER) once a handshake is done, or why the connection must not be
 * used: TLS 1.3 only, and a certificate is required on both sides.
 */
function checkEstablished(socket: tls.TLSSocket): Uint8Array | string {
  const protocol = socket.getProtocol();
  if (protocol !== "TLSv1.3") return `negotiated ${protocol ?? "no protocol"}, not TLSv1.3`;
  const cert = socket.getPeerCertificate();
  const raw = cert?.raw as Uint8Array | undefined;
  if (!raw || raw.length === 0) return "peer presented no certificate";
  return new Uint8Array(raw);
}

/**
 * Adapts a connected socket (TCP or TLS) to a {@linkcode ByteStream}, with backpressure both
 * ways: reading pauses the socket while {@linkcode READ_HIGH_WATER_BYTES} wait unread, and a
 * write resolves only once the socket has flushed the bytes, so the caller may reuse the chunk
 * (`writeReleasesBuffer`). `readable` is a byte stream: a BYOB read gets the socket's bytes
 * copied straight into the caller's buffer (a frame buffer `PeerConnection` recycles), so no
 * buffer is allocated per frame. The end of the peer's stream ends `readable` after the bytes
 * before it; a socket error errors both sides. `close()` flushes what was written, sends the
 * TLS close_notify and FIN, and cuts the socket after {@linkcode CLOSE_LINGER_MS} if the peer
 * does not close its side.
 *
 * @param socket a connected `net.Socket` or `tls.TLSSocket`, not read from yet
 * @param first bytes already read from it, read first
 * @returns the stream, and a promise that resolves when the socket is fully closed
 */
export function socketByteStream(
  socket: net.Socket,
  first?: Uint8Array,
): ByteStream & { closed: Promise<void>; writeReleasesBuffer: true } {
  const flow = flowControl(socket);
  const incoming = new ChunkQueue();
  if (first) incoming.push(first);
  let readController!: ReadableByteStreamController;
  /** False once we close or cancel: what the peer still sends is drained and dropped. */
  let readOpen = true;
  /** Set when the peer's stream ended (`end: true`) or failed; delivered after queued bytes. */
  let ending: { error?: Error } | undefined;
  /** Wakes a pull waiting for bytes or the end. */
  let wake: (() => void) | undefined;
  let pulling = false;
  let failure: Error | undefined;
  let lingerTimer: ReturnType<typeof setTimeout> | undefined;
  const { promise: closed, resolve: resolveClosed } = Promise.withResolvers<void>();

  /** Ends `readable` at once (no pull waiting) or lets the waiting pull end it. */
  const finishRead = (error?: Error) => {
    ending ??= { error };
    if (pulling) return void wakeUp();
    if (error || incoming.bytes === 0) settleReadable(readController, ending.error);
  };
  const wakeUp = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const endRead = (err?: Error) => {
    if (!readOpen) return;
    readOpen = false;
    incoming.clear();
    finishRead(err);
  };

  const readable = new ReadableStream(
    {
      type: "bytes",
      // A default (non-BYOB) read gets a buffer of this size, so every read is a BYOB request.
      autoAllocateChunkSize: READ_CHUNK_BYTES,
      start(controller) {
        readController = controller;
      },
      async pull(controller) {
        pulling = true;
        try {
          while (incoming.bytes === 0 && !ending) {
            flow.resume();
            await new Promise<void>((resolve) => (wake = resolve));
          }
        } finally {
          pulling = false;
        }
        const request = controller.byobRequest!;
        if (ending?.error || incoming.bytes === 0) {
          return settleReadable(controller, ending?.error);
        }
        const view = request.view!;
        request.respond(
          incoming.take(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)),
        );
        if (incoming.bytes < READ_HIGH_WATER_BYTES) flow.resume();
        if (ending && incoming.bytes === 0) settleReadable(controller);
      },
      cancel() {
        readOpen = false;
        incoming.clear();
        socket.destroy();
      },
    },
    { highWaterMark: 0 },
  );

  const onData = (chunk: Uint8Array) => {
    if (!readOpen) return; // closing: drain and drop what the peer still sends
    incoming.push(chunk);
    wakeUp();
    if (incoming.bytes >= READ_HIGH_WATER_BYTES) flow.pause();
  };
  socket.on("data", onData);
  socket.on("end", () => finishRead());
  socket.on("error", (err: Error) => {
    failure ??= err;
    incoming.clear();
    finishRead(err);
  });
  socket.on("close", () => {
    clearTimeout(lingerTimer);
    finishRead(failure);
    resolveClosed();
  });

  const closedError = () => failure ?? new Error("connection closed");

  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      return new Promise<void>((resolve, reject) => {
        if (socket.destroyed || socket.writableEnded) return reject(closedError());
        // Resolved by the write callback: the socket has flushed the chunk (TLS: encrypted
        // it) and holds it no more, so the caller may reuse it; this is also the backpressure.
        const onClose = () => reject(closedError());
        socket.once("close", onClose);
        socket.write(chunk, (err?: Error | null) => {
          socket.off("close", onClose);
          if (err) reject(failure ?? err);
          else resolve();
        });
      });
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        if (socket.destroyed) return reject(closedError());
        const onFinish = () => {
          socket.off("close", onClose);
          resolve();
        };
        const onClose = () => {
          socket.off("finish", onFinish);
          reject(closedError());
        };
        socket.once("finish", onFinish);
        socket.once("close", onClose);
        socket.end();
      });
    },
    abort() {
      socket.destroy();
    },
  });

  const close = () => {
    endRead();
    flow.resume(); // keep draining so the peer's writes and its FIN get through
    if (socket.destroyed) return;
    if (!socket.writableEnded) socket.end();
    lingerTimer ??= setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
  };

  return { readable, writable, close, closed, writeReleasesBuffer: true };
}

/** Ends a byte stream: closed (a pending BYOB read then reads as done) or errored. */
function settleReadable(controller: ReadableByteStreamController, error?: Error): void {
  try {
    if (error) return controller.error(error);
    controller.close();
    controller.byobRequest?.respond(0);
  } catch {
    // Already closed, errored or cancelled.
  }
}

/**
 * Bytes received and not yet read, as the chunks the socket gave (no copy until a reader
 * takes them).
 */
class ChunkQueue {
  #chunks: Uint8Array[] = [];
  /** Offset into the first chunk of what is already taken. */
  #head = 0;
  bytes = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** Copies as much as fits into `into`; returns how many bytes were copied. */
  take(into: Uint8Array): number {
    let n = 0;
    while (n < into.length && this.#chunks.length > 0) {
      const first = this.#chunks[0];
      const count = Math.min(into.length - n, first.length - this.#head);
      into.set(first.subarray(this.#head, this.#head + count), n);
      n += count;
      this.#head += count;
      if (this.#head === first.length) {
        this.#chunks.shift();
        this.#head = 0;
      }
    }
    this.bytes -= n;
    return n;
  }

  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.bytes = 0;
  }
}

/** Stops and restarts reading from the kernel: the backpressure of the read side. */
interface FlowControl {
  pause(): void;
  resume(): void;
}

interface NativeTcpHandle {
  readStop(): unknown;
  readStart(): unknown;
}

/**
 * Read flow control for a socket. For a TLS socket in Deno 2.9 this stops and starts the TCP
 * handle under the TLS layer directly: `TLSSocket.pause()` stops the TLS layer's reads, and
 * after a stop and restart there Deno loses the peer's end of stream (no `'end'`, ever, while
 * all data arrived; reproduced on 2.9.6). Stopping the TCP handle below has the same effect on
 * the kernel (its receive window fills, the peer's writes wait) and keeps the end intact.
 * Any other socket uses `pause()`/`resume()`.
 */
function flowControl(socket: net.Socket): FlowControl {
  const handle = (socket as unknown as { _handle?: { _nativeTcpHandle?: NativeTcpHandle } })
    ._handle;
  const native = handle?._nativeTcpHandle;
  if (
    socket instanceof tls.TLSSocket && native && typeof native.readStop === "function" &&
    typeof native.readStart === "function"
  ) {
    let paused = false;
    return {
      pause() {
        if (paused || socket.destroyed) return;
        paused = true;
        native.readStop();
      },
      resume() {
        if (!paused || socket.destroyed) return;
        paused = false;
        native.readStart();
      },
    };
  }
  return { pause: () => socket.pause(), resume: () => socket.resume() };
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException("aborted", "AbortError");
}

/** Opens a TCP connection, mapping failures to the errors `Deno.connect` would throw. */
function connectTcp(hostname: string, port: number, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port, allowHalfOpen: true });
    const done = () => {
      signal.removeEventListener("abort", onAbort);
      socket.off("connect", onConnect);
      socket.off("error", onError);
    };
    const onAbort = () => {
      done();
      socket.destroy();
      reject(abortReason(signal));
    };
    const onConnect = () => {
      done();
      socket.setNoDelay(true);
      resolve(socket);
    };
    const onError = (err: Error & { code?: string }) => {
      done();
      socket.destroy();
      const addr = formatRemote(hostname, port);
      if (err.code === "ECONNREFUSED") {
        reject(new Deno.errors.ConnectionRefused(`connection refused by ${addr}`, { cause: err }));
      } else {
        reject(new Error(`cannot connect to ${addr}: ${err.message}`, { cause: err }));
      }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.on("connect", onConnect);
    socket.on("error", onError);
  });
}

/** Errors that mean the other side answered a ClientHello with something that is not TLS. */
function isNotTlsFailure(err: Error & { code?: string }): boolean {
  return /WRONG_VERSION_NUMBER|ECONNRESET|EPIPE|ERR_SSL_|InvalidContentType|CorruptMessage/i
    .test(`${err.code ?? ""} ${err.message}`) ||
    /before secure TLS connection was established/i.test(err.message);
}

/** Peers whose certificate a dialer remembers (oldest forgotten first). */
const MAX_PINNED_PEERS = 1024;

/** A peer's certificate, learnt by a probe and pinned for the connections that carry data. */
interface PinnedPeer {
  pem: string;
  fingerprint: Uint8Array;
  /** Deno's TLS refused this certificate: connect over `node:tls` instead. */
  viaNodeTls?: boolean;
}

/**
 * Makes the dialer for encrypted peer connections.
 *
 * Pieces flow over Deno's own TLS (`Deno.connectTls`): its byte stream reads straight into
 * our frame buffers, at about twice the throughput of `node:tls` through the socket adapter
 * (measured 2.0 against 0.75-1.0 GB/s over loopback). Deno's client cannot accept a
 * self-signed certificate it was not told about, nor show the one it got, so the first
 * connection to a peer is a probe over `node:tls` that reads the peer's certificate and closes
 * before sending a byte. Every connection after it adds that certificate to the trust anchors
 * (Deno keeps its public root store beside it, and the host name is not checked). What
 * authenticates the peer is the share proof, bound to both certificates as each side saw them:
 * any other certificate, a publicly signed one included, makes it fail. A peer that since
 * changed its identity is probed again, once.
 *
 * @param identity our certificate and key (presented as the TLS client certificate)
 * @param options handshake timeout
 * @returns a dialer: TCP connect, TLS 1.3 handshake with our certificate, the peer's
 *   certificate fingerprint
 * @throws (from the dialer) {Deno.errors.ConnectionRefused} when nothing listens there;
 *   {ProtocolError} `peer HOST:PORT does not speak encrypted transport (it runs without
 *   --encrypt)` when it answers in plaintext; the signal's reason when aborted
 */
export function tlsDialer(identity: Identity, options: DialOptions = {}): SecureDialer {
  const secureContext = secureContextFor(identity);
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const pins = new Map<string, Promise<PinnedPeer>>();
  /** A whole connection over `node:tls` and the socket adapter (slower, takes any certificate). */
  const viaNodeTls = async (
    peer: { hostname: string; port: number },
    signal: AbortSignal,
  ): Promise<SecureStream> => {
    const { socket, peerCert } = await nodeTlsHandshake(
      peer,
      signal,
      secureContext,
      handshakeTimeoutMs,
    );
    return {
      ...socketByteStream(socket),
      localCertFingerprint: identity.fingerprint,
      peerCertFingerprint: fingerprintOf(peerCert),
    };
  };
  const probe = (peer: { hostname: string; port: number }, addr: string, signal: AbortSignal) => {
    let pin = pins.get(addr);
    if (pin) return { pin, fresh: false };
    pin = (async () => {
      const { socket, peerCert } = await nodeTlsHandshake(
        peer,
        signal,
        secureContext,
        handshakeTimeoutMs,
      );
      socket.destroy(); // nothing sent: the peer sees a connection that only looked
      return {
        pem: new X509Certificate(peerCert).toString(),
        fingerprint: fingerprintOf(peerCert),
      };
    })();
    pins.set(addr, pin);
    pin.catch(() => pins.get(addr) === pin && pins.delete(addr));
    if (pins.size > MAX_PINNED_PEERS) pins.delete(pins.keys().next().value!);
    return { pin, fresh: true };
  };
  return async (peer, signal) => {
    signal.throwIfAborted();
    const addr = formatRemote(peer.hostname, peer.port);
    for (;;) {
      const { pin, fresh } = probe(peer, addr, signal);
      const pinned = await pin;
      if (pinned.viaNodeTls) return await viaNodeTls(peer, signal);
      try {
        return await connectPinned(peer, addr, pinned, identity, signal, handshakeTimeoutMs);
      } catch (err) {
        if (!isCertificateFailure(err)) throw err;
        if (fresh) {
          // The certificate the peer just showed, refused by Deno's TLS (out of its dates on
          // our clock, say): this peer is reached over `node:tls`, which takes any certificate,
          // as before; the proofs authenticate either way.
          pinned.viaNodeTls = true;
          return await viaNodeTls(peer, signal);
        }
        // A remembered certificate the peer no longer presents: probe again, once.
        if (pins.get(addr) === pin) pins.delete(addr);
      }
    }
  };
}

/** Errors of `Deno.connectTls` that mean the peer's certificate was not the pinned one. */
function isCertificateFailure(err: unknown): boolean {
  return err instanceof ProtocolError && /certificate/i.test(String(err.cause ?? ""));
}

/**
 * One connection over Deno's TLS that trusts `pinned` (besides Deno's root store), presenting our
 * certificate as the client certificate. The host name is not checked: the pin names the peer.
 */
async function connectPinned(
  peer: { hostname: string; port: number },
  addr: string,
  pinned: PinnedPeer,
  identity: Identity,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<SecureStream> {
  const connecting = (async () => {
    const conn = await Deno.connectTls({
      hostname: peer.hostname,
      port: peer.port,
      caCerts: [pinned.pem],
      cert: identity.certPem,
      key: identity.keyPem,
      unsafelyDisableHostnameVerification: true,
    });
    try {
      await conn.handshake();
    } catch (err) {
      conn.close();
      throw err;
    }
    return conn;
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const cut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ProtocolError(`TLS handshake with ${addr} timed out`)),
      timeoutMs,
    );
    onAbort = () => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  let conn: Deno.TlsConn;
  try {
    conn = await Promise.race([connecting, cut]);
  } catch (err) {
    connecting.then((late) => late.close(), () => {}); // given up on: close it if it comes
    if (err instanceof ProtocolError || signal.aborted) throw err;
    if (err instanceof Deno.errors.ConnectionRefused) {
      throw new Deno.errors.ConnectionRefused(`connection refused by ${addr}`, { cause: err });
    }
    throw new ProtocolError(`TLS handshake with ${addr} failed: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort!);
  }
  const { promise: closed, resolve: resolveClosed } = Promise.withResolvers<void>();
  return {
    readable: conn.readable,
    writable: conn.writable,
    close() {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      resolveClosed();
    },
    closed,
    localCertFingerprint: identity.fingerprint,
    peerCertFingerprint: pinned.fingerprint,
  };
}

/**
 * A TCP connection and a `node:tls` client handshake with our certificate, checked (TLS 1.3, a
 * peer certificate), with the errors the dialer reports.
 */
async function nodeTlsHandshake(
  peer: { hostname: string; port: number },
  signal: AbortSignal,
  secureContext: tls.SecureContext,
  handshakeTimeoutMs: number,
): Promise<{ socket: tls.TLSSocket; peerCert: Uint8Array }> {
  const addr = formatRemote(peer.hostname, peer.port);
  const raw = await connectTcp(peer.hostname, peer.port, signal);
  const socket = tls.connect({
    socket: raw,
    secureContext,
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
  }); // half-open like a Deno.Conn, inherited from the TCP socket
  const handshake = new Promise<Uint8Array>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error("timed out")), handshakeTimeoutMs);
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.off("secureConnect", onSecure);
      socket.off("error", fail);
      socket.off("close", onClose);
    };
    const onAbort = () => {
      done();
      socket.destroy();
      reject(abortReason(signal));
    };
    const onSecure = () => {
      done();
      const checked = checkEstablished(socket);
      if (typeof checked === "string") {
        socket.destroy();
        reject(new ProtocolError(`encrypted connection to ${addr} refused: ${checked}`));
      } else {
        resolve(checked);
      }
    };
    const fail = (err: Error & { code?: string }) => {
      done();
      socket.destroy();
      if (err.message === "timed out") {
        reject(
          new ProtocolError(
            `TLS handshake with ${addr} timed out (is it a p2p-share peer running with --encrypt?)`,
          ),
        );
      } else if (isNotTlsFailure(err)) {
        reject(
          new ProtocolError(
            `peer ${addr} does not speak encrypted transport (it runs without --encrypt)`,
            { cause: err },
          ),
        );
      } else {
        reject(
          new ProtocolError(`TLS handshake with ${addr} failed: ${err.message}`, { cause: err }),
        );
      }
    };
    const onClose = () => fail(Object.assign(new Error("socket closed"), { code: "ECONNRESET" }));
    signal.addEventListener("abort", onAbort, { once: true });
    socket.on("secureConnect", onSecure);
    socket.on("error", fail);
    socket.on("close", onClose);
  });
  const peerCert = await handshake;
  return { socket, peerCert };
}

/**
 * Listens for encrypted peer connections on `hostname:port`. Every incoming connection is
 * sniffed: a TLS ClientHello gets the TLS 1.3 server side (a client certificate is required);
 * anything else is a plaintext p2p-share peer and gets a plaintext ERROR frame
 * ({@linkcode PLAINTEXT_REFUSED_MESSAGE}) and a close, reported through `onRefused`.
 *
 * @param options address, identity, refusal callback, timeout, signal
 * @returns the listener, once it listens
 * @throws {Error} `port P on HOST is already in use ...` and the like
 */
export async function listenSecure(options: ListenSecureOptions): Promise<SecureListener> {
  const secureContext = secureContextFor(options.identity);
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const pending = new Set<net.Socket>();
  const ready: AcceptedSecureStream[] = [];
  let wake: (() => void) | undefined;
  let closed = false;

  const refuse = (remote: string, reason: string) => {
    try {
      options.onRefused?.(remote, reason);
    } catch {
      // A logging callback must not break the listener.
    }
  };

  const handle = (raw: net.Socket) => {
    const hostname = raw.remoteAddress ?? "";
    const remote = formatRemote(hostname, raw.remotePort ?? 0);
    raw.on("error", () => {}); // reported through 'close' or the TLS socket
    if (closed) return void raw.destroy();
    if (pending.size >= MAX_PENDING_HANDSHAKES) {
      refuse(remote, `too many connections in their handshake (${MAX_PENDING_HANDSHAKES})`);
      return void raw.destroy();
    }
    pending.add(raw);
    raw.setNoDelay(true);
    let tlsSocket: tls.TLSSocket | undefined;
    let settled = false;
    /** Ends this connection's handshake phase: refused with `reason`, or handed over. */
    const settle = (reason?: string) => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      pending.delete(raw);
      if (reason !== undefined) {
        refuse(remote, reason);
        tlsSocket?.destroy();
        raw.destroy();
      }
      return true;
    };
    const timer = setTimeout(
      () => settle("nothing received in time (TLS handshake timed out)"),
      handshakeTimeoutMs,
    );
    raw.once("close", () => settle("closed before the TLS handshake was done"));
    raw.once("data", (first: Uint8Array) => {
      if (settled) return;
      raw.pause();
      if (!looksLikeTlsClientHello(first)) {
        settled = true; // the refusal closes it; nothing more to report
        clearTimeout(timer);
        pending.delete(raw);
        refusePlaintext(raw);
        refuse(
          remote,
          "plaintext connection (a peer without --encrypt?) refused: this peer requires " +
            "encrypted transport",
        );
        return;
      }
      raw.unshift(first);
      const socket = new tls.TLSSocket(raw, {
        isServer: true,
        secureContext,
        requestCert: true,
        rejectUnauthorized: false,
      }); // half-open, inherited from the TCP socket
      tlsSocket = socket;
      const onError = (err: Error) =>
        settle(
          `TLS handshake failed: ${err.message}${
            /CertificateExpired|CertificateNotValidYet/i.test(err.message)
              ? " (the other machine's clock is outside our certificate's dates; a p2p-share " +
                "peer retries over node:tls)"
              : ""
          }`,
        );
      const onClose = () => settle("closed during the TLS handshake");
      socket.on("error", onError);
      socket.once("close", onClose);
      socket.once("secure", () => {
        const checked = checkEstablished(socket);
        if (typeof checked === "string") return settle(`encrypted connection refused: ${checked}`);
        // Handed over with the peer's first bytes (an initiator speaks first). A dialer that
        // only read our certificate ends without a byte and is let go without a report.
        const onEnd = () => {
          if (settle()) socket.destroy();
        };
        socket.off("close", onClose);
        socket.once("close", onEnd);
        socket.once("end", onEnd);
        socket.once("data", (first: Uint8Array) => {
          socket.off("close", onEnd);
          socket.off("end", onEnd);
          if (closed || ready.length >= MAX_ACCEPT_BACKLOG) {
            return settle(closed ? "listener closed" : "too many connections waiting");
          }
          if (!settle()) return;
          socket.off("error", onError);
          ready.push({
            ...socketByteStream(socket, first),
            localCertFingerprint: options.identity.fingerprint,
            peerCertFingerprint: fingerprintOf(checked),
            remote,
            hostname,
          });
          wake?.();
        });
      });
    });
  };

  // Half-open like a Deno.Conn: the end of one direction does not end the other.
  const server = net.createServer({ allowHalfOpen: true }, handle);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error & { code?: string }) => {
      server.off("listening", onListening);
      const where = `${options.hostname}`;
      if (err.code === "EADDRINUSE") {
        reject(
          new Error(
            `port ${options.port} on ${where} is already in use (choose another with --port, or 0 for any)`,
            { cause: err },
          ),
        );
      } else if (err.code === "EADDRNOTAVAIL") {
        reject(
          new Error(`cannot listen on ${where}: no such address on this machine`, { cause: err }),
        );
      } else {
        reject(err);
      }
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen({ host: options.hostname, port: options.port });
  });
  server.on("error", () => {}); // after listening, errors concern single connections

  const close = () => {
    if (closed) return;
    closed = true;
    options.signal?.removeEventListener("abort", close);
    server.close();
    for (const raw of pending) raw.destroy();
    for (const stream of ready.splice(0)) stream.close();
    wake?.();
  };
  if (options.signal?.aborted) close();
  options.signal?.addEventListener("abort", close, { once: true });

  const address = server.address() as net.AddressInfo | null;
  return {
    addr: { hostname: address?.address ?? options.hostname, port: address?.port ?? options.port },
    async *accept() {
      for (;;) {
        const next = ready.shift();
        if (next) {
          yield next;
          continue;
        }
        if (closed) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    },
    close,
  };
}

/**
 * Answers a plaintext peer in its own protocol: one ERROR frame, then a close once it is sent
 * (or after {@linkcode CLOSE_LINGER_MS}). What it already sent was read with the first chunk,
 * so the close is a clean FIN, not a reset that could eat the frame.
 */
function refusePlaintext(raw: net.Socket): void {
  const timer = setTimeout(() => raw.destroy(), CLOSE_LINGER_MS);
  raw.once("close", () => clearTimeout(timer));
  raw.resume(); // drain whatever else it sends until it hangs up
  raw.end(encodeError(PLAINTEXT_REFUSED_MESSAGE));
}
