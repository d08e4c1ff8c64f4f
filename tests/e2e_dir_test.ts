/**
 * End-to-end directory shares: `create DIR`, `info` and `verify` on a folder; metadata with a
 * hostile path refused before anything is written (one test per class of bad path); symbolic
 * links planted in the work folder refused; seed -> download round trips of a nested tree, and
 * a resume after `kill -9`, `--only`, and files placed as soon as they are complete. Every run is
 * the real program under narrow permissions.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { sha256 } from "../lib/hash.ts";
import { canonicalJson, type FileEntry } from "../lib/metadata.ts";
import { toHex } from "../lib/units.ts";
import { assertTree, makeDirShare, writeTree } from "./dir_fixtures.ts";
import {
  closedPort,
  createMeta,
  downloadArgs,
  exists,
  type JsonEvent,
  onlyEvent,
  parseEvents,
  perms,
  randomFile,
  runCli,
  runDownload,
  spawnCli,
  startGateProxy,
  startSeeder,
  stateHave,
  type TempDir,
  tempDir,
  waitFor,
} from "./helpers.ts";

/** Asserts stderr holds exactly one line, `error: ...`, and no stack trace; returns it. */
function oneErrorLine(stderr: string): string {
  assert.doesNotMatch(stderr, /^\s+at /m, `stack trace in stderr:\n${stderr}`);
  const lines = stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, `expected one line in stderr:\n${stderr}`);
  assert.match(lines[0], /^error: /);
  return lines[0];
}

/** Every path under `root`, sorted ("" when it does not exist). */
async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      out.push(path);
      if (e.isDirectory && !e.isSymlink) await walk(join(dir, e.name), path);
    }
  };
  if (await exists(root)) await walk(root, "");
  return out.sort();
}

/** The standard test tree written at `<dir>/tree`, and its in-memory twin. */
async function treeOnDisk(dir: TempDir) {
  const share = await makeDirShare();
  const root = dir.join("tree");
  await writeTree(share, root);
  return { share, root };
}

// ---------------------------------------------------------------------------------------------
// create, info, verify

