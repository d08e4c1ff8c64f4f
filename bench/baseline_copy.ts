/**
 * The in-run baseline the benchmark compares against: the least work a verified transfer can
 * do in Deno. `recv PORTFILE OUT PIECE` listens on 127.0.0.1:0 (writing the port to PORTFILE),
 * receives one stream, hashes every piece with SHA-256 and writes it; `send PORT FILE` streams
 * FILE in 1 MiB writes. No protocol, no state, no retries.
 *
 * @module
 */

import { open } from "node:fs/promises";

const [mode, ...rest] = Deno.args;
if (mode === "send") {
  const [port, file] = rest;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  const handle = await open(file, "r");
  const buf = new Uint8Array(1024 * 1024);
  for (let pos = 0;;) {
    const { bytesRead } = await handle.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break;
    pos += bytesRead;
    let done = 0;
    while (done < bytesRead) done += await conn.write(buf.subarray(done, bytesRead));
  }
  await handle.close();
  conn.close();
} else if (mode === "recv") {
  const [portFile, out, pieceText] = rest;
  const pieceLength = Number(pieceText);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await Deno.writeTextFile(portFile, String((listener.addr as Deno.NetAddr).port));
  const conn = await listener.accept();
  const handle = await open(out, "w");
  let piece = new Uint8Array(pieceLength);
  let filled = 0;
  let offset = 0;
  const pending: Promise<unknown>[] = [];
  const flush = (data: Uint8Array, at: number) => {
    pending.push(
      crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>),
      handle.write(data, 0, data.length, at),
    );
    if (pending.length > 8) return Promise.all(pending.splice(0));
  };
  for await (const chunk of conn.readable) {
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(chunk.length - at, pieceLength - filled);
      piece.set(chunk.subarray(at, at + take), filled);
      filled += take;
      at += take;
      if (filled === pieceLength) {
        await flush(piece, offset);
        offset += pieceLength;
        piece = new Uint8Array(pieceLength);
        filled = 0;
      }
    }
  }
  if (filled > 0) await flush(piece.subarray(0, filled), offset);
  await Promise.all(pending);
  await handle.close();
  listener.close();
}
