/**
 * Unit tests of the web monitor's handler, hub, framing and options, without a socket: the
 * handler is called with `Request`s and its event streams are read directly.
 */

import assert from "node:assert/strict";
import { parseCommandArgs } from "../lib/cli/args.ts";
import { parseWebListen, WEB_OPTIONS, webSettings } from "../lib/cli/web.ts";
import { UsageError } from "../lib/errors.ts";
import type { TrackerSnapshot } from "../lib/snapshot.ts";
import {
  constantTimeEqual,
  generateToken,
  isLoopbackHost,
  isLoopbackHostHeader,
  tokenProblem,
} from "../lib/web/auth.ts";
import { createWebHandler } from "../lib/web/handler.ts";
import { MAX_QUEUED_BYTES, MonitorHub } from "../lib/web/hub.ts";
import { applyPieceMap } from "../lib/web/piece_map.ts";
import { parseSse, sseComment, sseFrame } from "../lib/web/sse.ts";
import type { HelloMessage, ShareView, SnapshotMessage, StampedEvent } from "../lib/web/view.ts";
import { fakePeer, FakeShare, SseReader } from "./web_kit.ts";

const BASE = "http://127.0.0.1:8123";
const TOKEN = "s3cret-token-for-tests_0123";

function get(path: string, init: RequestInit = {}, base = BASE): Request {
  return new Request(`${base}${path}`, init);
}

