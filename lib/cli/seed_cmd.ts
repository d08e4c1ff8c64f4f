/**
 * @module cli/seed_cmd
 * The `seed` subcommand: verify a source file into the work folder, then serve its pieces.
 */

import { errorMessage } from "../errors.ts";
import { ingestSource } from "../ingest.ts";
import { readMetadataFile } from "../meta_file.ts";
import { reachableAddress } from "../net_addr.ts";
import { newPeerId } from "../peer_conn.ts";
import { PeerServer } from "../peer_server.ts";
import { ShareStorage } from "../storage.ts";
import {
  expectPositionals,
  optInteger,
  optPort,
  optSize,
  optString,
  optStrings,
  parseCommandArgs,
  requireString,
} from "./args.ts";
import type { Command } from "./context.ts";
import { listenPeers, SECURE_OPTIONS, SECURE_USAGE, securityFor } from "./secure.ts";
import { PieceState, type ShareSnapshot, TeeSink } from "../snapshot.ts";
import { attachWebMonitor, WEB_OPTIONS, WEB_USAGE, type WebMonitor, webSettings } from "./web.ts";
import { RateLimiter } from "../rate_limit.ts";
import { UsageError } from "../errors.ts";
import { checkTrackerTrust, register, TRUST_OPTIONS, TRUST_USAGE } from "./announce.ts";
import { normalizeTrackerUrl } from "../tracker_client.ts";

/** How often a seeder with peers reports its uploads. */
const SEED_PROGRESS_INTERVAL_MS = 1000;

