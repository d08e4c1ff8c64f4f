/**
 * @module cli/verify_cmd
 * The `verify` subcommand: check a file against its metadata, piece by piece.
 */

import { Bitfield } from "../bitfield.ts";
import { UsageError } from "../errors.ts";
import { hashPieces, openFile } from "../file_io.ts";
import { digestsEqual } from "../hash.ts";
import { readMetadataFile } from "../meta_file.ts";
import { PieceLayout } from "../pieces.ts";
import { fromHex } from "../units.ts";
import { expectPositionals, parseCommandArgs, requireString } from "./args.ts";
import type { Command } from "./context.ts";

export const verifyCommand: Command = {
  name: "verify",
  summary: "check that a file matches its metadata (exit 0) or list its bad pieces (exit 1)",
  usage: `Usage: p2p-share verify --meta M FILE [--json]

Hashes every piece of FILE and compares it with the metadata M. Exits 0 when all match,
1 with the bad pieces listed otherwise.

Permissions: --allow-read=M,FILE`,
  async run(argv, ctx) {
    const args = parseCommandArgs(argv, { meta: { type: "string" } }, "verify");
    expectPositionals(args, 1, "verify");
    const meta = await readMetadataFile(requireString(args, "meta", "verify"));
    const file = args.positionals[0];
    if (!file) throw new UsageError("verify: FILE is required (see 'verify --help')");
    const layout = new PieceLayout(meta.info.length, meta.info.pieceLength);
    const good = new Bitfield(layout.pieceCount);
    const bad: number[] = [];
    const handle = await openFile(file, "r");
    try {
      const size = (await handle.stat()).size;
      const readable: number[] = [];
      for (let i = 0; i < layout.pieceCount; i++) {
        const span = layout.span(i);
        if (span.offset + span.length <= size) readable.push(i);
        else bad.push(i);
      }
      for await (
        const piece of hashPieces(handle, layout, { indexes: readable, signal: ctx.signal })
      ) {
        if (digestsEqual(piece.digest, fromHex(meta.info.pieces[piece.index]))) {
          good.set(piece.index);
        } else bad.push(piece.index);
      }
      if (size !== meta.info.length && bad.length === 0 && layout.pieceCount > 0) {
        bad.push(layout.pieceCount - 1); // extra bytes past the end: the file does not match
      }
      bad.sort((a, b) => a - b);
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
  },
};
