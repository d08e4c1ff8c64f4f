import assert from "node:assert/strict";
import { SwarmTable } from "../lib/swarm_table.ts";
import {
  createTrackerHandler,
  DEFAULT_NUMWANT,
  MAX_NUMWANT,
  renderPage,
  type TrackerHandler,
} from "../lib/tracker_server.ts";

const HASH = "ab".repeat(32);
const BASE = "http://tracker.test";

function peerId(n: number): string {
  return n.toString(16).padStart(40, "0");
}

function announceQuery(overrides: Record<string, string | undefined> = {}): string {
  const params: Record<string, string | undefined> = {
    info_hash: HASH,
    peer_id: peerId(1),
    port: "6881",
    left: "100",
    uploaded: "0",
    downloaded: "0",
    event: "started",
    ...overrides,
  };
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) query.set(k, v);
  return `/announce?${query}`;
}

interface Fixture {
  table: SwarmTable;
  handler: TrackerHandler;
  clock: { nowMs: number };
}

function fixture(
  options: { allowIpFrom?: string[]; maxPeersPerSwarm?: number; maxSwarms?: number } = {},
): Fixture {
  const clock = { nowMs: 0 };
  const table = new SwarmTable({
    peerTtlMs: 2500,
    maxPeersPerSwarm: options.maxPeersPerSwarm,
    maxSwarms: options.maxSwarms,
  });
  const handler = createTrackerHandler(table, {
    intervalSec: 1,
    allowIpFrom: options.allowIpFrom,
    now: () => clock.nowMs,
  });
  return { table, handler, clock };
}

async function get(
  f: Fixture,
  target: string,
  remote = "10.0.0.1",
  init: RequestInit = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = f.handler(new Request(BASE + target, init), { hostname: remote });
  const text = await res.text();
  assert.match(
    res.headers.get("content-type") ?? "",
    /application\/json/,
    `${target}: JSON answer`,
  );
  return { status: res.status, body: JSON.parse(text), headers: res.headers };
}

async function announceOk(
  f: Fixture,
  overrides: Record<string, string | undefined> = {},
  remote = "10.0.0.1",
) {
  const res = await get(f, announceQuery(overrides), remote);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as {
    interval: number;
    minInterval: number;
    complete: number;
    incomplete: number;
    peers: { ip: string; port: number; peerId: string }[];
  };
}

Deno.test("announce answers interval, counts and the other peers", async () => {
  const f = fixture();
  const first = await announceOk(f, { peer_id: peerId(1), port: "1001", left: "0" });
  assert.deepEqual(first, { interval: 1, minInterval: 1, complete: 1, incomplete: 0, peers: [] });
  const second = await announceOk(f, { peer_id: peerId(2), port: "1002" }, "10.0.0.2");
  assert.deepEqual(second, {
    interval: 1,
    minInterval: 1,
    complete: 1,
    incomplete: 1,
    peers: [{ ip: "10.0.0.1", port: 1001, peerId: peerId(1) }],
  });
});

Deno.test("every bad announce input gets a 400 with a JSON error naming the problem", async () => {
  const f = fixture();
  const cases: [Record<string, string | undefined>, RegExp][] = [
    [{ info_hash: undefined }, /info_hash is required/],
    [{ info_hash: "ab".repeat(20) }, /info_hash must be 64 hex characters, got 40/],
    [{ info_hash: "zz".repeat(32) }, /info_hash must be 64 hex/],
    [{ info_hash: "\u00ff".repeat(32) }, /info_hash must be 64 hex/],
    [{ peer_id: undefined }, /peer_id is required/],
    [{ peer_id: "12345" }, /peer_id must be 40 hex/],
    [{ port: undefined }, /port is required/],
    [{ port: "0" }, /port must be from 1 to 65535/],
    [{ port: "65536" }, /port must be from 1 to 65535/],
    [{ port: "-1" }, /port must be a non-negative integer/],
    [{ port: "80.5" }, /port must be a non-negative integer/],
    [{ port: "0x50" }, /port must be a non-negative integer/],
    [{ left: undefined }, /left is required/],
    [{ left: "-5" }, /left must be a non-negative integer/],
    [{ left: "9".repeat(17) }, /left must be a non-negative integer/],
    [{ left: "9007199254740993" }, /left must be a non-negative integer/],
    [{ uploaded: "1e3" }, /uploaded must be a non-negative integer/],
    [{ downloaded: "NaN" }, /downloaded must be a non-negative integer/],
    [{ numwant: "-1" }, /numwant must be a non-negative integer/],
    [{ event: "paused" }, /event must be started, completed, stopped or empty/],
    [{ name: "n".repeat(256) }, /name longer than 255/],
    [{ name: "bad\u0007name" }, /control character/],
  ];
  for (const [overrides, message] of cases) {
    const res = await get(f, announceQuery(overrides));
    assert.equal(res.status, 400, JSON.stringify(overrides));
    assert.equal(typeof res.body.error, "string");
    assert.match(res.body.error as string, message, JSON.stringify(overrides));
  }
  const twice = await get(f, announceQuery() + `&port=7000`);
  assert.equal(twice.status, 400);
  assert.match(twice.body.error as string, /port given more than once/);
  assert.equal(f.table.peerCount, 0, "nothing bad was recorded");
});