export const seedCommand: Command = {
  name: "seed",
  summary: "serve the verified pieces of a file to downloaders",
  usage: `Usage: p2p-share seed --meta M [--source FILE|DIR] [--tracker HOST:PORT] [options]

Verifies each piece of FILE against M, copies the good ones into DIR/<name>.partial (recorded in
DIR/<name>.state.json), then serves them. Without --source it seeds what DIR already holds, so
the original may be deleted once ingested. Never serves a piece it has not verified.

Options:
  --meta M             metadata file (required)
  --source FILE|DIR    the original file (or folder, for a folder share) to ingest
  --port P             port to listen on (default 5001; 0 picks a free one)
  --host ADDR          address to bind (default 0.0.0.0, all interfaces)
  --workdir DIR        work folder (default ./data)
  --max-connections N  peers connected at once (default 64)
  --upload-slots N     peers uploaded to at once (default 4); the others wait their turn
  --max-upload-rate R  upload limit in bytes/s for all peers together, e.g. 500K, 10M
  --tracker HOST:PORT  announce to this tracker (repeatable; a full http://HOST:PORT/announce
                       URL works too); default: the trackers listed in M
${WEB_USAGE}
${SECURE_USAGE}
${TRUST_USAGE}
  --json               print one JSON event per line
  -h, --help           show this help

Permissions: --allow-net --allow-read=M,FILE,DIR --allow-write=DIR
             (--allow-sys=networkInterfaces lets the hint show this machine's LAN address)`,
  async run(argv, ctx) {
    const args = parseCommandArgs(argv, {
      meta: { type: "string" },
      source: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      workdir: { type: "string" },
      tracker: { type: "string", multiple: true },
      "max-connections": { type: "string" },
      "upload-slots": { type: "string" },
      "max-upload-rate": { type: "string" },
      ...WEB_OPTIONS,
      ...SECURE_OPTIONS,
      ...TRUST_OPTIONS,
    }, "seed");
    expectPositionals(args, 0, "seed");
    const web = webSettings(args, "seed");
    const metaPath = requireString(args, "meta", "seed");
    const meta = await readMetadataFile(metaPath);
    const host = optString(args, "host") ?? "0.0.0.0";
    const port = optPort(args, "port", 5001);
    const workdir = optString(args, "workdir") ?? "./data";
    const uploadSlots = optInteger(args, "upload-slots", { min: 1, max: 100, fallback: 4 });
    const uploadRate = optSize(args, "max-upload-rate");
    if (uploadRate === 0) throw new UsageError("seed: --max-upload-rate must be above 0");
    const maxConnections = optInteger(args, "max-connections", {
      min: 1,
      max: 10_000,
      fallback: 64,
    });
    const source = optString(args, "source");
    const trackerFlags = optStrings(args, "tracker");
    const trackers = trackerFlags.length > 0 ? trackerFlags : meta.trackers;
    trackers.forEach((t) => normalizeTrackerUrl(t)); // a bad address is a usage error, before any work
    const trust = await checkTrackerTrust({
      caFile: optString(args, "tracker-ca"),
      pinSha256: optString(args, "tracker-pin"),
    });

    // Every event goes to the terminal, and to the web page once it is up.
    const sink = new TeeSink(ctx.sink);
    const webStop = new AbortController();
    let monitor: WebMonitor | undefined;
    // Bind first: a port in use is reported before a long ingest, not after.
    const security = await securityFor(args, meta, workdir);
    const listener = await listenPeers(host, port, security, sink);
    const storage = await ShareStorage.open(meta, workdir, { sink, signal: ctx.signal });
    try {
      const total = storage.layout.pieceCount;
      if (source !== undefined) {
        const report = await ingestSource(storage, source, ctx.signal);
        sink.emit({ event: "ingested", pieces: report.verified, piecesTotal: total, source });
        if (report.badPieces.length > 0) {
          sink.emit({
            event: "warning",
            message:
              `${report.badPieces.length} pieces of ${source} failed verification and will not be served: ${
                report.badPieces.slice(0, 20).join(", ")
              }${report.badPieces.length > 20 ? ", ..." : ""}`,
          });
        }
        if (report.badFiles.length > 0) {
          sink.emit({
            event: "warning",
            message: `${report.badFiles.length} files of ${source} differ from the metadata: ${
              report.badFiles.slice(0, 10).join(", ")
            }${report.badFiles.length > 10 ? ", ..." : ""}`,
          });
        }
      } else {
        sink.emit({
          event: "ingested",
          pieces: storage.have.count,
          piecesTotal: total,
          source: storage.dataPath,
        });
      }
      if (total > 0 && storage.have.count === 0) {
        throw new Error(
          `nothing to seed: no verified pieces of ${meta.info.name} in ${workdir} (give --source FILE)`,
        );
      }
      const addr = listener.addr;
      const shown = reachableAddress(addr.hostname);
      sink.emit({ event: "listening", host: addr.hostname, port: addr.port, service: "peer" });
      sink.emit({
        event: "serving",
        name: meta.info.name,
        pieces: total,
        host: shown,
        port: addr.port,
        hint: trackers.length > 0
          ? `deno task download --meta ${metaPath} --tracker ${trackers[0]}`
          : `deno task download --meta ${metaPath} --host ${shown} --port ${addr.port}${
            security && !security.private ? " --encrypt" : ""
          }`,
      });
      const peerId = newPeerId();
      const server = new PeerServer(storage, {
        peerId,
        sink,
        maxConnections,
        uploadSlots,
        uploadLimiter: uploadRate ? new RateLimiter(uploadRate, performance.now()) : undefined,
        secure: security ? { key: security.key, private: security.private } : undefined,
      });
      const states = new Uint8Array(total);
      const snapshot = (): ShareSnapshot => {
        for (let i = 0; i < total; i++) {
          states[i] = storage.have.has(i) ? PieceState.VERIFIED : PieceState.MISSING;
        }
        return {
          role: "seed",
          name: meta.info.name,
          infoHash: meta.infoHash,
          bytesTotal: meta.info.length,
          pieceLength: meta.info.pieceLength,
          piecesTotal: total,
          piecesDone: storage.have.count,
          bytesDone: storage.bytesHave,
          pieceStates: states,
          downloadRateBytesPerSec: 0,
          uploadRateBytesPerSec: Math.round(server.uploadRate()),
          bytesDownloaded: 0,
          bytesUploaded: server.bytesUploaded,
          etaSeconds: null,
          peers: server.peerSnapshots(),
          complete: storage.have.complete,
        };
      };
      monitor = await attachWebMonitor(web, {
        source: { snapshot },
        signal: AbortSignal.any([ctx.signal, webStop.signal]),
        sink: ctx.sink,
        tee: sink,
      });
      const progress = setInterval(() => {
        if (server.stats().peers === 0 && server.uploadRate() === 0) return;
        sink.emit({
          event: "progress",
          piecesDone: storage.have.count,
          piecesTotal: total,
          bytesDone: storage.bytesHave,
          bytesTotal: meta.info.length,
          rateBytesPerSec: 0,
          etaSeconds: null,
          peers: server.peerIds().length,
          uploadRateBytesPerSec: Math.round(server.uploadRate()),
          bytesDownloaded: 0,
          bytesUploaded: server.bytesUploaded,
        });
      }, SEED_PROGRESS_INTERVAL_MS);
      const registration = register({
        trust,
        urls: trackers,
        sink,
        signal: ctx.signal,
        storage,
        peerId,
        port: addr.port,
        counters: () => ({ uploaded: server.bytesUploaded, downloaded: 0 }),
      });
      try {
        await listener.serve(server, ctx.signal);
      } finally {
        clearInterval(progress);
        await registration.stop(); // goodbye to the tracker on Ctrl-C / SIGTERM
      }
      sink.emit({ event: "info", message: `stopped; uploaded ${server.bytesUploaded} bytes` });
      return 0;
    } catch (err) {
      if (ctx.signal.aborted) return 0;
      throw new Error(errorMessage(err), { cause: err });
    } finally {
      listener.close();
      await storage.close();
      webStop.abort();
      await monitor?.finished;
    }
  },
};
