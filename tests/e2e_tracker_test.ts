/**
 * End-to-end tracker tests: real `tracker`, `seed` and `download` processes under narrow
 * permission flags on 127.0.0.1 (port 0 everywhere), synchronised on their `--json` events and
 * on the tracker's `/stats` (polled in a bounded loop), never on sleeps.
 */

import assert from "node:assert/strict";
import {
  assertSameFile,
  closedPort,
  createMeta,
  type JsonEvent,
  parseEvents,
  perms,
  randomFile,
  runCli,
  runDownload,
  startSeeder,
  type TempDir,
  tempDir,
} from "./helpers.ts";
import {
  fetchStats,
  fetchText,
  pollStats,
  randomHex,
  rawHttp,
  startTracker,
  swarmOf,
} from "./tracker_kit.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** A random file of `bytes` bytes named `name` and its metadata (16 KiB pieces unless told). */
async function share(
  dir: TempDir,
  name: string,
  bytes: number,
  pieceSize = "16K",
): Promise<{ source: string; meta: string; infoHash: string }> {
  const source = dir.join(name);
  await randomFile(source, bytes);
  const { meta, created } = await createMeta(source, { pieceSize });
  assert.equal(typeof created.infoHash, "string");
  return { source, meta, infoHash: created.infoHash as string };
}

/** `download --tracker ADDR` with no --host/--port, listening on 127.0.0.1 as the flags say. */
function trackerDownloadArgs(
  meta: string,
  workdir: string,
  tracker: string,
  extra: string[] = [],
): string[] {
  return [
    "download",
    "--meta",
    meta,
    "--tracker",
    tracker,
    "--workdir",
    workdir,
    "--listen-host",
    "127.0.0.1",
    ...extra,
    "--json",
  ];
}

/** Events whose message mentions the tracker being unreachable. */
function unreachableWarnings(events: JsonEvent[]): JsonEvent[] {
  return events.filter((e) =>
    e.event === "warning" && /tracker/.test(String(e.message)) &&
    /unreachable/.test(String(e.message))
  );
}

/** Asserts stderr holds exactly one non-empty line, `error: ...`, and returns it. */
function assertOneErrorLine(stderr: string): string {
  assert.doesNotMatch(stderr, /^\s+at /m, `stack trace in stderr:\n${stderr}`);
  const lines = stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, `expected exactly one stderr line, got:\n${stderr}`);
  assert.match(lines[0], /^error: \S/);
  return lines[0];
}

