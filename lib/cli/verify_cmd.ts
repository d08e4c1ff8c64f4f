/**
 * @module cli/verify_cmd
 * The `verify` subcommand: check a file (or, for a directory share, a folder) against its
 * metadata, piece by piece.
 */

import { join } from "node:path";
import { Bitfield } from "../bitfield.ts";
import { UsageError } from "../errors.ts";
import { hashPieces, openFile, type ReadAt, readFully } from "../file_io.ts";
import { digestsEqual } from "../hash.ts";
import { readMetadataFile } from "../meta_file.ts";
import { isDirectoryShare, type Metadata } from "../metadata.ts";
import { FileLayout, PieceLayout } from "../pieces.ts";
import { TreeReader } from "../tree_io.ts";
import { fromHex } from "../units.ts";
import { expectPositionals, parseCommandArgs, requireString } from "./args.ts";
import type { Command, CommandContext } from "./context.ts";

export const verifyCommand: Command = {
  name: "verify",
  summary: "check that a file or folder matches its metadata (exit 0) or list what is bad (exit 1)",
  usage: `Usage: p2p-share verify --meta M FILE|DIR [--json]

Hashes every piece of FILE and compares it with the metadata M. Exits 0 when all match,
1 with the bad pieces listed otherwise. For a folder share give the folder holding its files
(e.g. downloads/<name>): every file must be there with the right size and content, and every
empty folder too; the bad files are listed. Files that M does not list are ignored.

Permissions: --allow-read=M,FILE (or M,DIR)`,
  async run(argv, ctx) {
    const args = parseCommandArgs(argv, { meta: { type: "string" } }, "verify");
    expectPositionals(args, 1, "verify");
    const meta = await readMetadataFile(requireString(args, "meta", "verify"));
    const target = args.positionals[0];
    if (!target) throw new UsageError("verify: FILE is required (see 'verify --help')");
    return isDirectoryShare(meta.info)
      ? await verifyFolder(meta, target, ctx)
      : await verifyFile(meta, target, ctx);
  },
};

/** Hashes the `indexes` pieces read through `read`, returning the good ones and the bad ones. */
async function checkPieces(
  meta: Metadata,
  layout: PieceLayout,
  read: ReadAt,
  readable: (index: number) => boolean,
  signal: AbortSignal,
): Promise<{ good: Bitfield; bad: number[] }> {
  const good = new Bitfield(layout.pieceCount);
  const bad: number[] = [];
  const indexes: number[] = [];
  for (let i = 0; i < layout.pieceCount; i++) {
    if (readable(i)) indexes.push(i);
    else bad.push(i);
  }
  for await (const piece of hashPieces(read, layout, { indexes, signal })) {
    if (digestsEqual(piece.digest, fromHex(meta.info.pieces[piece.index]))) good.set(piece.index);
    else bad.push(piece.index);
  }
  return { good, bad: bad.sort((a, b) => a - b) };
}

async function verifyFile(meta: Metadata, file: string, ctx: CommandContext): Promise<number> {
  const layout = new PieceLayout(meta.info.length, meta.info.pieceLength);
  const handle = await openFile(file, "r");
  try {
    const size = (await handle.stat()).size;
    const { good, bad } = await checkPieces(
      meta,
      layout,
      (buf, position) => readFully(handle, buf, position),
      (i) => {
        const span = layout.span(i);
        return span.offset + span.length <= size;
      },
      ctx.signal,
    );
    if (size !== meta.info.length && bad.length === 0 && layout.pieceCount > 0) {
      bad.push(layout.pieceCount - 1); // extra bytes past the end: the file does not match
    }
    const ok = bad.length === 0 && size === meta.info.length;
    ctx.sink.emit({
      event: "verified",
      path: file,
      ok,
      piecesGood: good.count,
      piecesTotal: layout.pieceCount,
      badPieces: bad,
    });
    if (!ok && bad.length === 0) {
      ctx.sink.emit({
        event: "warning",
        message: `${file} is ${size} bytes, expected ${meta.info.length}`,
      });
    }
    return ok ? 0 : 1;
  } finally {
    await handle.close();
  }
}

async function verifyFolder(meta: Metadata, dir: string, ctx: CommandContext): Promise<number> {
  const info = await Deno.stat(dir);
  if (!info.isDirectory) {
    throw new Error(`${dir} is not a folder, but ${meta.info.name} is a shared folder`);
  }
  const layout = new FileLayout(meta.info.files ?? [], meta.info.pieceLength);
  const reader = await TreeReader.open(layout, layout.files.map((f) => join(dir, ...f.path)));
  try {
    const { good, bad } = await checkPieces(
      meta,
      layout.pieces,
      reader.read,
      (i) => reader.pieceReadable(i),
      ctx.signal,
    );
    const badSet = new Set(bad);
    const badFiles = layout.files.filter((f) => {
      if (!reader.entryMatches(f.index)) return true;
      const range = layout.piecesOfFile(f.index);
      if (!range) return false;
      for (let i = range.first; i <= range.last; i++) if (badSet.has(i)) return true;
      return false;
    }).map((f) => f.path.join("/"));
    const ok = bad.length === 0 && badFiles.length === 0;
    ctx.sink.emit({
      event: "verified",
      path: dir,
      ok,
      piecesGood: good.count,
      piecesTotal: layout.pieces.pieceCount,
      badPieces: bad,
      badFiles,
    });
    return ok ? 0 : 1;
  } finally {
    await reader.close();
  }
}
