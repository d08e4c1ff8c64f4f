/**
 * @module cli/secure
 * `--encrypt` and `--identity` for seed and download: when a share travels encrypted, the
 * peer identity to present, the share key to prove, and listeners of either kind behind one
 * interface, so the commands do not care which transport they serve on.
 */

import { join } from "node:path";
import type { EventSink } from "../events.ts";
import type { Identity } from "../identity.ts";
import type { Metadata } from "../metadata.ts";
import type { PeerServer } from "../peer_server.ts";
import { shareKey } from "../share_auth.ts";
import { listenSecure } from "../tls_transport.ts";
import { optFlag, type OptionSpec, optString, type ParsedArgs } from "./args.ts";
import { listenTcp } from "./listen.ts";

/** The options both commands take. */
export const SECURE_OPTIONS: OptionSpec = {
  encrypt: { type: "boolean" },
  identity: { type: "string" },
};

/** Their help text. */
export const SECURE_USAGE =
  `  --encrypt            encrypt peer connections (TLS 1.3) and make every peer prove it holds
                       this share's metadata; always on for shares made with create --private
  --identity DIR       where this peer's key and certificate live (default WORKDIR/.identity,
                       created on first use, key readable by its owner only)`;

/** What an encrypted share needs. */
export interface Security {
  identity: Identity;
  key: CryptoKey;
  /** A private share: strangers get nothing but a closed connection. */
  private: boolean;
}

/** The security settings for `meta`, or `undefined` when the share travels in plaintext. */
export async function securityFor(
  args: ParsedArgs,
  meta: Metadata,
  workdir: string,
): Promise<Security | undefined> {
  const isPrivate = meta.info.private === true;
  if (!optFlag(args, "encrypt") && !isPrivate) return undefined;
  const dir = optString(args, "identity") ?? join(workdir, ".identity");
  // Loaded here, not at start: the X.509 library it brings takes about 50 ms to load, paid by
  // every plaintext download and seed otherwise (a literal specifier: still in the module
  // graph for `deno compile` and type checking).
  const { loadOrCreateIdentity } = await import("../identity.ts");
  return {
    identity: await loadOrCreateIdentity(dir),
    key: await shareKey(meta.info),
    private: isPrivate,
  };
}

/** A listener for peers, plain or encrypted. */
export interface PeerListener {
  addr: { hostname: string; port: number };
  /** Hands every incoming peer to `server` until `signal` aborts. */
  serve(server: PeerServer, signal: AbortSignal): Promise<void>;
  close(): void;
}

/**
 * Listens for peers on `host:port`: plain TCP, or TLS when `security` is given (then a
 * plaintext peer is turned away with a clear message on both sides, reported to `sink`).
 *
 * @throws {Error} one line for a port in use or an address that is not ours
 */
export async function listenPeers(
  host: string,
  port: number,
  security: Security | undefined,
  sink: EventSink,
): Promise<PeerListener> {
  if (!security) {
    const listener = listenTcp(host, port);
    const addr = listener.addr as Deno.NetAddr;
    return {
      addr: { hostname: addr.hostname, port: addr.port },
      serve: (server, signal) => server.serve(listener, signal),
      close: () => {
        try {
          listener.close();
        } catch {
          // Already closed by serve().
        }
      },
    };
  }
  try {
    const listener = await listenSecure({
      hostname: host,
      port,
      identity: security.identity,
      onRefused: (remote, reason) =>
        sink.emit({ event: "warning", message: `rejected connection from ${remote}: ${reason}` }),
    });
    return {
      addr: listener.addr,
      serve: (server, signal) => server.serveSecure(listener, signal),
      close: () => listener.close(),
    };
  } catch (err) {
    if (/EADDRINUSE|in use/i.test(String((err as Error).message ?? err))) {
      throw new Error(
        `port ${port} on ${host} is already in use (choose another with --port, or 0 for any)`,
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}