Deno.test("a downloader given only --tracker finds the seeder there and gets identical bytes; /stats and / show the swarm", async () => {
  await using dir = await tempDir();
  await using tracker = await startTracker();
  const { source, meta, infoHash } = await share(dir, "shared-file.bin", MiB + 123);
  await using seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--tracker", tracker.address],
  });
  const listed = await pollStats(tracker.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
    timeoutMs: 10_000,
    what: "the seeder in /stats",
  });
  assert.deepEqual(listed, {
    swarmCount: 1,
    peerCount: 1,
    swarms: [{ infoHash, name: "shared-file.bin", seeders: 1, leechers: 0, completed: 0 }],
  });
  await seeder.log.next("info", {
    match: (e) => String(e.message).startsWith(`announced to tracker http://${tracker.address}/`),
    timeoutMs: 5_000,
  });

  const workdir = dir.join("dl");
  const result = await runCli(trackerDownloadArgs(meta, workdir, tracker.address), {
    perms: perms.download(meta, workdir),
    timeoutMs: 30_000,
  });
  assert.equal(result.code, 0, `download failed: ${result.stderr}`);
  const events = parseEvents(result.stdout);
  const started = events.find((e) => e.event === "started");
  assert.equal(started?.peer, "peers found through the tracker");
  const connected = events.filter((e) => e.event === "peer_connected").map((e) => e.peer);
  assert.ok(connected.length > 0, "the downloader connected to no peer");
  for (const peer of connected) assert.equal(peer, `127.0.0.1:${seeder.port}`);
  assert.ok(
    events.some((e) => e.event === "info" && /^announced to tracker /.test(String(e.message))),
    `no announce info among ${JSON.stringify(events)}`,
  );
  assert.equal(events.filter((e) => e.event === "complete").length, 1);
  await assertSameFile(`${workdir}/shared-file.bin`, source);

  // The downloader said `completed`, then `stopped` before it exited: only the seeder is left.
  assert.deepEqual(await fetchStats(tracker.base), {
    swarmCount: 1,
    peerCount: 1,
    swarms: [{ infoHash, name: "shared-file.bin", seeders: 1, leechers: 0, completed: 1 }],
  });
  const page = await fetchText(`${tracker.base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  assert.ok(
    page.text.includes("shared-file.bin"),
    `file name missing from the page:\n${page.text}`,
  );
  assert.ok(page.text.includes(infoHash), "info hash missing from the page");

  const stopped = await seeder.stop();
  assert.equal(stopped.code, 0, stopped.stderr);
  const trackerResult = await tracker.stop();
  assert.equal(trackerResult.code, 0);
  assert.equal(trackerResult.stderr, "");
});

Deno.test("two seeders of one file found through the tracker both serve the downloader", async () => {
  await using dir = await tempDir();
  await using tracker = await startTracker();
  const { source, meta, infoHash } = await share(dir, "twice.bin", 8 * MiB, "64K");
  const extraArgs = ["--tracker", tracker.address];
  await using seederA = await startSeeder({ meta, source, workdir: dir.join("a"), extraArgs });
  await using seederB = await startSeeder({ meta, source, workdir: dir.join("b"), extraArgs });
  await pollStats(tracker.base, (s) => swarmOf(s, infoHash)?.seeders === 2, {
    timeoutMs: 10_000,
    what: "both seeders in /stats",
  });

  const workdir = dir.join("dl");
  const result = await runCli(
    trackerDownloadArgs(meta, workdir, tracker.address, ["--parallel", "4"]),
    { perms: perms.download(meta, workdir), timeoutMs: 30_000 },
  );
  assert.equal(result.code, 0, `download failed: ${result.stderr}`);
  await assertSameFile(`${workdir}/twice.bin`, source);

  const events = parseEvents(result.stdout);
  const peers = new Set(events.filter((e) => e.event === "peer_connected").map((e) => e.peer));
  assert.deepEqual(
    [...peers].sort(),
    [`127.0.0.1:${seederA.port}`, `127.0.0.1:${seederB.port}`].sort(),
  );
  for (const seeder of [seederA, seederB]) {
    const event = await seeder.log.next("peer_connected", { timeoutMs: 5_000 });
    assert.equal(event.direction, "in");
  }
});

Deno.test("a seeder killed with SIGKILL expires from /stats after the grace period", async () => {
  await using dir = await tempDir();
  await using tracker = await startTracker({ interval: 1 });
  const { source, meta, infoHash } = await share(dir, "killed.bin", 64 * KiB);
  await using seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--tracker", tracker.address],
  });
  await pollStats(tracker.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
    timeoutMs: 10_000,
    what: "the seeder in /stats",
  });

  seeder.child.kill("SIGKILL");
  const killed = await seeder.stop();
  assert.equal(killed.signal, "SIGKILL");
  // No goodbye was sent: the tracker still lists it right after the exit.
  assert.equal((await fetchStats(tracker.base)).peerCount, 1);

  // Grace with --interval 1: 2 x 1 s + 0.5 s, swept every second.
  const gone = await pollStats(tracker.base, (s) => s.peerCount === 0, {
    timeoutMs: 10_000,
    what: "the killed seeder to expire",
  });
  assert.deepEqual(gone, { swarmCount: 0, peerCount: 0, swarms: [] });
});

Deno.test("a seeder stopped with SIGTERM says goodbye: /stats shows no peer right after it exits", async () => {
  await using dir = await tempDir();
  // Default interval (60 s): expiry could not explain the peer disappearing within the test.
  await using tracker = await startTracker();
  const { source, meta, infoHash } = await share(dir, "stopped.bin", 64 * KiB);
  await using seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--tracker", tracker.address],
  });
  await pollStats(tracker.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
    timeoutMs: 10_000,
    what: "the seeder in /stats",
  });

  const result = await seeder.stop(); // SIGTERM
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(await fetchStats(tracker.base), { swarmCount: 0, peerCount: 0, swarms: [] });
  assert.deepEqual(
    seeder.events.filter((e) => e.event === "warning"),
    [],
    "the seeder warned while stopping",
  );
});

Deno.test("a tracker restarted on the same port is repopulated by the seeder, which warned once and kept serving", async () => {
  await using dir = await tempDir();
  const first = await startTracker({ interval: 1 });
  const port = first.port;
  const { source, meta, infoHash } = await share(dir, "restart.bin", 256 * KiB);
  await using seeder = await startSeeder({
    meta,
    source,
    workdir: dir.join("seed"),
    extraArgs: ["--tracker", first.address],
  });
  try {
    await pollStats(first.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
      timeoutMs: 10_000,
      what: "the seeder in the first tracker's /stats",
    });
  } finally {
    await first.stop("SIGKILL");
  }

  // The seeder notices at its next re-announce (every second) and says so once.
  const warning = await seeder.log.next("warning", {
    match: (e) => /tracker/.test(String(e.message)),
    timeoutMs: 10_000,
    what: "the seeder's tracker warning",
  });
  assert.match(
    String(warning.message),
    new RegExp(`^tracker http://127\\.0\\.0\\.1:${port}/announce: unreachable \\(.+\\); retrying`),
  );

  // Meanwhile the seeder keeps serving peers that know it.
  const direct = await runDownload({
    meta,
    workdir: dir.join("direct"),
    port: seeder.port,
    timeoutMs: 30_000,
  });
  assert.equal(direct.code, 0, `direct download failed: ${direct.stderr}`);
  await assertSameFile(dir.join("direct", "restart.bin"), source);

  await using second = await startTracker({ port, interval: 1 });
  assert.equal(second.port, port);
  const back = await pollStats(second.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
    timeoutMs: 15_000,
    what: "the seeder to re-announce to the restarted tracker",
  });
  assert.equal(back.peerCount, 1);
  assert.equal(swarmOf(back, infoHash)?.name, "restart.bin");
  await seeder.log.next("info", {
    match: (e) => /reachable again/.test(String(e.message)),
    timeoutMs: 5_000,
    what: "the seeder's tracker-is-back line",
  });
  assert.equal(
    seeder.events.filter((e) => e.event === "warning" && /tracker/.test(String(e.message)))
      .length,
    1,
    `expected one tracker warning: ${JSON.stringify(seeder.events)}`,
  );
  assert.equal(unreachableWarnings(seeder.events).length, 1);

  const result = await seeder.stop();
  assert.equal(result.code, 0, result.stderr);
  assert.equal((await fetchStats(second.base)).peerCount, 0);
});

