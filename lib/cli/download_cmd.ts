/**
 * @module cli/download_cmd
 * The `download` subcommand: fetch, verify and assemble a share, resuming what is there.
 */

import { runDownload } from "../downloader.ts";
import { UsageError } from "../errors.ts";
import { readMetadataFile } from "../meta_file.ts";
import { ShareStorage } from "../storage.ts";
import { expectPositionals, optInteger, optPort, optString, parseCommandArgs } from "./args.ts";
import type { Command } from "./context.ts";

/** Most connections `--parallel` may ask for. */
const MAX_PARALLEL = 64;

export const downloadCommand: Command = {
  name: "download",
  summary: "fetch a share from a peer, verifying every piece; resumes after any interruption",
  usage: `Usage: p2p-share download --meta M --host H [options]

Fetches the pieces of M over N connections, verifies each (SHA-256) before it counts, writes it
in place into DIR/<name>.partial and records it in DIR/<name>.state.json. When all pieces are
in, the file becomes DIR/<name>. Run again after any interruption: only missing pieces are
fetched. An already complete file is verified, not fetched again.

Options:
  --meta M         metadata file (required)
  --host H         the seeder's address (required)
  --port P         the seeder's port (default 5001)
  --workdir DIR    work folder (default ./downloads)
  --parallel N     connections (default 4; 1 = sequential)
  --json           print one JSON event per line
  -h, --help       show this help

Exit codes: 0 complete, 1 failure (what was verified is kept), 2 usage.
Permissions: --allow-net=H --allow-read=M,DIR --allow-write=DIR`,
  async run(argv, ctx) {
    const args = parseCommandArgs(argv, {
      meta: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      workdir: { type: "string" },
      parallel: { type: "string" },
      tracker: { type: "string", multiple: true },
    }, "download");
    expectPositionals(args, 0, "download");
    const metaPath = optString(args, "meta");
    if (!metaPath) throw new UsageError("download: --meta is required (see 'download --help')");
    const host = optString(args, "host");
    const port = optPort(args, "port", 5001);
    if (port === 0) throw new UsageError("download: --port must be from 1 to 65535");
    const parallel = optInteger(args, "parallel", { min: 1, max: MAX_PARALLEL, fallback: 4 });
    const workdir = optString(args, "workdir") ?? "./downloads";
    const meta = await readMetadataFile(metaPath);
    if (!host) throw new UsageError("download: --host is required (see 'download --help')");

    const storage = await ShareStorage.open(meta, workdir, { sink: ctx.sink, signal: ctx.signal });
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
          piecesTotal: storage.layout.pieceCount,
          seconds: 0,
        });
        return 0;
      }
      const result = await runDownload(storage, {
        peers: [{ hostname: host, port }],
        connections: parallel,
        sink: ctx.sink,
        signal: ctx.signal,
      });
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
      await storage.close();
    }
  },
};
