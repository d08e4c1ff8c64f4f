/**
 * @module cli/download_cmd
 * The `download` subcommand: fetch, verify and assemble a share, resuming what is there; in a
 * swarm it also serves what it holds to other downloaders, within rate limits, and may seed on
 * after completion.
 */

import { DownloadSession } from "../downloader.ts";
import { UsageError } from "../errors.ts";
import { readMetadataFile } from "../meta_file.ts";
import { parseHostPort } from "../net_addr.ts";
import { newPeerId } from "../peer_conn.ts";
import { PeerServer } from "../peer_server.ts";
import { RateLimiter } from "../rate_limit.ts";
import { type ShareSnapshot, TeeSink } from "../snapshot.ts";
import { ShareStorage } from "../storage.ts";
import { normalizeTrackerUrl } from "../tracker_client.ts";
import {
  checkTrackerTrust,
  register,
  type Registration,
  TRUST_OPTIONS,
  TRUST_USAGE,
} from "./announce.ts";
import {
  expectPositionals,
  optDuration,
  optFlag,
  optInteger,
  optPort,
  optSize,
  optString,
  optStrings,
  parseCommandArgs,
} from "./args.ts";
import type { Command } from "./context.ts";
import {
  listenPeers,
  type PeerListener,
  SECURE_OPTIONS,
  SECURE_USAGE,
  securityFor,
} from "./secure.ts";
import { tlsDialer } from "../tls_transport.ts";
import { attachWebMonitor, WEB_OPTIONS, WEB_USAGE, type WebMonitor, webSettings } from "./web.ts";

/** Most connections `--parallel` may ask for. */
const MAX_PARALLEL = 64;
/** How long a tracker-driven download waits for a useful peer before it gives up. */
const DEFAULT_WAIT_FOR_PEERS_MS = 5 * 60_000;
/** Peers downloaded from at once, by default. */
const DEFAULT_MAX_PEERS = 30;

