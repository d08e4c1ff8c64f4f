/**
 * @module cli/info_cmd
 * The `info` subcommand: a summary of a `.p2pmeta` file.
 */

import { UsageError } from "../errors.ts";
import { readMetadataFile } from "../meta_file.ts";
import { isDirectoryShare, shareEntries } from "../metadata.ts";
import { expectPositionals, parseCommandArgs } from "./args.ts";
import type { Command } from "./context.ts";

export const infoCommand: Command = {
  name: "info",
  summary: "show what a .p2pmeta file describes",
  usage: `Usage: p2p-share info M [--json]

Prints the name, size, piece layout, info hash, trackers and comment of metadata file M, and
for a folder every file with its size. With --json: one "share" event holding the same fields.

Permissions: --allow-read=M`,
  async run(argv, ctx) {
    const args = parseCommandArgs(argv, {}, "info");
    expectPositionals(args, 1, "info");
    const path = args.positionals[0];
    if (!path) throw new UsageError("info: metadata file M is required (see 'info --help')");
    const meta = await readMetadataFile(path);
    ctx.sink.emit({
      event: "share",
      path,
      name: meta.info.name,
      bytes: meta.info.length,
      pieceLength: meta.info.pieceLength,
      pieces: meta.info.pieces.length,
      infoHash: meta.infoHash,
      trackers: meta.trackers,
      comment: meta.comment ?? null,
      createdBy: meta.createdBy ?? null,
      creationDate: meta.creationDate ?? null,
      directory: isDirectoryShare(meta.info),
      files: shareEntries(meta.info).map((f) => ({
        path: f.path.join("/"),
        bytes: f.length,
        dir: f.dir === true,
      })),
    });
    return 0;
  },
};