Deno.test("the running tracker answers every bad request with the right 4xx and a JSON error, and keeps serving", async () => {
  await using tracker = await startTracker();
  const infoHash = randomHex(64);
  const peerId = randomHex(40);
  const valid: Record<string, string> = {
    info_hash: infoHash,
    peer_id: peerId,
    port: "6881",
    left: "0",
  };
  const announceUrl = (params: Record<string, string | undefined>, extra = "") => {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...valid, ...params })) {
      if (v !== undefined) query.set(k, v);
    }
    return `${tracker.base}/announce?${query}${extra}`;
  };
  const cases: {
    what: string;
    url: string;
    init?: RequestInit;
    status: number;
    error: RegExp;
  }[] = [
    {
      what: "missing info_hash",
      url: announceUrl({ info_hash: undefined }),
      status: 400,
      error: /info_hash is required/,
    },
    {
      what: "a 40-character info hash",
      url: announceUrl({ info_hash: randomHex(40) }),
      status: 400,
      error: /info_hash must be 64 hex characters, got 40/,
    },
    {
      what: "a non-hex info hash",
      url: announceUrl({ info_hash: "z".repeat(64) }),
      status: 400,
      error: /info_hash must be 64 hex characters/,
    },
    {
      what: "a missing peer id",
      url: announceUrl({ peer_id: undefined }),
      status: 400,
      error: /peer_id is required/,
    },
    { what: "port 0", url: announceUrl({ port: "0" }), status: 400, error: /port must be from 1/ },
    {
      what: "port 70000",
      url: announceUrl({ port: "70000" }),
      status: 400,
      error: /port must be from 1 to 65535, got 70000/,
    },
    {
      what: "a negative left",
      url: announceUrl({ left: "-1" }),
      status: 400,
      error: /left must be a non-negative integer/,
    },
    {
      what: "a missing left",
      url: announceUrl({ left: undefined }),
      status: 400,
      error: /left is required/,
    },
    {
      what: "an unknown event",
      url: announceUrl({ event: "paused" }),
      status: 400,
      error: /event must be/,
    },
    {
      what: "a parameter given twice",
      url: announceUrl({}, "&port=6882"),
      status: 400,
      error: /port given more than once/,
    },
    {
      what: "a query over 2048 bytes",
      url: announceUrl({ pad: "a".repeat(2100) }),
      status: 414,
      error: /too long/,
    },
    {
      what: "a POST with a body",
      url: announceUrl({}),
      init: { method: "POST", body: "info_hash=x" },
      status: 405,
      error: /method POST not allowed/,
    },
    { what: "an unknown path", url: `${tracker.base}/nope`, status: 404, error: /no such path/ },
    {
      what: "a path with a trailing slash",
      url: `${tracker.base}/announce/?${new URLSearchParams(valid)}`,
      status: 404,
      error: /no such path/,
    },
    {
      what: "a scrape without info_hash",
      url: `${tracker.base}/scrape`,
      status: 400,
      error: /info_hash is required/,
    },
  ];
  for (const c of cases) {
    const answer = await fetchText(c.url, c.init);
    assert.equal(answer.status, c.status, `${c.what}: got ${answer.status} ${answer.text}`);
    assert.match(answer.headers.get("content-type") ?? "", /^application\/json/, c.what);
    const body = JSON.parse(answer.text);
    assert.deepEqual(Object.keys(body), ["error"], `${c.what}: ${answer.text}`);
    assert.equal(typeof body.error, "string");
    assert.match(body.error, c.error, c.what);
    assert.doesNotMatch(body.error, /\n/, `${c.what}: error is not one line`);
    if (c.status === 405) assert.equal(answer.headers.get("allow"), "GET");
  }

  // fetch cannot send a GET with a body: write that request by hand.
  const raw = await rawHttp(
    tracker.port,
    `GET /announce?${new URLSearchParams(
      valid,
    )} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`,
  );
  assert.match(raw, /^HTTP\/1\.1 413 /, raw);
  assert.match(raw, /\{"error":"request body not allowed"\}/, raw);

  // None of that registered anything, and the tracker still serves a valid announce.
  assert.deepEqual(await fetchStats(tracker.base), { swarmCount: 0, peerCount: 0, swarms: [] });
  const ok = await fetchText(announceUrl({ event: "started" }));
  assert.equal(ok.status, 200, ok.text);
  const body = JSON.parse(ok.text);
  assert.equal(body.interval, 60);
  assert.deepEqual(body.peers, []);
  assert.equal(body.complete, 1);
  assert.deepEqual(await fetchStats(tracker.base), {
    swarmCount: 1,
    peerCount: 1,
    swarms: [{ infoHash, seeders: 1, leechers: 0, completed: 0 }],
  });

  const result = await tracker.stop();
  assert.equal(result.code, 0);
  assert.equal(result.stderr, "", "the tracker wrote to stderr");
});