Deno.test("announce accepts upper-case hex, event=empty and a missing uploaded/downloaded", async () => {
  const f = fixture();
  await announceOk(f, {
    info_hash: HASH.toUpperCase(),
    peer_id: peerId(0xabc).toUpperCase(),
    event: "empty",
    uploaded: undefined,
    downloaded: undefined,
  });
  assert.deepEqual(f.table.peersOf(HASH).map((p) => [p.peerId, p.uploaded, p.downloaded]), [
    [peerId(0xabc), 0, 0],
  ]);
});

Deno.test("the address handed out is the request's, never a claimed one", async () => {
  const f = fixture();
  await announceOk(f, { peer_id: peerId(1), ip: "203.0.113.7" }, "10.0.0.1");
  const other = await announceOk(f, { peer_id: peerId(2) }, "10.0.0.2");
  assert.deepEqual(other.peers.map((p) => p.ip), ["10.0.0.1"]);
});

Deno.test("a claimed ip is honoured only from an allow-listed address", async () => {
  const f = fixture({ allowIpFrom: ["10.0.0.254"] });
  await announceOk(f, { peer_id: peerId(1), ip: "192.168.1.20" }, "10.0.0.254");
  await announceOk(f, { peer_id: peerId(2), ip: "192.168.1.21" }, "10.0.0.3");
  const asker = await announceOk(f, { peer_id: peerId(3) }, "10.0.0.4");
  assert.deepEqual(asker.peers.map((p) => p.ip).sort(), ["10.0.0.3", "192.168.1.20"]);
  const bad = await get(f, announceQuery({ peer_id: peerId(5), ip: "evil.example" }), "10.0.0.254");
  assert.equal(bad.status, 400);
  assert.match(bad.body.error as string, /ip must be an IPv4 or IPv6 address/);
});

Deno.test("an IPv4-mapped remote address is handed out as IPv4", async () => {
  const f = fixture();
  await announceOk(f, { peer_id: peerId(1) }, "::ffff:10.9.8.7");
  const other = await announceOk(f, { peer_id: peerId(2) }, "::1");
  assert.deepEqual(other.peers.map((p) => p.ip), ["10.9.8.7"]);
});

Deno.test("announce never returns the asker", async () => {
  const f = fixture();
  for (let i = 1; i <= 5; i++) await announceOk(f, { peer_id: peerId(i), port: String(2000 + i) });
  for (let i = 1; i <= 5; i++) {
    const body = await announceOk(f, {
      peer_id: peerId(i),
      port: String(2000 + i),
      event: undefined,
    });
    assert.equal(body.peers.length, 4);
    assert.ok(body.peers.every((p) => p.peerId !== peerId(i)));
  }
});

Deno.test("numwant defaults to 50 and is capped at 200", async () => {
  const f = fixture();
  for (let i = 0; i < 260; i++) {
    await announceOk(
      f,
      { peer_id: peerId(i + 100), port: String(1000 + i), numwant: "0" },
      `10.1.${i >> 8}.${i & 255}`,
    );
  }
  assert.equal((await announceOk(f, { peer_id: peerId(1) })).peers.length, DEFAULT_NUMWANT);
  assert.equal(
    (await announceOk(f, { peer_id: peerId(1), numwant: "1000000" })).peers.length,
    MAX_NUMWANT,
  );
  assert.equal((await announceOk(f, { peer_id: peerId(1), numwant: "7" })).peers.length, 7);
  assert.equal((await announceOk(f, { peer_id: peerId(1), numwant: "0" })).peers.length, 0);
});