export const downloadCommand: Command = {
  name: "download",
  summary: "fetch a share from peers, verifying every piece; resumes after any interruption",
  usage: `Usage: p2p-share download --meta M (--host H [--port P] | --peer HOST:PORT... |
                                     --tracker HOST:PORT) [options]

Fetches the pieces of M from one or many peers at once, verifies each (SHA-256) before it
counts, writes it in place into DIR/<name>.partial and records it in DIR/<name>.state.json.
When all pieces are in, the file becomes DIR/<name>. Run again after any interruption: only
missing pieces are fetched. An already complete file is verified, not fetched again.

In a swarm (with a tracker, --peer, or --listen-port) the downloader also listens and serves
every verified piece it holds, so downloaders share with each other.

Peers:
  --meta M                metadata file (required)
  --host H / --port P     one peer, e.g. the seeder (port default 5001)
  --peer HOST:PORT        a peer to fetch from (repeatable; no tracker needed)
  --tracker HOST:PORT     find peers through this tracker (repeatable; default: the trackers in
                          M when no --host/--peer is given)
  --max-peers N           peers fetched from at once (default ${DEFAULT_MAX_PEERS})
  --parallel N            connections in all (default 4; 1 = sequential)
  --wait-for-peers DUR    how long to wait for a useful peer before giving up, when more may
                          still come from a tracker (default 5m; e.g. 90s, 10m)

Serving others:
  --listen-host ADDR      address to serve on (default 0.0.0.0)
  --listen-port P         port to serve on (default: any free port; 0 = any)
  --max-upload-rate R     upload limit in bytes/s, e.g. 500K, 10M (default: none)
  --max-download-rate R   download limit in bytes/s (default: none)
  --upload-slots N        peers uploaded to at once (default 4)
  --keep-seeding          after completion, seed on until Ctrl-C
  --seed-for DUR          after completion, seed on for DUR (e.g. 90s, 10m, 1h)

Folders:
  --only GLOB             fetch only the files matching GLOB (repeatable; * ? and ** work,
                          relative to the shared folder); each file is placed in DIR/<name>/
                          as soon as all its pieces are verified

Output:
  --workdir DIR           work folder (default ./downloads)
${WEB_USAGE}
${SECURE_USAGE}
${TRUST_USAGE}
  --json                  print one JSON event per line
  -h, --help              show this help

Exit codes: 0 complete, 1 failure (what was verified is kept), 2 usage.
Permissions: --allow-net (the peers, the tracker and, in a swarm, the listen address)
             --allow-read=M,DIR --allow-write=DIR`,
  async run(argv, ctx) {
    const args = parseCommandArgs(argv, {
      meta: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      peer: { type: "string", multiple: true },
      workdir: { type: "string" },
      parallel: { type: "string" },
      tracker: { type: "string", multiple: true },
      "max-peers": { type: "string" },
      "listen-host": { type: "string" },
      "listen-port": { type: "string" },
      "wait-for-peers": { type: "string" },
      "max-upload-rate": { type: "string" },
      "max-download-rate": { type: "string" },
      "upload-slots": { type: "string" },
      "keep-seeding": { type: "boolean" },
      "seed-for": { type: "string" },
      only: { type: "string", multiple: true },
      ...WEB_OPTIONS,
      ...SECURE_OPTIONS,
      ...TRUST_OPTIONS,
    }, "download");
    expectPositionals(args, 0, "download");
    const web = webSettings(args, "download");
    const metaPath = optString(args, "meta");
    if (!metaPath) throw new UsageError("download: --meta is required (see 'download --help')");
    const host = optString(args, "host");
    const port = optPort(args, "port", 5001);
    if (port === 0) throw new UsageError("download: --port must be from 1 to 65535");
    const peers = optStrings(args, "peer").map((text) => {
      try {
        return parseHostPort(text);
      } catch (err) {
        throw new UsageError(`download: --peer: ${(err as Error).message}`);
      }
    });
    if (host) peers.unshift({ hostname: host, port });
    const parallel = optInteger(args, "parallel", { min: 1, max: MAX_PARALLEL, fallback: 4 });
    const maxPeers = optInteger(args, "max-peers", {
      min: 1,
      max: 1000,
      fallback: DEFAULT_MAX_PEERS,
    });
    const uploadSlots = optInteger(args, "upload-slots", { min: 1, max: 100, fallback: 4 });
    const workdir = optString(args, "workdir") ?? "./downloads";
    const listenHost = optString(args, "listen-host") ?? "0.0.0.0";
    const listenPortText = optString(args, "listen-port");
    const listenPort = optPort(args, "listen-port", 0);
    const waitMs = optDuration(args, "wait-for-peers") ?? DEFAULT_WAIT_FOR_PEERS_MS;
    const uploadRate = optSize(args, "max-upload-rate");
    const downloadRate = optSize(args, "max-download-rate");
    if (uploadRate === 0 || downloadRate === 0) {
      throw new UsageError("download: a rate limit must be above 0");
    }
    const keepSeeding = optFlag(args, "keep-seeding");
    const seedForMs = optDuration(args, "seed-for");
    if (keepSeeding && seedForMs !== undefined) {
      throw new UsageError("download: give either --keep-seeding or --seed-for, not both");
    }
    const meta = await readMetadataFile(metaPath);
    const trackerFlags = optStrings(args, "tracker");
    const trackers = trackerFlags.length > 0 ? trackerFlags : peers.length > 0 ? [] : meta.trackers;
    trackers.forEach((t) => normalizeTrackerUrl(t));
    const trust = await checkTrackerTrust({
      caFile: optString(args, "tracker-ca"),
      pinSha256: optString(args, "tracker-pin"),
    });
    if (peers.length === 0 && trackers.length === 0) {
      throw new UsageError(
        "download: give --host H [--port P], --peer HOST:PORT or --tracker HOST:PORT (this metadata lists no tracker)",
      );
    }
    // Serve others when they can find us: through a tracker, or on a port the user chose.
    const serveOthers = trackers.length > 0 || listenPortText !== undefined ||
      optString(args, "listen-host") !== undefined || keepSeeding || seedForMs !== undefined;

    // Every event goes to the terminal, and to the web page once it is up.
    const sink = new TeeSink(ctx.sink);
    const webStop = new AbortController();
    let monitor: WebMonitor | undefined;
    const only = optStrings(args, "only");
    const storage = await ShareStorage.open(meta, workdir, {
      sink,
      signal: ctx.signal,
      only: only.length > 0 ? only : undefined,
      placeFiles: true,
    });
    let registration: Registration | undefined;
    let server: PeerServer | undefined;
    const serving = new AbortController();
    let serveTask: Promise<void> | undefined;
    try {
      const peerId = newPeerId();
      const now = performance.now();
      const security = await securityFor(args, meta, workdir);
      let listener: PeerListener | undefined;
      if (serveOthers) {
        listener = await listenPeers(listenHost, listenPort, security, sink);
        const addr = listener.addr;
        sink.emit({
          event: "listening",
          host: addr.hostname,
          port: addr.port,
          service: "peer",
        });
      }
      const listenAddr = listener?.addr;
      const session: DownloadSession = new DownloadSession(storage, {
        peers,
        connections: parallel,
        maxPeers,
        sink,
        signal: ctx.signal,
        peerId,
        waitForPeersMs: trackers.length > 0 ? waitMs : 0,
        listenPort: listenAddr?.port,
        dialer: security ? tlsDialer(security.identity) : undefined,
        secure: security ? { key: security.key } : undefined,
        downloadLimiter: downloadRate ? new RateLimiter(downloadRate, now) : undefined,
        onPieceStored: (index) => server?.announceHave(index),
        onPeerBanned: (id) => server?.dropPeer(id, "sent data that failed verification"),
        uploads: {
          get bytesUploaded() {
            return server?.bytesUploaded ?? 0;
          },
          uploadRate: () => server?.uploadRate() ?? 0,
          peerIds: () => server?.peerIds() ?? [],
        },
      });
      if (listener && listenAddr) {
        server = new PeerServer(storage, {
          peerId,
          sink,
          uploadSlots,
          uploadLimiter: uploadRate ? new RateLimiter(uploadRate, now) : undefined,
          isBanned: (id) => session.bannedIds.has(id),
          rateFromPeer: (id) => session.rateFromPeer(id),
          onPeerListening: (peer) => session.addPeers([peer]),
          secure: security ? { key: security.key, private: security.private } : undefined,
        });
        serveTask = listener.serve(server, AbortSignal.any([ctx.signal, serving.signal]));
        registration = register({
          trust,
          urls: trackers,
          storage,
          peerId,
          port: listenAddr.port,
          counters: () => ({
            uploaded: server?.bytesUploaded ?? 0,
            downloaded: session.meter.total,
          }),
          sink,
          signal: ctx.signal,
          onPeers: (found) =>
            session.addPeers(found.map((p) => ({ hostname: p.host, port: p.port }))),
        });
      }
      const snapshot = (): ShareSnapshot => shareSnapshot(session, server);
      monitor = await attachWebMonitor(web, {
        source: { snapshot },
        signal: AbortSignal.any([ctx.signal, webStop.signal]),
        sink: ctx.sink,
        tee: sink,
      });

      let result;
      if (storage.wantedComplete) {
        const path = await storage.finalize();
        sink.emit({
          event: "info",
          message: `${path} is already complete and verified; nothing to fetch`,
        });
        result = {
          path,
          bytes: storage.bytesSelected,
          bytesFetched: 0,
          piecesFetched: 0,
          piecesTotal: storage.layout.pieceCount,
          seconds: 0,
        };
      } else {
        result = await session.run();
      }
      await registration?.completed();
      sink.emit({
        event: "complete",
        ...result,
        bytesDownloaded: session.meter.total,
        bytesUploaded: server?.bytesUploaded ?? 0,
      });
      if (server && (keepSeeding || seedForMs !== undefined)) {
        sink.emit({
          event: "info",
          message: keepSeeding
            ? "seeding on until Ctrl-C"
            : `seeding on for ${Math.round((seedForMs ?? 0) / 1000)}s`,
        });
        await seedOn(ctx.signal, keepSeeding ? undefined : seedForMs);
        sink.emit({
          event: "info",
          message: `stopped seeding; uploaded ${server.bytesUploaded} bytes in all`,
        });
      }
      return 0;
    } catch (err) {
      if (ctx.signal.aborted) {
        throw new Error(
          `interrupted; ${storage.have.count}/${storage.layout.pieceCount} pieces verified (run again to resume)`,
        );
      }
      throw err;
    } finally {
      await registration?.stop();
      serving.abort();
      await serveTask;
      await storage.close();
      // Last: the page gets the final state and "bye" before the program exits.
      webStop.abort();
      await monitor?.finished;
    }
  },
};

