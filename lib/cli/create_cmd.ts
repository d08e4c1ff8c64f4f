/**
 * @module cli/create_cmd
 * The `create` subcommand: hash a file into pieces and write its `.p2pmeta`.
 */

import { createMetadata } from "../create.ts";
import { UsageError } from "../errors.ts";
import { writeMetadataFile } from "../meta_file.ts";
import { MAX_COMMENT_CHARS, MAX_TRACKERS } from "../metadata.ts";
import { expectPositionals, optSize, optString, optStrings, parseCommandArgs } from "./args.ts";
import type { Command } from "./context.ts";

export const createCommand: Command = {
  name: "create",
  summary: "cut a file into pieces and write its .p2pmeta metadata",
  usage: `Usage: p2p-share create FILE [options]

Hashes FILE piece by piece (SHA-256) and writes FILE.p2pmeta, then prints its path and info hash.

Options:
  --piece-size SIZE   piece length, a power of two such as 256K or 4M
                      (default: automatic, 16K..16M aiming at about 2000 pieces)
  --tracker URL       tracker to list in the metadata (repeatable), e.g. 192.168.1.20:7000
  --comment TEXT      free text stored outside the hashed info
  -o, --output OUT    where to write the metadata (default: FILE.p2pmeta)
  --json              print one JSON event per line
  -h, --help          show this help

Permissions: --allow-read=FILE --allow-write=<folder of OUT>`,
  async run(argv, ctx) {
    const args = parseCommandArgs(argv, {
      "piece-size": { type: "string" },
      tracker: { type: "string", multiple: true },
      comment: { type: "string" },
      output: { type: "string", short: "o" },
    }, "create");
    expectPositionals(args, 1, "create");
    const file = args.positionals[0];
    if (!file) throw new UsageError("create: FILE is required (see 'create --help')");
    const trackers = optStrings(args, "tracker");
    if (trackers.length > MAX_TRACKERS) {
      throw new UsageError(`create: at most ${MAX_TRACKERS} trackers`);
    }
    const comment = optString(args, "comment");
    if (comment !== undefined && comment.length > MAX_COMMENT_CHARS) {
      throw new UsageError(`create: --comment longer than ${MAX_COMMENT_CHARS} characters`);
    }
    const meta = await createMetadata(file, {
      pieceLength: optSize(args, "piece-size"),
      trackers,
      comment,
      signal: ctx.signal,
    });
    const out = optString(args, "output") ?? `${file}.p2pmeta`;
    await writeMetadataFile(out, meta);
    ctx.sink.emit({
      event: "created",
      path: out,
      infoHash: meta.infoHash,
      name: meta.info.name,
      bytes: meta.info.length,
      pieces: meta.info.pieces.length,
      pieceLength: meta.info.pieceLength,
    });
    return 0;
  },
};