Deno.test("stopped removes the peer at once", async () => {
  const f = fixture();
  await announceOk(f, { peer_id: peerId(1) });
  await announceOk(f, { peer_id: peerId(2) }, "10.0.0.2");
  const bye = await announceOk(f, { peer_id: peerId(1), event: "stopped" });
  assert.deepEqual(bye.peers, []);
  const other = await announceOk(f, { peer_id: peerId(2), event: undefined }, "10.0.0.2");
  assert.deepEqual(other.peers, []);
  assert.equal(f.table.peerCount, 1);
});

Deno.test("peers that stop announcing expire after the grace period", async () => {
  const f = fixture();
  await announceOk(f, { peer_id: peerId(1) });
  f.clock.nowMs = 2000;
  await announceOk(f, { peer_id: peerId(2) }, "10.0.0.2");
  f.clock.nowMs = 3000;
  const asker = await announceOk(f, { peer_id: peerId(3) }, "10.0.0.3");
  assert.deepEqual(asker.peers.map((p) => p.peerId), [peerId(2)], "peer 1 expired (ttl 2.5 s)");
  assert.equal(f.table.expire(5000), 1, "the sweep drops peer 2 too");
  const stats = await get(f, "/stats");
  assert.deepEqual(stats.body.swarms, [{ infoHash: HASH, seeders: 0, leechers: 1, completed: 0 }]);
});

Deno.test("a full table answers 429 with a JSON error and keeps serving", async () => {
  const f = fixture({ maxPeersPerSwarm: 2, maxSwarms: 1 });
  await announceOk(f, { peer_id: peerId(1) });
  await announceOk(f, { peer_id: peerId(2) });
  const full = await get(f, announceQuery({ peer_id: peerId(3) }));
  assert.equal(full.status, 429);
  assert.match(full.body.error as string, /swarm is full/);
  assert.equal(full.headers.get("retry-after"), "1");
  const swarms = await get(f, announceQuery({ info_hash: "cd".repeat(32) }));
  assert.equal(swarms.status, 429);
  assert.match(swarms.body.error as string, /maximum of 1 swarms/);
  await announceOk(f, { peer_id: peerId(1), event: undefined });
});