Deno.test("create DIR describes the folder: same info hash as the format says, links and sockets skipped with a warning", async () => {
  await using dir = await tempDir();
  const { share, root } = await treeOnDisk(dir);
  await Deno.symlink("/etc/hostname", join(root, "docs", "link-to-outside"));
  const fifo = await new Deno.Command("mkfifo", { args: [join(root, "small", "a.fifo")] }).output();
  assert.equal(fifo.code, 0, "mkfifo");

  const result = await runCli(["create", `${root}/`, "--piece-size", "1K", "--json"], {
    perms: perms.create(root, dir.path),
  });
  assert.equal(result.code, 0, result.stderr);
  const events = parseEvents(result.stdout);
  const created = onlyEvent(events, "created");
  assert.equal(created.path, `${root}.p2pmeta`, "beside the folder, not inside it");
  assert.equal(created.name, "tree");
  assert.equal(created.directory, true);
  assert.equal(created.files, share.entries.filter((e) => !e.dir).length);
  assert.equal(created.bytes, share.data.length);
  // The same tree built in memory gives the same info hash: order, layout and hashing agree.
  assert.equal(created.infoHash, share.meta.infoHash);
  const warnings = events.filter((e) => e.event === "warning").map((e) => String(e.message));
  assert.equal(warnings.length, 2, JSON.stringify(warnings));
  assert.match(warnings[0], /skipped symbolic link .*link-to-outside \(--follow-symlinks/);
  assert.match(warnings[1], /skipped FIFO .*a\.fifo: only regular files and folders/);

  // Text mode says the same to people, warnings on stderr.
  const text = await runCli(["create", root, "--piece-size", "1K", "-o", dir.join("t.p2pmeta")], {
    perms: perms.create(root, dir.path),
  });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /\[create\] wrote .*t\.p2pmeta \(tree\/, .* in 85 files, \d+ pieces/);
  assert.match(text.stderr, /\[create\] warning: skipped symbolic link/);
});

Deno.test("create DIR --follow-symlinks includes what links point to and refuses a loop", async () => {
  await using dir = await tempDir();
  const root = dir.join("share");
  const elsewhere = dir.join("elsewhere");
  await Deno.mkdir(join(root, "sub"), { recursive: true });
  await Deno.mkdir(elsewhere);
  await Deno.writeTextFile(join(root, "sub", "a.txt"), "a");
  await Deno.writeTextFile(join(elsewhere, "b.txt"), "bb");
  await Deno.symlink(elsewhere, join(root, "linked"));
  const meta = dir.join("out.p2pmeta");
  const run = (extra: string[]) =>
    runCli(["create", root, "-o", meta, "--json", ...extra], {
      perms: [`--allow-read=${root},${elsewhere}`, `--allow-write=${dir.path}`],
    });
  const followed = await run(["--follow-symlinks"]);
  assert.equal(followed.code, 0, followed.stderr);
  assert.equal(onlyEvent(parseEvents(followed.stdout), "created").files, 2);
  const info = await runCli(["info", meta, "--json"], { perms: [`--allow-read=${meta}`] });
  assert.deepEqual(onlyEvent(parseEvents(info.stdout), "share").files, [
    { path: "linked/b.txt", bytes: 2, dir: false },
    { path: "sub/a.txt", bytes: 1, dir: false },
  ]);

  await Deno.symlink(root, join(root, "sub", "loop"));
  const loop = await run(["--follow-symlinks"]);
  assert.equal(loop.code, 1, loop.stderr);
  assert.match(oneErrorLine(loop.stderr), /loop.*symbolic link loop|symbolic link loop/);
  const skipped = await run([]);
  assert.equal(skipped.code, 0, skipped.stderr);
  assert.equal(onlyEvent(parseEvents(skipped.stdout), "created").files, 1);
});

Deno.test("create DIR refuses a folder holding a name other systems cannot store", async () => {
  await using dir = await tempDir();
  const root = dir.join("share");
  await Deno.mkdir(root);
  await Deno.writeTextFile(join(root, "ok.txt"), "fine");
  await Deno.writeTextFile(join(root, "what?.txt"), "refused on Windows");
  const result = await runCli(["create", root], { perms: perms.create(root, dir.path) });
  assert.equal(result.code, 1);
  assert.match(oneErrorLine(result.stderr), /cannot share .*what\?\.txt: character not allowed/);
  assert.equal(await exists(`${root}.p2pmeta`), false);

  await Deno.remove(join(root, "what?.txt"));
  await Deno.writeTextFile(join(root, "OK.TXT"), "same name on Windows and macOS");
  const clash = await runCli(["create", root], { perms: perms.create(root, dir.path) });
  assert.equal(clash.code, 1);
  assert.match(oneErrorLine(clash.stderr), /"OK\.TXT" and "ok\.txt" differ only in case/);
});

Deno.test("info M lists a folder's files with sizes, as text and as JSON", async () => {
  await using dir = await tempDir();
  const { share, root } = await treeOnDisk(dir);
  const { meta } = await createMeta(root, { pieceSize: "1K" });
  const json = await runCli(["info", meta, "--json"], { perms: [`--allow-read=${meta}`] });
  assert.equal(json.code, 0, json.stderr);
  const event = onlyEvent(parseEvents(json.stdout), "share");
  assert.equal(event.directory, true);
  assert.deepEqual(
    event.files,
    share.entries.map((e) => ({ path: e.path.join("/"), bytes: e.length, dir: e.dir === true })),
  );
  const text = await runCli(["info", meta], { perms: [`--allow-read=${meta}`] });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /files: +85 files, 2 empty folders\n/);
  assert.match(text.stdout, /\n +3\.10 KiB {2}big\.bin\n/);
  assert.match(text.stdout, /\n +folder {2}empty-folder\/\n/);
  assert.match(text.stdout, /\n +1\.46 KiB {2}unicode\/é😀\.bin\n/);
});