/** Waits until `signal` aborts, or `durationMs` passed when given. */
function seedOn(signal: AbortSignal, durationMs?: number): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = durationMs === undefined ? undefined : setTimeout(done, durationMs);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The share as a display sees it: both directions of every peer merged. */
function shareSnapshot(session: DownloadSession, server: PeerServer | undefined): ShareSnapshot {
  const storage = session.storage;
  const now = performance.now();
  const downloadRate = session.meter.rate(now);
  const bytesDone = storage.bytesHave;
  const peers = [...session.peerSnapshots(), ...(server?.peerSnapshots() ?? [])];
  return {
    role: "download",
    name: storage.meta.info.name,
    infoHash: storage.meta.infoHash,
    bytesTotal: storage.meta.info.length,
    pieceLength: storage.meta.info.pieceLength,
    piecesTotal: storage.layout.pieceCount,
    piecesDone: storage.have.count,
    bytesDone,
    pieceStates: session.pieceStates(),
    downloadRateBytesPerSec: Math.round(downloadRate),
    uploadRateBytesPerSec: Math.round(server?.uploadRate() ?? 0),
    bytesDownloaded: session.meter.total,
    bytesUploaded: server?.bytesUploaded ?? 0,
    etaSeconds: downloadRate > 0
      ? Math.round((storage.meta.info.length - bytesDone) / downloadRate)
      : null,
    peers,
    complete: storage.wantedComplete,
  };
}