function fixture(options: { token?: string; pieces?: number } = {}) {
  const share = new FakeShare(options.pieces ?? 40);
  let nowMs = 0;
  const hub = new MonitorHub(share, { now: () => nowMs, wallClock: () => 1_700_000_000_000 });
  const handler = createWebHandler(
    hub,
    options.token === undefined ? {} : { token: options.token },
  );
  return {
    share,
    hub,
    handler,
    advance(ms: number) {
      nowMs += ms;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Routes

Deno.test("handler serves the page, its script and style, and a JSON snapshot on loopback", async () => {
  const { handler, share } = fixture();
  share.setDone(10, 2);

  const page = handler(get("/"));
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  const csp = page.headers.get("content-security-policy") ?? "";
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  const html = await page.text();
  assert.match(html, /<script src="\/app\.js" defer><\/script>/);
  assert.doesNotMatch(html, /https?:\/\//, "the page loads nothing from elsewhere");

  const script = handler(get("/app.js"));
  assert.equal(script.status, 200);
  assert.match(script.headers.get("content-type") ?? "", /^text\/javascript/);
  const js = await script.text();
  assert.match(js, /new EventSource/);
  assert.doesNotMatch(js, /https?:\/\//);
  // The embedded script must parse as JavaScript (types stripped).
  new Function(js);

  const css = handler(get("/app.css"));
  assert.equal(css.status, 200);
  assert.match(css.headers.get("content-type") ?? "", /^text\/css/);
  assert.doesNotMatch(await css.text(), /url\(|@import/);

  const snap = handler(get("/snapshot"));
  assert.equal(snap.status, 200);
  const view = await snap.json() as ShareView;
  assert.equal(view.role, "download");
  assert.equal(view.piecesDone, 10);
  const states = applyPieceMap(view.pieceMap ?? "", view.piecesTotal);
  assert.deepEqual(states, share.states);
  for (const res of [page, script, css, snap]) {
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(res.headers.get("referrer-policy"), "no-referrer");
  }
});

Deno.test("handler answers 404 for unknown paths and 405 for anything but GET", async () => {
  const { handler } = fixture();
  const missing = handler(get("/etc/passwd"));
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  for (const method of ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]) {
    for (const path of ["/", "/events", "/snapshot"]) {
      const res = handler(get(path, { method }));
      assert.equal(res.status, 405, `${method} ${path}`);
      assert.equal(res.headers.get("allow"), "GET");
      await res.body?.cancel();
    }
  }
  const long = handler(get(`/?x=${"a".repeat(3000)}`));
  assert.equal(long.status, 414);
  await long.body?.cancel();
});

Deno.test("handler without a token answers only to loopback host names (DNS rebinding)", async () => {
  const { handler } = fixture();
  for (const host of ["127.0.0.1:8123", "localhost:8123", "[::1]:8123", "127.0.0.1"]) {
    const res = handler(get("/", { headers: { host } }));
    assert.equal(res.status, 200, host);
    await res.body?.cancel();
  }
  for (const host of ["evil.example:8123", "192.168.1.20:8123", "127.0.0.1.evil.example"]) {
    const res = handler(get("/", { headers: { host } }));
    assert.equal(res.status, 403, host);
    await res.body?.cancel();
  }
});

// ---------------------------------------------------------------------------------------------
// Token

Deno.test("handler with a token answers 401 to every request without the right one", async () => {
  const { handler } = fixture({ token: TOKEN });
  const base = "http://192.168.1.20:8123";
  const refused: [string, RequestInit][] = [
    ["/", {}],
    ["/events", {}],
    ["/app.js", {}],
    ["/snapshot", {}],
    ["/nowhere", {}],
    ["/?token=wrong", {}],
    [`/?token=${TOKEN}x`, {}],
    [`/?token=${TOKEN.slice(0, -1)}`, {}],
    ["/", { headers: { cookie: "p2p_share_web_8123=wrong" } }],
    ["/", { headers: { cookie: `p2p_share_web_9999=${TOKEN}` } }],
    ["/", { headers: { authorization: "Bearer wrong" } }],
    ["/", { method: "POST" }],
  ];
  for (const [path, init] of refused) {
    const res = handler(get(path, init, base));
    assert.equal(res.status, 401, `${init.method ?? "GET"} ${path} ${JSON.stringify(init)}`);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.match(await res.text(), /token/);
  }
});

Deno.test("handler accepts the token in the query, then as a cookie, or as a bearer header", async () => {
  const { handler } = fixture({ token: TOKEN });
  const base = "http://192.168.1.20:8123";
  const first = handler(get(`/?token=${TOKEN}`, {}, base));
  assert.equal(first.status, 200);
  await first.body?.cancel();
  const cookie = first.headers.get("set-cookie") ?? "";
  assert.match(cookie, new RegExp(`^p2p_share_web_8123=${TOKEN};`));
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);

  const pair = cookie.split(";")[0];
  for (const path of ["/app.js", "/app.css", "/snapshot", "/"]) {
    const res = handler(get(path, { headers: { cookie: `other=1; ${pair}` } }, base));
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get("set-cookie"), null, "the cookie is only set from the query");
    await res.body?.cancel();
  }
  const bearer = handler(get("/snapshot", { headers: { authorization: `Bearer ${TOKEN}` } }, base));
  assert.equal(bearer.status, 200);
  await bearer.body?.cancel();
  // Any Host is fine once the token is right: the monitor is meant to be reached from the LAN.
  const events = handler(get(`/events?token=${TOKEN}`, {}, base));
  assert.equal(events.status, 200);
  await events.body?.cancel();
  const post = handler(get(`/?token=${TOKEN}`, { method: "POST" }, base));
  assert.equal(post.status, 405);
  await post.body?.cancel();
});

Deno.test("auth helpers: constant-time compare, loopback names, token rules", () => {
  assert.equal(constantTimeEqual("abc", "abc"), true);
  assert.equal(constantTimeEqual("abc", "abd"), false);
  assert.equal(constantTimeEqual("abc", "abcd"), false);
  assert.equal(constantTimeEqual("", ""), true);
  assert.equal(constantTimeEqual("", "a"), false);
  assert.equal(constantTimeEqual("é", "e\u0301"), false);

  for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"]) {
    assert.equal(isLoopbackHost(host), true, host);
  }
  for (const host of ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com", "128.0.0.1"]) {
    assert.equal(isLoopbackHost(host), false, host);
  }
  assert.equal(isLoopbackHostHeader("127.0.0.1:80"), true);
  assert.equal(isLoopbackHostHeader("[::1]:80"), true);
  assert.equal(isLoopbackHostHeader(null), false);
  assert.equal(isLoopbackHostHeader("127.0.0.1:80:90"), false);

  const token = generateToken();
  assert.match(token, /^[A-Za-z0-9_-]{32}$/);
  assert.notEqual(generateToken(), token);
  assert.equal(tokenProblem(token), undefined);
  assert.match(tokenProblem("short") ?? "", /at least 16/);
  assert.match(tokenProblem("has spaces in it, sadly") ?? "", /only letters/);
  assert.match(tokenProblem("x".repeat(200)) ?? "", /at most/);
});

// ---------------------------------------------------------------------------------------------
// Options

Deno.test("parseWebListen() takes [HOST:]PORT and defaults to loopback", () => {
  assert.deepEqual(parseWebListen("8080"), { host: "127.0.0.1", port: 8080 });
  assert.deepEqual(parseWebListen("0"), { host: "127.0.0.1", port: 0 });
  assert.deepEqual(parseWebListen("0.0.0.0:9000"), { host: "0.0.0.0", port: 9000 });
  assert.deepEqual(parseWebListen("localhost:0"), { host: "localhost", port: 0 });
  assert.deepEqual(parseWebListen("[::1]:8080"), { host: "::1", port: 8080 });
  for (const bad of ["", "abc", "70000", "1.2.3.4:", ":80", "::1:80", "host:port", "-1"]) {
    assert.throws(() => parseWebListen(bad), RangeError, bad);
  }
});

Deno.test("webSettings() reads --web and --web-token, refusing bad values as usage errors", () => {
  const parse = (argv: string[]) => parseCommandArgs(argv, WEB_OPTIONS, "seed");
  assert.equal(webSettings(parse([]), "seed"), undefined);
  assert.deepEqual(webSettings(parse(["--web", "0"]), "seed"), { listen: "0" });
  assert.deepEqual(
    webSettings(parse(["--web", "0.0.0.0:8080", "--web-token", TOKEN]), "seed"),
    { listen: "0.0.0.0:8080", token: TOKEN },
  );
  assert.throws(() => webSettings(parse(["--web", "nope"]), "seed"), UsageError);
  assert.throws(() => webSettings(parse(["--web", "0", "--web-token", "short"]), "seed"), {
    name: "UsageError",
    message: /seed: --web-token: the token must be at least 16/,
  });
  assert.throws(() => webSettings(parse(["--web-token", TOKEN]), "seed"), {
    name: "UsageError",
    message: /--web-token needs --web/,
  });
});

// ---------------------------------------------------------------------------------------------
// Server-sent events

Deno.test("sseFrame() frames events the way EventSource reads them", () => {
  assert.equal(sseFrame({ data: "x" }), "data: x\n\n");
  assert.equal(sseFrame({ event: "tick", data: '{"t":1}' }), 'event: tick\ndata: {"t":1}\n\n');
  assert.equal(
    sseFrame({ event: "hello", data: "a\nb\r\nc", retryMs: 2000 }),
    "retry: 2000\nevent: hello\ndata: a\ndata: b\ndata: c\n\n",
  );
  assert.throws(() => sseFrame({ event: "a\nb", data: "" }), RangeError);
  assert.equal(sseComment("ping\nping"), ": ping ping\n\n");
  const text = sseFrame({ event: "hello", data: "a\nb", retryMs: 5 }) + sseComment("x") +
    sseFrame({ data: "plain" }) + "event: partial\ndata: cut";
  assert.deepEqual(parseSse(text), {
    events: [
      { event: "hello", data: "a\nb", retryMs: 5 },
      { event: "message", data: "plain" },
    ],
    rest: "event: partial\ndata: cut",
  });
});

Deno.test("GET /events streams hello, then snapshots, ticks, pushed events and bye", async () => {
  const { handler, hub, share, advance } = fixture({ pieces: 4000 });
  share.peers = [fakePeer("10.0.0.7:5001", { piecesHeld: 4000, downloadRateBytesPerSec: 1000 })];
  share.downloadRate = 1000;
  share.setDone(1000, 1);
  hub.tick(); // the timer's first tick, before any page
  const res = handler(get("/events"));
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.ok(res.body);
  const sse = new SseReader(res.body);
  try {
    const [hello] = await sse.until("hello");
    assert.equal(sse.events[0].event, "hello", "hello comes first");
    assert.equal(hello.retryMs, 2000);
    const msg = JSON.parse(hello.data) as HelloMessage;
    const view = msg.view as ShareView;
    assert.equal(view.role, "download");
    assert.equal(view.piecesDone, 1000);
    assert.equal(view.peerCount, 1);
    assert.equal(view.peers[0].address, "10.0.0.7:5001");
    let page = applyPieceMap(view.pieceMap ?? "", view.piecesTotal);
    assert.deepEqual(page, share.states);
    assert.deepEqual(msg.history, [[0, 1000, 0]]);
    assert.equal(hub.clientCount, 1);

    // Progress: a snapshot whose piece map is a delta the page applies.
    share.setDone(1001, 2);
    advance(500);
    hub.tick();
    const [update] = await sse.until("snapshot");
    const snapshot = JSON.parse(update.data) as SnapshotMessage;
    assert.equal(snapshot.t, 0.5);
    const next = snapshot.view as ShareView;
    assert.equal(next.piecesDone, 1001);
    assert.equal(next.pieceMap, "d:2rs,1rt.2", "only what changed travels");
    page = applyPieceMap(next.pieceMap ?? "", next.piecesTotal, { base: page });
    assert.deepEqual(page, share.states);

    // Nothing changed: a tick only.
    advance(500);
    hub.tick();
    const [tick] = await sse.until("tick");
    assert.deepEqual(JSON.parse(tick.data), { t: 1 });

    // Events are pushed at once; progress events are not (snapshots carry progress).
    hub.emit({
      event: "progress",
      piecesDone: 1001,
      piecesTotal: 4000,
      bytesDone: 1,
      bytesTotal: 2,
      rateBytesPerSec: 0,
      etaSeconds: null,
      peers: 1,
      uploadRateBytesPerSec: 0,
      bytesDownloaded: 1,
      bytesUploaded: 0,
    });
    hub.emit({ event: "peer_connected", peer: "10.0.0.8:6000", direction: "in" });
    hub.emit({ event: "warning", message: "x".repeat(5000) });
    await sse.until("p2p", 2);
    const pushed = sse.json<StampedEvent>("p2p");
    assert.deepEqual(pushed.map((e) => e.event.event), ["peer_connected", "warning"]);
    assert.equal(pushed[0].time, 1_700_000_000_000);
    assert.equal(pushed[0].event.peer, "10.0.0.8:6000");
    assert.ok(String(pushed[1].event.message).length <= 303, "long text is cut");

    // Closing sends the last state and bye, and ends the stream.
    share.setDone(4000);
    hub.close();
    await sse.until("bye");
    await sse.until("never-sent");
    assert.equal(sse.ended, true);
    const last = sse.json<SnapshotMessage>("snapshot").at(-1)?.view as ShareView;
    assert.equal(last.complete, true);
    assert.equal(hub.clientCount, 0);
  } finally {
    await sse.cancel();
  }
});

Deno.test("a page that connects between ticks stays in step with the deltas that follow", async () => {
  const { handler, hub, share } = fixture({ pieces: 64 });
  share.setDone(0, 4);
  hub.tick();
  // Changes after the last tick but before the page connects must not be lost or doubled.
  share.setDone(4, 4);
  const first = new SseReader(handler(get("/events")).body!);
  const second = new SseReader(handler(get("/events")).body!);
  try {
    const pages: Uint8Array[] = [];
    for (const sse of [first, second]) {
      const [hello] = await sse.until("hello");
      const view = (JSON.parse(hello.data) as HelloMessage).view as ShareView;
      pages.push(applyPieceMap(view.pieceMap ?? "", view.piecesTotal));
    }
    for (let step = 1; step <= 5; step++) {
      share.setDone(step * 10, step % 2 === 0 ? 0 : 3);
      hub.tick();
      for (const [i, sse] of [first, second].entries()) {
        const updates = await sse.until("snapshot", step);
        const view = (JSON.parse(updates[step - 1].data) as SnapshotMessage).view as ShareView;
        pages[i] = applyPieceMap(view.pieceMap ?? "d:", view.piecesTotal, { base: pages[i] });
        assert.deepEqual(pages[i], share.states, `page ${i} after step ${step}`);
      }
    }
  } finally {
    await first.cancel();
    await second.cancel();
  }
  assert.equal(hub.clientCount, 0, "a page that goes away is forgotten");
  hub.close();
});

Deno.test("hello carries the recent events, the rate history and the download's summary", async () => {
  const { handler, hub, share, advance } = fixture({ pieces: 4 });
  for (let i = 0; i < 4; i++) {
    share.downloadRate = 100 * i;
    share.setDone(i);
    hub.tick();
    advance(500);
  }
  for (let i = 0; i < 150; i++) {
    hub.emit({ event: "piece_failed", index: i, peer: "10.0.0.9:1", reason: "bad hash" });
  }
  hub.emit({
    event: "complete",
    path: "downloads/x",
    bytes: 10,
    piecesFetched: 4,
    bytesFetched: 10,
    bytesDownloaded: 10,
    bytesUploaded: 0,
    piecesTotal: 4,
    seconds: 1.5,
  });
  const sse = new SseReader(handler(get("/events")).body!);
  try {
    const [hello] = await sse.until("hello");
    const msg = JSON.parse(hello.data) as HelloMessage;
    assert.deepEqual(msg.history.map((s) => s[1]), [0, 100, 200, 300]);
    assert.equal(msg.events.length, 100, "the last 100 events");
    assert.equal(msg.events.at(-1)?.event.event, "complete");
    assert.equal(msg.summary?.event.seconds, 1.5);
  } finally {
    await sse.cancel();
  }
  hub.close();
});

Deno.test("a page that stops reading is dropped instead of buffered without bound", async () => {
  const { handler, hub } = fixture({ pieces: 4 });
  const res = handler(get("/events"));
  assert.equal(hub.clientCount, 1);
  let sent = 0;
  while (hub.clientCount > 0 && sent < 100_000) {
    hub.emit({ event: "warning", message: "w".repeat(300) });
    sent++;
  }
  assert.equal(hub.clientCount, 0);
  // Each event frame is 300 characters of message plus some JSON: about 4 MiB went unread.
  assert.ok(sent * 300 < MAX_QUEUED_BYTES && sent * 600 > MAX_QUEUED_BYTES, `${sent} events`);
  await assert.rejects(res.text(), /too slow/);
  hub.close();
});

Deno.test("the tracker view lists every swarm with its counts", async () => {
  const swarms: TrackerSnapshot["swarms"] = [
    { infoHash: "a".repeat(64), name: "quiet.iso", seeders: 0, leechers: 1, completed: 0 },
    { infoHash: "b".repeat(64), seeders: 3, leechers: 4, completed: 9 },
  ];
  const hub = new MonitorHub({ snapshot: () => ({ role: "tracker", swarms }) });
  const handler = createWebHandler(hub);
  const res = handler(get("/snapshot"));
  assert.deepEqual(await res.json(), {
    role: "tracker",
    swarmCount: 2,
    seeders: 3,
    leechers: 5,
    swarms: [swarms[1], swarms[0]],
  });
  hub.close();
  // After close a page gets bye at once.
  const late = new SseReader(handler(get("/events")).body!);
  try {
    await late.until("bye");
    assert.deepEqual(late.events.map((e) => e.event), ["bye"]);
  } finally {
    await late.cancel();
  }
});

Deno.test("a snapshot source that throws keeps the last good state and never breaks the stream", async () => {
  const share = new FakeShare(8);
  let broken = false;
  const hub = new MonitorHub({
    snapshot: () => {
      if (broken) throw new Error("boom");
      return share.snapshot();
    },
  });
  const handler = createWebHandler(hub);
  hub.tick();
  broken = true;
  const sse = new SseReader(handler(get("/events")).body!);
  try {
    const [hello] = await sse.until("hello");
    assert.equal((JSON.parse(hello.data) as HelloMessage).view?.role, "download");
    hub.tick();
    const snap = handler(get("/snapshot"));
    assert.equal(snap.status, 503);
    await snap.body?.cancel();
  } finally {
    await sse.cancel();
  }
  hub.close();
});