Deno.test("verify --meta M DIR passes on the folder and names the bad, short, missing files", async () => {
  await using dir = await tempDir();
  const { root } = await treeOnDisk(dir);
  const { meta } = await createMeta(root, { pieceSize: "1K" });
  const verify = async () => {
    const result = await runCli(["verify", "--meta", meta, root, "--json"], {
      perms: perms.verify(meta, root),
    });
    return { ...result, event: onlyEvent(parseEvents(result.stdout), "verified") };
  };
  const ok = await verify();
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.event.ok, true);
  assert.deepEqual(ok.event.badPieces, []);
  assert.deepEqual(ok.event.badFiles, []);

  // One flipped byte, one file cut short, one file and one empty folder gone.
  const notes = join(root, "docs", "notes.md");
  const bytes = await Deno.readFile(notes);
  bytes[10] ^= 1;
  await Deno.writeFile(notes, bytes);
  await Deno.truncate(join(root, "small", "f40.txt"), 3);
  await Deno.remove(join(root, "unicode", "日本語 ファイル.txt"));
  await Deno.remove(join(root, "empty-folder"));
  const bad = await verify();
  assert.equal(bad.code, 1);
  assert.equal(bad.event.ok, false);
  const badFiles = bad.event.badFiles as string[];
  for (
    const f of ["docs/notes.md", "small/f40.txt", "unicode/日本語 ファイル.txt", "empty-folder"]
  ) {
    assert.ok(badFiles.includes(f), `${f} not in ${JSON.stringify(badFiles)}`);
  }
  const text = await runCli(["verify", "--meta", meta, root], { perms: perms.verify(meta, root) });
  assert.equal(text.code, 1);
  assert.match(text.stderr, /\[verify\] FAILED: .*tree has \d+ bad pieces of \d+: .*; bad files: /);
});

// ---------------------------------------------------------------------------------------------
// Hostile metadata: refused whole, before anything is written

/**
 * Writes a `.p2pmeta` by hand: name `evil`, the given entries (each file 10 bytes unless given),
 * pieces of 1 KiB, and a correct info hash, so only the content can make it fail.
 */
async function evilMeta(
  dir: TempDir,
  files: unknown[],
  edit: (info: Record<string, unknown>) => void = () => {},
): Promise<string> {
  const length = files.reduce<number>((n, f) => n + Number((f as FileEntry).length ?? 0), 0);
  const info: Record<string, unknown> = {
    name: "evil",
    length,
    pieceLength: 1024,
    pieces: Array.from(
      { length: Math.ceil(length / 1024) },
      (_, i) => toHex(new Uint8Array(32).fill(i)),
    ),
    files,
  };
  edit(info);
  const infoHash = toHex(await sha256(new TextEncoder().encode(canonicalJson(info))));
  const path = dir.join("evil.p2pmeta");
  await Deno.writeTextFile(path, JSON.stringify({ version: 1, infoHash, info }, null, 2));
  return path;
}

const f = (path: string[], length = 10) => ({ path, length });

