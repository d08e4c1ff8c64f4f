import assert from "node:assert/strict";
import { join } from "node:path";
import { HandlePool, hashPieces, openFile, readFully, writeFully } from "../lib/file_io.ts";
import { sha256 } from "../lib/hash.ts";
import { PieceLayout } from "../lib/pieces.ts";
import { fixtureBytes, tempDir } from "./fixtures.ts";

Deno.test("HandlePool keeps at most maxOpen files open and every write lands", async () => {
  await using dir = await tempDir();
  const pool = new HandlePool(2);
  let opened = 0;
  let open = 0;
  let mostOpen = 0;
  const paths = Array.from({ length: 6 }, (_, i) => join(dir.path, `f${i}`));
  for (const path of paths) await Deno.writeFile(path, new Uint8Array());
  const opener = (path: string) => async () => {
    const handle = await openFile(path, "r+"); // reopened as files are closed: never truncate
    opened++;
    mostOpen = Math.max(mostOpen, ++open);
    const close = handle.close.bind(handle);
    handle.close = () => {
      open--;
      return close();
    };
    return handle;
  };
  try {
    // Writes to six files, two at a time, through a pool of two handles.
    for (let k = 0; k < 3; k++) {
      for (let i = 0; i < paths.length; i += 2) {
        await Promise.all([i, i + 1].map((j) =>
          pool.use(
            paths[j],
            opener(paths[j]),
            (h) => writeFully(h, new Uint8Array([j, k]), k * 2),
            { write: true },
          )
        ));
      }
    }
    await pool.syncAll();
    assert.ok(opened > 6, `${opened} opens: files were closed and opened again`);
    assert.equal(mostOpen, 2, "never more files open than the limit");
  } finally {
    await pool.closeAll();
  }
  assert.equal(open, 0, "closeAll() closes every file");
  for (const [i, path] of paths.entries()) {
    assert.deepEqual(await Deno.readFile(path), new Uint8Array([i, 0, i, 1, i, 2]), path);
  }
});

Deno.test("HandlePool.release() waits for the operation using the file, then closes it", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "a");
  await Deno.writeFile(path, new Uint8Array(8).fill(7));
  const pool = new HandlePool();
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const reading = pool.use(path, () => openFile(path, "r"), async (h) => {
    await gate;
    const buf = new Uint8Array(8);
    await readFully(h, buf, 0);
    return buf;
  });
  let closed = false;
  const releasing = pool.release(path).then(() => (closed = true));
  await Promise.resolve();
  assert.equal(closed, false, "not closed while in use");
  release();
  assert.deepEqual(await reading, new Uint8Array(8).fill(7));
  await releasing;
  assert.equal(closed, true);
  await pool.closeAll();
});

Deno.test("hashPieces() reads through a ReadAt function as well as a file handle", async () => {
  const data = fixtureBytes(5000);
  const layout = new PieceLayout(data.length, 1024);
  const read = (buf: Uint8Array, position: number) => {
    buf.set(data.subarray(position, position + buf.length));
    return Promise.resolve();
  };
  const digests: string[] = [];
  for await (const piece of hashPieces(read, layout, { indexes: [4, 0] })) {
    assert.deepEqual(
      piece.digest,
      await sha256(data.subarray(piece.index * 1024, piece.index * 1024 + piece.data.length)),
    );
    digests.push(String(piece.index));
  }
  assert.deepEqual(digests, ["4", "0"]);
});
