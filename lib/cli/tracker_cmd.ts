/**
 * @module cli/tracker_cmd
 * The `tracker` subcommand: serves the tracker handler with `Deno.serve` (HTTPS with
 * `--tls-cert`/`--tls-key`, checked by {@linkcode loadTrackerTls}) and sweeps expired peers on
 * a timer until the command's signal aborts. Shell: file and network I/O and one timer.
 */

import { UsageError } from "../errors.ts";
import { loadTrackerTls, type TrackerTlsOptions } from "../https_trust.ts";
import { normalizeIp, SwarmTable } from "../swarm_table.ts";
import { DEFAULT_TRACKER_PORT } from "../tracker_client.ts";
import { createTrackerHandler, DEFAULT_INTERVAL_SEC } from "../tracker_server.ts";
import {
  expectPositionals,
  optInteger,
  optPort,
  optString,
  optStrings,
  parseCommandArgs,
} from "./args.ts";
import type { Command, CommandContext } from "./context.ts";
import { startWebMonitor, WEB_OPTIONS, WEB_USAGE, type WebMonitor, webSettings } from "./web.ts";

/** Longest re-announce interval accepted, in seconds (one day). */
export const MAX_INTERVAL_SEC = 86_400;

const USAGE =
  `tracker [--port P] [--host ADDR] [--interval SECONDS] [--allow-ip-from ADDR]... [--tls-cert FILE --tls-key FILE] [--web [HOST:]PORT] [--json]

Runs an HTTP tracker through which seeders and downloaders find each other.
Peers announce to http://HOST:PORT/announce; people can open http://HOST:PORT/ to see
each shared file with its seeders and downloaders (/stats gives the same as JSON).
With --tls-cert and --tls-key it serves HTTPS instead (https://HOST:PORT/announce).

Options:
  --port P              port to listen on (default ${DEFAULT_TRACKER_PORT}; 0 picks a free port)
  --host ADDR           address to listen on (default 0.0.0.0, every IPv4 interface)
  --interval SECONDS    re-announce interval handed to peers (default ${DEFAULT_INTERVAL_SEC}, min 1);
                        peers silent for about two intervals are dropped
  --allow-ip-from ADDR  trust the "ip" parameter in announces coming from ADDR (repeatable),
                        for peers behind the same host or NAT as ADDR; from any other address
                        the tracker hands out the address the request came from
  --tls-cert FILE       serve HTTPS with this PEM certificate (give --tls-key too); it must
                        be within its dates and name the address peers use in its
                        subjectAltName. The tracker prints its SHA-256 pin at start, for
                        peers' --tracker-pin; or peers trust it with --tracker-ca FILE
  --tls-key FILE        the certificate's PEM private key (keep it chmod 600)
${WEB_USAGE}
  --json                print events as JSON lines (a "listening" event once serving)
  -h, --help            show this help

Stop it with Ctrl-C or SIGTERM. Nothing is kept on disk: after a restart the tracker is
repopulated by the peers' next announces.`;

/** `tracker`: runs the HTTP(S) tracker until the signal aborts. */
export const trackerCommand: Command = {
  name: "tracker",
  summary: "run an HTTP(S) tracker through which peers find each other",
  usage: USAGE,
  run: runTracker,
};

/**
 * Parses the tracker's options, serves until `ctx.signal` aborts, and returns exit code 0.
 *
 * @throws {UsageError} on a bad option, or a `--tls-cert`/`--tls-key` pair that cannot be read,
 *   does not match, or is out of its dates
 * @throws {Error} with a one-line message when the address cannot be listened on (port in use)
 */
async function runTracker(argv: string[], ctx: CommandContext): Promise<number> {
  const args = parseCommandArgs(argv, {
    port: { type: "string" },
    host: { type: "string" },
    interval: { type: "string" },
    "allow-ip-from": { type: "string", multiple: true },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    ...WEB_OPTIONS,
  }, "tracker");
  expectPositionals(args, 0, "tracker");
  const port = optPort(args, "port", DEFAULT_TRACKER_PORT);
  const host = optString(args, "host") ?? "0.0.0.0";
  if (host === "") throw new UsageError("tracker: --host must not be empty");
  const intervalSec = optInteger(args, "interval", {
    min: 1,
    max: MAX_INTERVAL_SEC,
    fallback: DEFAULT_INTERVAL_SEC,
  });
  const allowIpFrom = optStrings(args, "allow-ip-from").map((text) => {
    const ip = normalizeIp(text);
    if (ip === undefined) {
      throw new UsageError(`tracker: --allow-ip-from needs an IP address, got "${text}"`);
    }
    return ip;
  });
  const web = webSettings(args, "tracker");
  const certFile = optString(args, "tls-cert");
  const keyFile = optString(args, "tls-key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError(
      `tracker: --tls-cert and --tls-key go together: give both for HTTPS, or neither ` +
        `(see 'tracker --help')`,
    );
  }
  if (certFile === "" || keyFile === "") {
    throw new UsageError("tracker: --tls-cert and --tls-key must not be empty");
  }
  let tls: TrackerTlsOptions | undefined;
  if (certFile !== undefined && keyFile !== undefined) {
    tls = await loadTrackerTls({ certFile, keyFile });
    for (const message of tls.warnings) ctx.sink.emit({ event: "warning", message });
    ctx.sink.emit({ event: "info", message: `certificate SHA-256 pin: ${tls.pin}` });
  }
  const scheme = tls ? "https" : "http";

  // Grace of about two intervals, plus slack for a peer whose announce is a little late.
  const peerTtlMs = 2 * intervalSec * 1000 + Math.min(30_000, intervalSec * 500);
  const table = new SwarmTable({ peerTtlMs });
  const handler = createTrackerHandler(table, { intervalSec, allowIpFrom });

  // Aborted by Ctrl-C, or by a web monitor that cannot start.
  const stopping = new AbortController();
  const signal = AbortSignal.any([ctx.signal, stopping.signal]);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: host,
      port,
      ...(tls ? { cert: tls.cert, key: tls.key } : {}),
      signal,
      onListen: (addr) => {
        const shown = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
        const wildcard = addr.hostname === "0.0.0.0" || addr.hostname === "::";
        ctx.sink.emit({
          event: "listening",
          host: addr.hostname,
          port: addr.port,
          service: "tracker",
          ...(wildcard ? {} : { url: `${scheme}://${shown}:${addr.port}/announce` }),
        });
      },
      onError: () => new Response('{"error":"internal error"}', { status: 500 }),
    }, (req, info) => handler(req, info.remoteAddr));
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      throw new Error(`tracker: cannot listen on ${host}:${port}: address already in use`, {
        cause: err,
      });
    }
    throw new Error(`tracker: cannot listen on ${host}:${port}: ${(err as Error).message}`, {
      cause: err,
    });
  }

  let monitor: WebMonitor | undefined;
  if (web !== undefined) {
    try {
      monitor = await startWebMonitor({
        ...web,
        source: { snapshot: () => ({ role: "tracker", swarms: table.stats().swarms }) },
        signal,
        sink: ctx.sink,
      });
    } catch (err) {
      stopping.abort(err);
      await server.finished;
      throw err;
    }
  }

  const sweepMs = Math.min(60_000, Math.max(1000, intervalSec * 500));
  const sweeper = setInterval(() => table.expire(performance.now()), sweepMs);
  try {
    await Promise.all([server.finished, monitor?.finished]);
  } finally {
    clearInterval(sweeper);
  }
  return 0;
}