/** One case per class of bad path or bad list: the entries and what the one error line says. */
const HOSTILE: {
  what: string;
  files: unknown[];
  edit?: (info: Record<string, unknown>) => void;
  line: RegExp;
}[] = [
  {
    what: "an absolute path",
    files: [f(["", "tmp", "pwned"])],
    line: /unsafe path "\/tmp\/pwned": absolute path/,
  },
  {
    what: "an absolute path given as a string",
    files: [{ path: "/tmp/pwned", length: 10 }],
    line: /"info\.files\[0\]\.path" must be an array of names, got "\/tmp\/pwned"/,
  },
  {
    what: "a drive letter",
    files: [f(["C:", "Windows", "pwned"])],
    line: /unsafe path "C:\/Windows\/pwned": drive letter/,
  },
  {
    what: "a .. segment",
    files: [f(["..", "..", "pwned"])],
    line: /unsafe path "\.\.\/\.\.\/pwned": "\.\." segment/,
  },
  {
    what: "a . segment",
    files: [f(["a", ".", "pwned"])],
    line: /unsafe path "a\/\.\/pwned": "\." segment/,
  },
  {
    what: "an empty segment",
    files: [f(["a", "", "pwned"])],
    line: /unsafe path "a\/\/pwned": empty segment/,
  },
  {
    what: "a backslash",
    files: [f(["..\\..\\pwned"])],
    line: /unsafe path "\.\.\\\\\.\.\\\\pwned": backslash in name/,
  },
  {
    what: "a NUL character",
    files: [f(["pwned\u0000.txt"])],
    line: /unsafe path "pwned\\u0000\.txt": control character in name/,
  },
  {
    what: "a control character (terminal escape)",
    files: [f(["\u001b[2Jpwned"])],
    line: /unsafe path "\\u001b\[2Jpwned": control character in name/,
  },
  {
    what: "a name reserved on Windows",
    files: [f(["docs", "NUL.txt"])],
    line: /unsafe path "docs\/NUL\.txt": name reserved on Windows/,
  },
  {
    what: "an overlong name",
    files: [f(["x".repeat(300)])],
    line: /unsafe path "x{200}…": name longer than 255 bytes/,
  },
  {
    what: "an overlong path",
    files: [f(Array.from({ length: 20 }, (_, i) => `${i}`.padStart(240, "d")))],
    line: /unsafe path "d{200}…": path longer than 4096 bytes/,
  },
  {
    what: "a duplicate path",
    files: [f(["a", "b"]), f(["a", "b"])],
    line: /duplicate path "a\/b"/,
  },
  {
    what: "paths that differ only in case",
    files: [f(["Readme.txt"]), f(["readme.txt"])],
    line: /paths "Readme\.txt" and "readme\.txt" differ only in case/,
  },
  {
    what: "a file also used as a folder",
    files: [f(["a"]), f(["a", "b"])],
    line: /path "a" is a file and also a folder \(of "a\/b"\)/,
  },
  {
    what: "lengths that do not add up",
    files: [f(["a"]), f(["b"])],
    edit: (info) => {
      info.length = 30;
      info.pieces = [toHex(new Uint8Array(32))];
    },
    line: /file lengths add up to 20, not info\.length 30/,
  },
  {
    what: "a piece count that does not match",
    files: [f(["a"], 3000)],
    edit: (info) => (info.pieces = [toHex(new Uint8Array(32))]),
    line: /piece count 1 does not match length 3000 \(expected 3\)/,
  },
];

for (const c of HOSTILE) {
  Deno.test(`download refuses metadata with ${c.what} in one line and writes nothing`, async () => {
    await using dir = await tempDir();
    const meta = await evilMeta(dir, c.files, c.edit);
    const workdir = dir.join("work");
    await Deno.mkdir(workdir);
    const before = await listTree(dir.path);
    const result = await runCli(
      downloadArgs(meta, workdir, closedPort()).filter((a) => a !== "--json"),
      { perms: perms.download(meta, workdir) },
    );
    assert.equal(result.code, 1, result.stderr);
    const line = oneErrorLine(result.stderr);
    assert.match(line, /^error: Cannot read metadata .*evil\.p2pmeta: /);
    assert.match(line, c.line);
    assert.equal(result.stdout, "");
    assert.deepEqual(await listTree(workdir), [], "the work folder stays empty");
    assert.deepEqual(await listTree(dir.path), before, "nothing written anywhere");
  });
}

Deno.test("a hostile path is refused the same way with --json, as one error event", async () => {
  await using dir = await tempDir();
  const meta = await evilMeta(dir, [f(["..", "pwned"])]);
  const workdir = dir.join("work");
  const result = await runCli(downloadArgs(meta, workdir, closedPort()), {
    perms: perms.download(meta, workdir),
  });
  assert.equal(result.code, 1);
  const events = parseEvents(result.stdout);
  assert.equal(events.length, 1);
  assert.match(String(onlyEvent(events, "error").message), /unsafe path "\.\.\/pwned"/);
  assert.equal(await exists(workdir), false);
});

