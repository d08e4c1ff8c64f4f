/**
 * @module cli/create_cmd
 * The `create` subcommand: hash a file (or every file under a folder) into pieces and write
 * its `.p2pmeta`.
 */

import { createMetadata } from "../create.ts";
import { UsageError } from "../errors.ts";
import { writeMetadataFile } from "../meta_file.ts";
import { basename, join, normalize } from "node:path";
import { MAX_COMMENT_CHARS, MAX_TRACKERS, type Metadata } from "../metadata.ts";
import {
  expectPositionals,
  optFlag,
  optSize,
  optString,
  optStrings,
  parseCommandArgs,
} from "./args.ts";
import type { Command } from "./context.ts";

export const createCommand: Command = {
  name: "create",
  summary: "cut a file or folder into pieces and write its .p2pmeta metadata",
  usage: `Usage: p2p-share create FILE|DIR [options]

Hashes FILE piece by piece (SHA-256) and writes FILE.p2pmeta, then prints its path and info hash.
Given a folder DIR, describes every file under it (empty files and empty folders included, in a
fixed order so the same folder gives the same info hash everywhere) and writes DIR.p2pmeta.
Symbolic links, devices, sockets and FIFOs under DIR are skipped with a warning.

Options:
  --piece-size SIZE   piece length, a power of two such as 256K or 4M
                      (default: automatic, 16K..16M aiming at about 2000 pieces)
  --tracker URL       tracker to list in the metadata (repeatable), e.g. 192.168.1.20:7000
  --comment TEXT      free text stored outside the hashed info
  --private           a private share: peers always encrypt and only holders of this metadata
                      can connect at all; keep the .p2pmeta secret (it is written owner-only)
  --follow-symlinks   folder: include what symbolic links point to (a loop is refused)
  -o, --output OUT    where to write the metadata (default: FILE.p2pmeta or DIR.p2pmeta)
  --json              print one JSON event per line
  -h, --help          show this help

Permissions: --allow-read=FILE --allow-write=<folder of OUT> (a folder: --allow-read=DIR; with
--follow-symlinks, also what the links point to)`,
  async run(argv, ctx) {
    const args = parseCommandArgs(argv, {
      "piece-size": { type: "string" },
      private: { type: "boolean" },
      tracker: { type: "string", multiple: true },
      comment: { type: "string" },
      output: { type: "string", short: "o" },
      "follow-symlinks": { type: "boolean" },
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
      followSymlinks: optFlag(args, "follow-symlinks"),
      sink: ctx.sink,
      private: optFlag(args, "private"),
    });
    const out = optString(args, "output") ?? defaultOutput(file, meta);
    await writeMetadataFile(out, meta);
    ctx.sink.emit({
      event: "created",
      path: out,
      infoHash: meta.infoHash,
      name: meta.info.name,
      bytes: meta.info.length,
      pieces: meta.info.pieces.length,
      pieceLength: meta.info.pieceLength,
      directory: meta.info.files !== undefined,
      files: meta.info.files?.filter((f) => !f.dir).length ?? 1,
    });
    return 0;
  },
};

/**
 * `FILE.p2pmeta`; for a folder, `<name>.p2pmeta` beside it, never inside it (`photos/` gives
 * `photos.p2pmeta`, `.` gives `../<name>.p2pmeta`), where a later `create` would pick it up.
 */
function defaultOutput(file: string, meta: Metadata): string {
  if (meta.info.files === undefined) return `${file}.p2pmeta`;
  const folder = normalize(file).replace(/(.)[/\\]+$/, "$1");
  const base = basename(folder);
  if (base === "." || base === "..") return join(folder, "..", `${meta.info.name}.p2pmeta`);
  return `${folder}.p2pmeta`;
}
