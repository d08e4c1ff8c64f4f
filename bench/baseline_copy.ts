/**
 * @module baseline_copy
 * The in-run baseline the benchmark holds downloads to: the least work a verified transfer can
 * do in Deno, written as plainly and as fast as a simple program can be. No protocol, no state
 * file, no retries, one connection.
 *
 * - `send FILE`: listens on 127.0.0.1:0, prints `{"port":N}` on stdout, accepts one connection
 *   and streams FILE over it in 1 MiB reads and writes, then exits. It plays the seeder, so the
 *   benchmark starts it before the clock.
 * - `recv PORT OUT META [MODE]`: plays the downloader, and is what the benchmark times from
 *   spawn to exit. It connects, reads straight into piece-sized buffers (no intermediate copy),
 *   hashes every piece with SHA-256, checks it against the `.p2pmeta` piece list (exit 1 on a
 *   mismatch) and writes it to OUT, in order. A ring of 4 piece buffers lets the next pieces
 *   arrive while earlier ones are written. MODE `node` (the default) hashes with `node:crypto`
 *   on the JS thread; `subtle` hashes with Web Crypto off it. On the 2-core machine we measure
 *   on, `node` was the faster (about 1.05-1.5 s against 1.15-2.9 s for 1 GiB, with the kernel
 *   receiving into the socket buffer while the JS thread hashes); both are kept so the choice
 *   can be rechecked. MODE `sync` hashes and then writes each piece synchronously on the JS
 *   thread, the plainest program of all: no overlap, but the write copies bytes still in cache
 *   (the `node` mode's writes run on Deno's I/O threads, and on the VM we measure on that copy
 *   from another core sometimes cost seconds of system time: 1.07 s in one run, 1.93 s in the
 *   next). The benchmark runs both and holds downloads to the faster. MODE `tcp` only receives and drops the bytes (no hash, no file): the
 *   transport's own speed, shown beside the baseline.
 *
 * Does file and network I/O on 127.0.0.1 only.
 */

import { createHash } from "node:crypto";

const CHUNK_BYTES = 1024 * 1024;
/** Piece buffers in the ring: pieces being received, hashed or written at once. */
const PIECES_IN_FLIGHT = 4;

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, data: Uint8Array) {
  for (let done = 0; done < data.length;) done += await w.write(data.subarray(done));
}

async function send(file: string): Promise<void> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(JSON.stringify({ port: (listener.addr as Deno.NetAddr).port }));
  using conn = await listener.accept();
  using source = await Deno.open(file, { read: true });
  const buf = new Uint8Array(CHUNK_BYTES);
  for (;;) {
    const n = await source.read(buf);
    if (n === null) break;
    await writeAll(conn, buf.subarray(0, n));
  }
}

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Fills `buf` from the connection; returns how many bytes came (less only at end of stream). */
async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buf.length) {
    const n = await conn.read(buf.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}

async function recv(port: number, out: string, metaPath: string, mode: string): Promise<void> {
  const meta = JSON.parse(await Deno.readTextFile(metaPath));
  const pieceLength: number = meta.info.pieceLength;
  const length: number = meta.info.length;
  const expected: Uint8Array[] = (meta.info.pieces as string[]).map(hexToBytes);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const fail = (index: number) => {
    throw new Error(`piece ${index} does not match its SHA-256 in ${metaPath}`);
  };
  if (mode === "tcp") {
    // The transport alone, for the table: bytes received and dropped, no hashing, no file.
    const buf = new Uint8Array(CHUNK_BYTES);
    let got = 0;
    for (let n; (n = await conn.read(buf)) !== null;) got += n;
    if (got !== length) throw new Error(`received ${got} bytes of ${length}`);
    return;
  }
  using target = await Deno.open(out, { write: true, create: true, truncate: true });
  // A ring of piece buffers: the next pieces arrive while earlier ones are hashed (off-thread in
  // `subtle` mode) and written. Writes go in order through one chain, so the file cursor needs
  // no seeking; a buffer is reused only once its piece is both verified and written.
  const ring = Array.from({ length: PIECES_IN_FLIGHT }, () => new Uint8Array(pieceLength));
  const busy: Promise<void>[] = [];
  let writes = Promise.resolve();
  let received = 0;
  for (let index = 0; received < length; index++) {
    const slot = index % PIECES_IN_FLIGHT;
    await busy[slot];
    const piece = ring[slot];
    const n = await readFull(conn, piece.subarray(0, Math.min(pieceLength, length - received)));
    if (n === 0) break;
    const data = piece.subarray(0, n);
    received += n;
    let verified: Promise<void>;
    if (mode === "sync") {
      // Everything on the JS thread, in order: hash, then write while the bytes are in cache.
      if (!sameBytes(createHash("sha256").update(data).digest(), expected[index])) fail(index);
      for (let done = 0; done < data.length;) done += target.writeSync(data.subarray(done));
      continue;
    }
    if (mode === "node") {
      if (!sameBytes(createHash("sha256").update(data).digest(), expected[index])) fail(index);
      verified = Promise.resolve();
    } else {
      verified = crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>).then((d) => {
        if (!sameBytes(new Uint8Array(d), expected[index])) fail(index);
      });
    }
    writes = writes.then(() => writeAll(target, data));
    busy[slot] = Promise.all([verified, writes]).then(() => {});
  }
  await Promise.all(busy);
  if (received !== length) throw new Error(`received ${received} bytes of ${length}`);
}

if (import.meta.main) {
  const [mode, ...rest] = Deno.args;
  if (mode === "send" && rest.length === 1) {
    await send(rest[0]);
  } else if (mode === "recv" && rest.length >= 3) {
    await recv(Number(rest[0]), rest[1], rest[2], rest[3] ?? "node");
  } else {
    console.error(
      "usage: baseline_copy.ts send FILE | recv PORT OUT META [node|sync|subtle|tcp]",
    );
    Deno.exit(2);
  }
}