// ---------------------------------------------------------------------------------------------
// Symbolic links in the work folder

for (const where of ["tree", "tree.partial"]) {
  Deno.test(`download refuses a symbolic link planted at <workdir>/${where} pointing outside`, async () => {
    await using dir = await tempDir();
    const { root } = await treeOnDisk(dir);
    const { meta } = await createMeta(root, { pieceSize: "1K" });
    const outside = dir.join("outside");
    await Deno.mkdir(outside);
    const workdir = dir.join("work");
    await Deno.mkdir(workdir);
    await Deno.symlink(outside, join(workdir, where));
    const result = await runCli(
      downloadArgs(meta, workdir, closedPort()).filter((a) => a !== "--json"),
      { perms: [...perms.download(meta, workdir), `--allow-read=${outside}`] },
    );
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      oneErrorLine(result.stderr),
      new RegExp(`refusing to use .*work/${where.replace(".", "\\.")}: it is a symbolic link`),
    );
    assert.deepEqual(await listTree(outside), [], "nothing written through the link");
  });
}

Deno.test("download refuses a symbolic link planted deeper in the partial tree", async () => {
  await using dir = await tempDir();
  const { share, root } = await treeOnDisk(dir);
  const { meta } = await createMeta(root, { pieceSize: "1K" });
  await using seeder = await startSeeder({ meta, source: root, workdir: dir.join("seed") });
  const outside = dir.join("outside");
  await Deno.mkdir(outside);
  const workdir = dir.join("work");
  await Deno.mkdir(join(workdir, "tree.partial"), { recursive: true });
  await Deno.symlink(outside, join(workdir, "tree.partial", "unicode"));
  const result = await runDownload({ meta, workdir, port: seeder.port });
  assert.equal(result.code, 1, result.stderr);
  assert.match(
    oneErrorLine(result.stderr),
    /refusing to use .*tree\.partial\/unicode: it is a symbolic link/,
  );
  assert.deepEqual(await listTree(outside), []);
  assert.ok(share.entries.length > 0);
});

// ---------------------------------------------------------------------------------------------
// Round trips

Deno.test("seed --source DIR -> download rebuilds the nested tree byte for byte", async () => {
  await using dir = await tempDir();
  const { share, root } = await treeOnDisk(dir);
  const { meta } = await createMeta(root, { pieceSize: "1K" });
  await using seeder = await startSeeder({ meta, source: root, workdir: dir.join("seed") });
  const ingested = await seeder.log.next("ingested");
  assert.equal(ingested.pieces, share.layout.pieces.pieceCount);

  const workdir = dir.join("dl");
  const result = await runDownload({ meta, workdir, port: seeder.port, parallel: 3 });
  assert.equal(result.code, 0, result.stderr);
  const complete = onlyEvent(result.events, "complete");
  assert.equal(complete.path, join(workdir, "tree"));
  assert.equal(complete.bytes, share.data.length);
  await assertTree(share, join(workdir, "tree"));
  assert.deepEqual(await listTree(workdir).then((l) => l.filter((p) => !p.includes("/"))), [
    "tree",
  ]);
  const files = result.events.filter((e) => e.event === "file_complete").map((e) => e.file);
  assert.deepEqual(
    [...files].sort(),
    share.entries.filter((e) => !e.dir).map((e) => e.path.join("/")).sort(),
    "one file_complete per file",
  );

  // The result verifies, and a second run finds it complete without fetching.
  const verify = await runCli(["verify", "--meta", meta, join(workdir, "tree")], {
    perms: perms.verify(meta, join(workdir, "tree")),
  });
  assert.equal(verify.code, 0, verify.stderr);
  const again = await runDownload({ meta, workdir, port: seeder.port });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(onlyEvent(again.events, "complete").piecesFetched, 0);
  assert.deepEqual(again.events.filter((e) => e.event === "file_complete"), []);
});

