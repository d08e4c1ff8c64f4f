/**
 * @module cli/download_cmd
 * The `download` subcommand: fetch, verify and assemble a share, resuming what is there; with a
 * tracker it finds its peers there and serves what it holds to them while it downloads.
 */

import { DownloadSession } from "../downloader.ts";
import { UsageError } from "../errors.ts";
import { readMetadataFile } from "../meta_file.ts";
import { newPeerId } from "../peer_conn.ts";
import { PeerServer } from "../peer_server.ts";
import { ShareStorage } from "../storage.ts";
import { normalizeTrackerUrl } from "../tracker_client.ts";
import { register, type Registration } from "./announce.ts";
import {
  expectPositionals,
  optDuration,
  optInteger,
  optPort,
  optString,
  optStrings,
  parseCommandArgs,
} from "./args.ts";
import type { Command } from "./context.ts";
import { listenTcp } from "./listen.ts";

/** Most connections `--parallel` may ask for. */
const MAX_PARALLEL = 64;
/** How long a tracker-driven download waits for a useful peer before it gives up. */
const DEFAULT_WAIT_FOR_PEERS_MS = 5 * 60_000;

export const downloadCommand: Command = {
  name: "download",
  summary: "fetch a share from peers, verifying every piece; resumes after any interruption",
  usage: `Usage: p2p-share download --meta M (--host H [--port P] | --tracker HOST:PORT) [options]

Fetches the pieces of M over N connections, verifies each (SHA-256) before it counts, writes it
in place into DIR/<name>.partial and records it in DIR/<name>.state.json. When all pieces are
in, the file becomes DIR/<name>. Run again after any interruption: only missing pieces are
fetched. An already complete file is verified, not fetched again.

With a tracker (--tracker, or trackers listed in M when no --host is given) the downloader asks
it for peers, and also listens so other peers can fetch the pieces it already has.

Options:
  --meta M                metadata file (required)
  --host H                a peer's address (e.g. the seeder's)
  --port P                that peer's port (default 5001)
  --tracker HOST:PORT     find peers through this tracker (repeatable; http://HOST:PORT/announce
                          works too)
  --workdir DIR           work folder (default ./downloads)
  --parallel N            connections (default 4; 1 = sequential)
  --listen-host ADDR      address to serve pieces on when using a tracker (default 0.0.0.0)
  --listen-port P         port for that (default 0: any free port)
  --wait-for-peers DUR    with a tracker: how long to wait for a useful peer before giving up
                          (default 5m; e.g. 90s, 10m)
  --json                  print one JSON event per line
  -h, --help              show this help

Exit codes: 0 complete, 1 failure (what was verified is kept), 2 usage.
Permissions: --allow-net=H (with a tracker: the tracker and the listen address)
             --allow-read=M,DIR --allow-write=DIR`,
  async run(argv, ctx) {
    const args = parseCommandArgs(argv, {
      meta: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      workdir: { type: "string" },
      parallel: { type: "string" },
      tracker: { type: "string", multiple: true },
      "listen-host": { type: "string" },
      "listen-port": { type: "string" },
      "wait-for-peers": { type: "string" },
    }, "download");
    expectPositionals(args, 0, "download");
    const metaPath = optString(args, "meta");
    if (!metaPath) throw new UsageError("download: --meta is required (see 'download --help')");
    const host = optString(args, "host");
    const port = optPort(args, "port", 5001);
    if (port === 0) throw new UsageError("download: --port must be from 1 to 65535");
    const parallel = optInteger(args, "parallel", { min: 1, max: MAX_PARALLEL, fallback: 4 });
    const workdir = optString(args, "workdir") ?? "./downloads";
    const listenHost = optString(args, "listen-host") ?? "0.0.0.0";
    const listenPort = optPort(args, "listen-port", 0);
    const waitMs = optDuration(args, "wait-for-peers") ?? DEFAULT_WAIT_FOR_PEERS_MS;
    const meta = await readMetadataFile(metaPath);
    const trackerFlags = optStrings(args, "tracker");
    const trackers = trackerFlags.length > 0 ? trackerFlags : host ? [] : meta.trackers;
    trackers.forEach((t) => normalizeTrackerUrl(t));
    if (!host && trackers.length === 0) {
      throw new UsageError(
        "download: give --host H [--port P], or --tracker HOST:PORT (this metadata lists no tracker)",
      );
    }

    const storage = await ShareStorage.open(meta, workdir, { sink: ctx.sink, signal: ctx.signal });
    let registration: Registration | undefined;
    let server: PeerServer | undefined;
    const serving = new AbortController();
    let serveTask: Promise<void> | undefined;
    try {
      if (storage.have.complete) {
        const path = await storage.finalize();
        ctx.sink.emit({
          event: "info",
          message: `${path} is already complete and verified; nothing to fetch`,
        });
        ctx.sink.emit({
          event: "complete",
          path,
          bytes: meta.info.length,
          piecesFetched: 0,
          bytesFetched: 0,
          piecesTotal: storage.layout.pieceCount,
          seconds: 0,
        });
        return 0;
      }
      const peerId = newPeerId();
      const session = new DownloadSession(storage, {
        peers: host ? [{ hostname: host, port }] : [],
        connections: parallel,
        sink: ctx.sink,
        signal: ctx.signal,
        peerId,
        waitForPeersMs: trackers.length > 0 ? waitMs : 0,
        onPieceStored: (index) => server?.announceHave(index),
      });
      if (trackers.length > 0) {
        // Serve what we hold while downloading, so downloaders help each other.
        const listener = listenTcp(listenHost, listenPort);
        const listenAddr = listener.addr as Deno.NetAddr;
        ctx.sink.emit({
          event: "listening",
          host: listenAddr.hostname,
          port: listenAddr.port,
          service: "peer",
        });
        server = new PeerServer(storage, { peerId, sink: ctx.sink });
        serveTask = server.serve(listener, AbortSignal.any([ctx.signal, serving.signal]));
        const uploads = server;
        registration = register({
          urls: trackers,
          sink: ctx.sink,
          signal: ctx.signal,
          storage,
          peerId,
          port: listenAddr.port,
          counters: () => ({ uploaded: uploads.bytesUploaded, downloaded: session.meter.total }),
          onPeers: (peers) =>
            session.addPeers(peers.map((p) => ({ hostname: p.host, port: p.port }))),
        });
      }
      const result = await session.run();
      await registration?.completed();
      ctx.sink.emit({ event: "complete", ...result });
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
    }
  },
};