Deno.test("a download whose tracker is not running gives up after --wait-for-peers with one error line and one tracker warning", async () => {
  await using dir = await tempDir();
  const { meta } = await share(dir, "lonely.bin", 64 * KiB);
  const port = closedPort();
  const jsonDir = dir.join("json");
  const textDir = dir.join("text");
  const [json, text] = await Promise.all([
    runCli(
      trackerDownloadArgs(meta, jsonDir, `127.0.0.1:${port}`, ["--wait-for-peers", "2s"]),
      { perms: perms.download(meta, jsonDir), timeoutMs: 20_000 },
    ),
    runCli(
      trackerDownloadArgs(meta, textDir, `127.0.0.1:${port}`, ["--wait-for-peers", "2s"])
        .filter((a) => a !== "--json"),
      { perms: perms.download(meta, textDir), timeoutMs: 20_000 },
    ),
  ]);

  // --json: the events say it; stderr holds the one error line.
  assert.equal(json.code, 1, json.stderr);
  const line = assertOneErrorLine(json.stderr);
  assert.match(line, /0\/4 pieces verified/);
  const events = parseEvents(json.stdout);
  const warnings = unreachableWarnings(events);
  assert.equal(warnings.length, 1, JSON.stringify(events));
  assert.match(
    String(warnings[0].message),
    new RegExp(`^tracker http://127\\.0\\.0\\.1:${port}/announce: unreachable \\(`),
  );
  const errors = events.filter((e) => e.event === "error");
  assert.equal(errors.length, 1);
  assert.equal(`error: ${errors[0].message}`, line);

  // Text: one warning line about the tracker and one error line, both on stderr.
  assert.equal(text.code, 1, text.stderr);
  const lines = text.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.doesNotMatch(text.stderr, /^\s+at /m);
  assert.equal(lines.filter((l) => l.startsWith("error: ")).length, 1, text.stderr);
  assert.equal(
    lines.filter((l) => /warning: tracker .*unreachable/.test(l)).length,
    1,
    text.stderr,
  );
});