Deno.test("a seeder serves a folder from its work folder after the source is gone", async () => {
  await using dir = await tempDir();
  const { share, root } = await treeOnDisk(dir);
  const { meta } = await createMeta(root, { pieceSize: "1K" });
  const seedDir = dir.join("seed");
  {
    await using first = await startSeeder({ meta, source: root, workdir: seedDir });
    assert.ok(first.port > 0);
  }
  await Deno.remove(root, { recursive: true });
  await using seeder = await startSeeder({ meta, workdir: seedDir });
  const workdir = dir.join("dl");
  const result = await runDownload({ meta, workdir, port: seeder.port });
  assert.equal(result.code, 0, result.stderr);
  await assertTree(share, join(workdir, "tree"));
});

/** A tree of a few MiB: big random files and small ones, so a download can be cut mid-way. */
async function bigTree(dir: TempDir): Promise<{ root: string; files: string[] }> {
  const root = dir.join("big");
  const files = ["a/one.bin", "a/two.bin", "b/three.bin", "c/small-1.txt", "c/small-2.txt"];
  const sizes = [3 << 20, 2 << 20, (3 << 20) + 12345, 100, 0];
  for (const [i, file] of files.entries()) {
    await Deno.mkdir(join(root, file, ".."), { recursive: true });
    await randomFile(join(root, file), sizes[i]);
  }
  await Deno.mkdir(join(root, "d", "empty"), { recursive: true });
  return { root, files };
}

/** Starts a download through a gate proxy, waits for recorded progress, then kills it. */
async function killMidDownload(meta: string, workdir: string, port: number, name: string) {
  await using proxy = startGateProxy(port, 3 << 20);
  const running = spawnCli(downloadArgs(meta, workdir, proxy.port, 2), {
    perms: perms.download(meta, workdir),
  });
  try {
    await running.log.next("progress", {
      match: (e) =>
        (e.piecesDone as number) > 0 && (e.piecesDone as number) < (e.piecesTotal as number),
      timeoutMs: 30_000,
      what: "a progress event part-way",
    });
    await waitFor(
      async () => ((await stateHave(join(workdir, `${name}.state.json`)))?.length ?? 0) > 0,
      10_000,
      "the state file to list verified pieces",
    );
  } finally {
    running.child.kill("SIGKILL");
  }
  const killed = await running.finished();
  assert.equal(killed.signal, "SIGKILL", `ended by itself: ${killed.stderr}`);
  return { events: running.log.events as JsonEvent[] };
}

Deno.test("a folder download killed with SIGKILL resumes and ends identical", async () => {
  await using dir = await tempDir();
  const { root, files } = await bigTree(dir);
  const { meta } = await createMeta(root, { pieceSize: "64K" });
  await using seeder = await startSeeder({ meta, source: root, workdir: dir.join("seed") });
  const workdir = dir.join("dl");
  await killMidDownload(meta, workdir, seeder.port, "big");
  const have = await stateHave(join(workdir, "big.state.json"));
  assert.ok(have && have.length > 0);
  assert.ok(await exists(join(workdir, "big.partial")));

  const result = await runDownload({ meta, workdir, port: seeder.port });
  assert.equal(result.code, 0, result.stderr);
  const complete = onlyEvent(result.events, "complete");
  assert.equal(complete.piecesFetched, (complete.piecesTotal as number) - have.length);
  for (const file of files) {
    assert.deepEqual(
      await Deno.readFile(join(workdir, "big", file)),
      await Deno.readFile(join(root, file)),
      file,
    );
  }
  assert.ok((await Deno.lstat(join(workdir, "big", "d", "empty"))).isDirectory);
  assert.deepEqual(await listTree(workdir).then((l) => l.filter((p) => !p.includes("/"))), [
    "big",
  ]);
});