Deno.test("oversized URLs, bodies, unknown paths and wrong methods get 4xx JSON errors", async () => {
  const f = fixture();
  const long = await get(f, announceQuery({ name: "x".repeat(2100) }));
  assert.equal(long.status, 414);
  assert.match(long.body.error as string, /too long/);

  const post = await get(f, announceQuery(), "10.0.0.1", { method: "POST", body: "hello" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET");

  const declared = await get(f, announceQuery(), "10.0.0.1", {
    headers: { "content-length": "5" },
  });
  assert.equal(declared.status, 413);
  const chunked = await get(f, "/stats", "10.0.0.1", {
    headers: { "transfer-encoding": "chunked" },
  });
  assert.equal(chunked.status, 413);

  for (const path of ["/nope", "/announce/", "/ANNOUNCE", "/constructor", "/__proto__"]) {
    const res = await get(f, path);
    assert.equal(res.status, 404, path);
    assert.match(res.body.error as string, /no such path/);
  }
  for (const method of ["PUT", "DELETE", "HEAD"]) {
    assert.equal((await get(f, "/stats", "10.0.0.1", { method })).status, 405, method);
  }
  assert.equal(f.table.peerCount, 0);
});

Deno.test("a remote address that is not an IP gets a 400", async () => {
  const f = fixture();
  const res = await get(f, announceQuery(), "unix-socket");
  assert.equal(res.status, 400);
});

Deno.test("scrape answers counts for the asked swarms, stats for all", async () => {
  const f = fixture();
  await announceOk(f, { peer_id: peerId(1), left: "0", name: "song.ogg" });
  await announceOk(f, { peer_id: peerId(2), event: "completed", left: "0" }, "10.0.0.2");
  await announceOk(f, { peer_id: peerId(3) }, "10.0.0.3");
  const other = "cd".repeat(32);
  const scrape = await get(f, `/scrape?info_hash=${HASH}&info_hash=${other.toUpperCase()}`);
  assert.equal(scrape.status, 200);
  assert.deepEqual(scrape.body, {
    swarms: [
      { infoHash: HASH, name: "song.ogg", seeders: 2, leechers: 1, completed: 1 },
      { infoHash: other, seeders: 0, leechers: 0, completed: 0 },
    ],
  });
  assert.equal((await get(f, "/scrape")).status, 400);
  assert.equal((await get(f, "/scrape?info_hash=abc")).status, 400);
  const many = Array.from({ length: 21 }, () => `info_hash=${HASH}`).join("&");
  assert.equal((await get(f, `/scrape?${many}`)).status, 400);

  const stats = await get(f, "/stats");
  assert.deepEqual(stats.body, {
    swarmCount: 1,
    peerCount: 3,
    swarms: [{ infoHash: HASH, name: "song.ogg", seeders: 2, leechers: 1, completed: 1 }],
  });
});

Deno.test("the page at / lists each file with seeders and downloaders, escaping everything", async () => {
  const f = fixture();
  const nasty = `<script>alert("x")</script>&'`;
  await announceOk(f, { peer_id: peerId(1), left: "0", name: nasty });
  await announceOk(f, { peer_id: peerId(2) }, "10.0.0.2");
  await announceOk(f, { info_hash: "cd".repeat(32), peer_id: peerId(3) }, "10.0.0.3");
  const res = f.handler(
    new Request(`${BASE}/`, { headers: { host: `"><img src=x onerror=alert(1)>` } }),
    { hostname: "10.0.0.9" },
  );
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/html/);
  assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  const page = await res.text();
  assert.ok(!page.includes("<script"), "no script element");
  assert.ok(!page.includes("<img"), "no injected element");
  assert.ok(page.includes("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
  assert.ok(page.includes("cd".repeat(32)), "a file without a name shows its info hash");
  assert.match(page, /<td class="n">1<\/td><td class="n">1<\/td>/, "1 seeder, 1 downloading");
  assert.doesNotMatch(page, /(src|href)="(https?:)?\/\//, "no external assets");
});

Deno.test("renderPage() says so when nothing is shared", () => {
  const page = renderPage([], null);
  assert.match(page, /Nothing is being shared/);
  assert.match(page, /--tracker HOST:PORT/);
});

Deno.test("createTrackerHandler() refuses bad options", () => {
  const table = new SwarmTable();
  assert.throws(() => createTrackerHandler(table, { intervalSec: 0 }), RangeError);
  assert.throws(
    () => createTrackerHandler(table, { intervalSec: 10, minIntervalSec: 11 }),
    RangeError,
  );
  assert.throws(() => createTrackerHandler(table, { allowIpFrom: ["my-router"] }), RangeError);
});

Deno.test("the handler never throws, even on a failing table", async () => {
  const table = new SwarmTable();
  table.announce = () => {
    throw new Error("boom");
  };
  const handler = createTrackerHandler(table);
  const res = handler(new Request(BASE + announceQuery()), { hostname: "10.0.0.1" });
  assert.equal(res.status, 500);
  assert.deepEqual(await res.json(), { error: "internal error" });
});

Deno.test("served over a real socket: a GET with a body is refused and the tracker keeps serving", async () => {
  const f = fixture();
  const stop = new AbortController();
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: stop.signal, onListen: resolve },
    (req, info) => f.handler(req, info.remoteAddr),
  );
  try {
    const { port } = await listening;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const request = `GET ${announceQuery()} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n` +
        `Connection: close\r\n\r\nhello`;
      await conn.write(new TextEncoder().encode(request));
      const chunks: string[] = [];
      const buf = new Uint8Array(4096);
      const decoder = new TextDecoder();
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        chunks.push(decoder.decode(buf.subarray(0, n), { stream: true }));
      }
      const answer = chunks.join("");
      assert.match(answer, /^HTTP\/1\.1 413/);
      assert.match(answer, /"error":"request body not allowed"/);
    } finally {
      conn.close();
    }
    const res = await fetch(`http://127.0.0.1:${port}${announceQuery()}`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual(body.peers, []);
    assert.deepEqual(f.table.peersOf(HASH).map((p) => p.ip), ["127.0.0.1"]);
  } finally {
    stop.abort();
    await server.finished;
  }
});