Deno.test("a full tracker refuses a new swarm with 429 and Retry-After, and still serves the peers it holds", async () => {
  await using tracker = await startTracker({ interval: 30 });
  const MAX_SWARMS = 1000; // the documented default
  const announce = (infoHash: string, peerId: string, port: number) =>
    fetchText(
      `${tracker.base}/announce?${new URLSearchParams({
        info_hash: infoHash,
        peer_id: peerId,
        port: String(port),
        left: "100",
        event: "started",
      })}`,
    );
  const first = { infoHash: randomHex(64), peerId: randomHex(40) };
  assert.equal((await announce(first.infoHash, first.peerId, 1000)).status, 200);
  for (let i = 1; i < MAX_SWARMS; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(MAX_SWARMS, i + 50); j++) {
      batch.push(announce(randomHex(64), randomHex(40), 1000 + j));
    }
    for (const answer of await Promise.all(batch)) assert.equal(answer.status, 200, answer.text);
  }
  const full = await fetchStats(tracker.base);
  assert.equal(full.swarmCount, MAX_SWARMS);
  assert.equal(full.peerCount, MAX_SWARMS);

  const refused = await announce(randomHex(64), randomHex(40), 3000);
  assert.equal(refused.status, 429, refused.text);
  assert.equal(refused.headers.get("retry-after"), "30");
  assert.match(JSON.parse(refused.text).error, /maximum of 1000 swarms/);

  // A peer already listed may re-announce; a new peer may join an existing swarm.
  assert.equal((await announce(first.infoHash, first.peerId, 1000)).status, 200);
  const joined = await announce(first.infoHash, randomHex(40), 4000);
  assert.equal(joined.status, 200, joined.text);
  assert.deepEqual(JSON.parse(joined.text).peers.map((p: { port: number }) => p.port), [1000]);
  assert.equal((await fetchStats(tracker.base)).swarmCount, MAX_SWARMS);

  const result = await tracker.stop();
  assert.equal(result.code, 0);
  assert.equal(result.stderr, "");
});

Deno.test("the tracker hands out the address an announce came from, not the one it claims", async () => {
  await using tracker = await startTracker();
  const infoHash = randomHex(64);
  const url = (peerId: string, port: number, extra: Record<string, string> = {}) =>
    `${tracker.base}/announce?${new URLSearchParams({
      info_hash: infoHash,
      peer_id: peerId,
      port: String(port),
      left: "0",
      ...extra,
    })}`;
  const liar = await fetchText(url(randomHex(40), 5555, { ip: "203.0.113.9" }));
  assert.equal(liar.status, 200, liar.text);
  const asker = await fetchText(url(randomHex(40), 6666, { left: "10" }));
  assert.equal(asker.status, 200, asker.text);
  const peers = JSON.parse(asker.text).peers as { ip: string; port: number }[];
  assert.deepEqual(peers.map(({ ip, port }) => ({ ip, port })), [{ ip: "127.0.0.1", port: 5555 }]);
});

Deno.test("trackers listed in the metadata are used when neither --tracker nor --host is given", async () => {
  await using dir = await tempDir();
  await using tracker = await startTracker();
  const source = dir.join("listed.bin");
  await randomFile(source, 200 * KiB);
  const { meta, created } = await createMeta(source, {
    pieceSize: "16K",
    extraArgs: ["--tracker", tracker.address],
  });
  const infoHash = created.infoHash as string;
  // The seeder is not told about the tracker either: it announces to the one in the metadata.
  await using _seeder = await startSeeder({ meta, source, workdir: dir.join("seed") });
  await pollStats(tracker.base, (s) => swarmOf(s, infoHash)?.seeders === 1, {
    timeoutMs: 10_000,
    what: "the seeder announced to the metadata's tracker",
  });
  const workdir = dir.join("dl");
  const result = await runCli(
    ["download", "--meta", meta, "--workdir", workdir, "--listen-host", "127.0.0.1", "--json"],
    { perms: perms.download(meta, workdir), timeoutMs: 30_000 },
  );
  assert.equal(result.code, 0, `download failed: ${result.stderr}`);
  await assertSameFile(`${workdir}/listed.bin`, source);
});