Deno.test({
  name:
    "a folder download places each file as soon as it is complete, so a killed run leaves them usable",
  fn: async () => {
    await using dir = await tempDir();
    // 300 files of 20000 bytes over pieces of 16 KiB: half the pieces complete many files.
    const root = dir.join("many");
    await Deno.mkdir(root);
    for (let i = 0; i < 300; i++) {
      await randomFile(join(root, `f${String(i).padStart(3, "0")}.bin`), 20_000);
    }
    const { meta } = await createMeta(root, { pieceSize: "16K" });
    await using seeder = await startSeeder({ meta, source: root, workdir: dir.join("seed") });
    const workdir = dir.join("dl");
    await using proxy = startGateProxy(seeder.port, 3 << 20);
    const running = spawnCli(downloadArgs(meta, workdir, proxy.port, 2), {
      perms: perms.download(meta, workdir),
    });
    let placed: JsonEvent;
    try {
      placed = await running.log.next("file_complete", { timeoutMs: 30_000 });
    } finally {
      running.child.kill("SIGKILL");
    }
    await running.finished();
    assert.equal(placed.path, join(workdir, "many", String(placed.file)));
    assert.deepEqual(
      await Deno.readFile(String(placed.path)),
      await Deno.readFile(join(root, String(placed.file))),
      "a placed file is complete and usable while the download is unfinished",
    );
    assert.ok(await exists(join(workdir, "many.partial")), "the rest is still being assembled");
    const rest = await runDownload({ meta, workdir, port: seeder.port });
    assert.equal(rest.code, 0, rest.stderr);
    for await (const e of Deno.readDir(root)) {
      assert.deepEqual(
        await Deno.readFile(join(workdir, "many", e.name)),
        await Deno.readFile(join(root, e.name)),
        e.name,
      );
    }
  },
});

Deno.test({
  name: "download --only fetches just the matching files and only the pieces they touch",
  fn: async () => {
    await using dir = await tempDir();
    const { share, root } = await treeOnDisk(dir);
    const { meta } = await createMeta(root, { pieceSize: "1K" });
    await using seeder = await startSeeder({ meta, source: root, workdir: dir.join("seed") });
    const workdir = dir.join("dl");
    const only = ["docs", "unicode/é*"];
    const result = await runCli([
      ...downloadArgs(meta, workdir, seeder.port),
      ...only.flatMap((g) => ["--only", g]),
    ], { perms: perms.download(meta, workdir) });
    assert.equal(result.code, 0, result.stderr);
    const chosen = share.entries.flatMap((e, i) =>
      e.path[0] === "docs" || e.path.join("/") === "unicode/é😀.bin" ? [i] : []
    );
    await assertTree(share, join(workdir, "tree"), chosen);
    const wantedPieces = share.layout.piecesOfFiles(chosen);
    const events = parseEvents(result.stdout);
    assert.equal(onlyEvent(events, "started").piecesNeeded, wantedPieces.length);
    assert.equal(onlyEvent(events, "complete").piecesFetched, wantedPieces.length);

    // A pattern that matches nothing is a usage error, before anything is written.
    const typo = await runCli([
      ...downloadArgs(meta, dir.join("dl2"), seeder.port),
      "--only",
      "nope",
    ], {
      perms: perms.download(meta, dir.join("dl2")),
    });
    assert.equal(typo.code, 2);
    assert.match(oneErrorLine(typo.stderr), /--only "nope" matches no file of tree/);
    assert.equal(await exists(dir.join("dl2")), false);

    // Then the rest: a plain run completes the tree from what is there.
    const rest = await runDownload({ meta, workdir, port: seeder.port });
    assert.equal(rest.code, 0, rest.stderr);
    assert.equal(
      onlyEvent(rest.events, "complete").piecesFetched,
      share.layout.pieces.pieceCount - wantedPieces.length,
    );
    await assertTree(share, join(workdir, "tree"));
  },
});
