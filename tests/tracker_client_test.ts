import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { trackerCommand } from "../lib/cli/tracker_cmd.ts";
import { UsageError } from "../lib/errors.ts";
import type { EventSink, P2PEvent } from "../lib/events.ts";
import { SwarmTable } from "../lib/swarm_table.ts";
import {
  announce,
  type AnnounceParams,
  Announcer,
  normalizeTrackerUrl,
  type TrackerPeer,
} from "../lib/tracker_client.ts";
import { createTrackerHandler } from "../lib/tracker_server.ts";

const HASH = "5e".repeat(32);

function peerId(n: number): string {
  return n.toString(16).padStart(40, "0");
}

function params(overrides: Partial<AnnounceParams> = {}): AnnounceParams {
  return {
    infoHash: HASH,
    peerId: peerId(1),
    port: 6881,
    left: 10,
    uploaded: 0,
    downloaded: 0,
    ...overrides,
  };
}

/** Rejects when `promise` takes longer than `ms`; clears its timer either way. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Collects events; lets a test wait for one that matches. */
class RecordingSink implements EventSink {
  events: P2PEvent[] = [];
  #waiters: { match: (e: P2PEvent) => boolean; resolve: (e: P2PEvent) => void }[] = [];

  emit(event: P2PEvent): void {
    this.events.push(event);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.match(event)) return true;
      w.resolve(event);
      return false;
    });
  }

  waitFor(match: (e: P2PEvent) => boolean, ms: number, what: string): Promise<P2PEvent> {
    const seen = this.events.find(match);
    if (seen) return Promise.resolve(seen);
    const { promise, resolve } = Promise.withResolvers<P2PEvent>();
    this.#waiters.push({ match, resolve });
    return within(promise, ms, what);
  }

  messages(kind: "warning" | "info"): string[] {
    return this.events.flatMap((e) => e.event === kind ? [e.message] : []);
  }
}

interface Seen {
  query: URLSearchParams;
  atMs: number;
}

/** A tracker on 127.0.0.1 that records each request; `respond` may replace the real handler. */
class TestTracker {
  table = new SwarmTable();
  requests: Seen[] = [];
  #controller = new AbortController();
  #server: Deno.HttpServer<Deno.NetAddr>;
  #waiters: { count: number; resolve: () => void }[] = [];
  #ready: Promise<Deno.NetAddr>;

  constructor(
    options: {
      port?: number;
      intervalSec?: number;
      respond?: (req: Request, n: number) => Response | Promise<Response> | undefined;
    } = {},
  ) {
    const handler = createTrackerHandler(this.table, { intervalSec: options.intervalSec ?? 60 });
    const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
    this.#ready = promise;
    this.#server = Deno.serve({
      hostname: "127.0.0.1",
      port: options.port ?? 0,
      signal: this.#controller.signal,
      onListen: resolve,
    }, (req, info) => {
      this.requests.push({ query: new URL(req.url).searchParams, atMs: performance.now() });
      const n = this.requests.length;
      this.#waiters = this.#waiters.filter((w) => {
        if (n < w.count) return true;
        w.resolve();
        return false;
      });
      return options.respond?.(req, n) ?? handler(req, info.remoteAddr);
    });
  }

  async url(): Promise<string> {
    return `http://127.0.0.1:${(await this.#ready).port}/announce`;
  }

  /** Resolves once `count` requests in all have arrived. */
  requestCount(count: number, ms: number): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiters.push({ count, resolve });
    return within(promise, ms, `${count} requests`);
  }

  events(): string[] {
    return this.requests.map((r) => r.query.get("event") ?? "");
  }

  async close(): Promise<void> {
    this.#controller.abort();
    await this.#server.finished;
  }
}

/** A port nothing listens on (just closed), so connecting is refused at once. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

Deno.test("normalizeTrackerUrl() turns the forms people type into the announce URL", () => {
  const cases: [string, string][] = [
    ["127.0.0.1:7000", "http://127.0.0.1:7000/announce"],
    ["http://127.0.0.1:7000", "http://127.0.0.1:7000/announce"],
    ["http://127.0.0.1:7000/", "http://127.0.0.1:7000/announce"],
    ["http://127.0.0.1:7000/announce", "http://127.0.0.1:7000/announce"],
    ["  tracker.example:8080  ", "http://tracker.example:8080/announce"],
    ["tracker.example", "http://tracker.example:7000/announce"],
    ["tracker.example:80/announce", "http://tracker.example/announce"],
    ["[::1]:7000", "http://[::1]:7000/announce"],
    ["https://t.example/p2p/announce", "https://t.example/p2p/announce"],
    ["HTTP://T.EXAMPLE:9000", "http://t.example:9000/announce"],
  ];
  for (const [input, expected] of cases) assert.equal(normalizeTrackerUrl(input), expected, input);
});

Deno.test("normalizeTrackerUrl() refuses what is not a tracker address with a UsageError", () => {
  const cases: [string, RegExp][] = [
    ["", /empty/],
    ["   ", /empty/],
    ["127.0.0.1:99999", /invalid tracker address/],
    ["127.0.0.1:0", /port 0/],
    ["ftp://h:21", /must use http or https/],
    ["udp://tracker.example:1337", /must use http or https/],
    ["http://user:pw@h:1/announce", /user name or password/],
    ["http://h:1/announce?x=1", /query or fragment/],
    ["http://h:1/other", /expected \/announce/],
    ["http://", /invalid tracker address/],
  ];
  for (const [input, message] of cases) {
    assert.throws(() => normalizeTrackerUrl(input), (err: unknown) => {
      assert.ok(err instanceof UsageError, input);
      assert.match(err.message, message, input);
      return true;
    });
  }
});

Deno.test("announce() round trip: a leecher gets the seeder at the address the tracker saw", async () => {
  const tracker = new TestTracker();
  try {
    const url = await tracker.url();
    const seeder = await announce(
      url,
      params({ peerId: peerId(1), port: 7001, left: 0, name: "a\u0007b.txt" }),
      {
        event: "started",
      },
    );
    assert.deepEqual(seeder, {
      intervalSec: 60,
      minIntervalSec: 30,
      seeders: 1,
      leechers: 0,
      peers: [],
    });
    const leecher = await announce(url, params({ peerId: peerId(2), port: 7002 }), {
      event: "started",
      numwant: 5,
    });
    assert.deepEqual(leecher.peers, [{ host: "127.0.0.1", port: 7001, peerId: peerId(1) }]);
    assert.equal(leecher.seeders, 1);
    assert.equal(leecher.leechers, 1);
    const sent = tracker.requests[1].query;
    assert.equal(sent.get("numwant"), "5");
    assert.equal(sent.get("event"), "started");
    assert.equal(
      tracker.table.scrape(HASH).name,
      "a?b.txt",
      "control characters are replaced before sending",
    );
  } finally {
    await tracker.close();
  }
});

Deno.test("announce() turns a tracker's error into a clear message", async () => {
  const tracker = new TestTracker();
  try {
    const url = await tracker.url();
    await assert.rejects(
      () => announce(url, params({ infoHash: "abc" })),
      {
        message:
          `tracker ${url} refused the announce: 400 info_hash must be 64 hex characters, got 3 characters`,
      },
    );
  } finally {
    await tracker.close();
  }
});

Deno.test("announce() says a tracker is unreachable", async () => {
  const url = `http://127.0.0.1:${closedPort()}/announce`;
  await assert.rejects(() => announce(url, params()), (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.match(err.message, new RegExp(`^tracker ${url}: unreachable \\(.+\\)$`));
    assert.doesNotMatch(err.message, /info_hash=/, "the message does not repeat the query");
    return true;
  });
});

Deno.test("announce() checks the answer: size, JSON, fields, and drops unusable peers", async () => {
  const answers: (() => Response)[] = [
    () => new Response("x".repeat(300 * 1024)),
    () =>
      new Response(
        new ReadableStream({
          start(c) {
            for (let i = 0; i < 40; i++) c.enqueue(new Uint8Array(8 * 1024));
            c.close();
          },
        }),
      ),
    () => new Response("not json"),
    () => Response.json([1, 2]),
    () => Response.json({ interval: 0, peers: [] }),
    () => Response.json({ interval: 30 }),
    () => new Response("upstream broke", { status: 502 }),
    () =>
      Response.json({
        interval: 999_999,
        minInterval: 5,
        complete: -3,
        incomplete: 2,
        peers: [
          { ip: "10.0.0.5", port: 6000, peerId: peerId(5) },
          { ip: "evil.example", port: 6000 },
          { ip: "10.0.0.6", port: 0 },
          { ip: "10.0.0.7", port: 70000 },
          { ip: "10.0.0.8", port: "6000" },
          { ip: "::ffff:10.0.0.9", port: 6001, peerId: "nothex" },
          { ip: "10.0.0.10", port: 6002, peerId: peerId(1) },
          null,
          "10.0.0.11:6003",
        ],
      }),
  ];
  const tracker = new TestTracker({ respond: (_req, n) => answers[n - 1]() });
  try {
    const url = await tracker.url();
    const failures = [
      /answer too large \(307200 bytes/,
      /answer too large \(over 262144 bytes\)/,
      /answer is not JSON/,
      /not a JSON object/,
      /no valid interval/,
      /no peers list/,
      /refused the announce: 502/,
    ];
    for (const message of failures) {
      await assert.rejects(() => announce(url, params()), { message }, String(message));
    }
    const checked = await announce(url, params({ peerId: peerId(1) }));
    assert.deepEqual(checked, {
      intervalSec: 3600,
      minIntervalSec: 5,
      seeders: 0,
      leechers: 2,
      peers: [
        { host: "10.0.0.5", port: 6000, peerId: peerId(5) },
        { host: "10.0.0.9", port: 6001 },
      ],
    });
  } finally {
    await tracker.close();
  }
});

Deno.test("announce() gives up after its timeout and can be aborted", async () => {
  const release = Promise.withResolvers<void>();
  const tracker = new TestTracker({
    respond: async () => {
      await release.promise;
      return Response.json({ interval: 1, peers: [] });
    },
  });
  try {
    const url = await tracker.url();
    await assert.rejects(() => announce(url, params(), { timeoutMs: 100 }), {
      message: `tracker ${url}: no answer within 100 ms`,
    });
    const controller = new AbortController();
    const pending = announce(url, params(), { signal: controller.signal });
    controller.abort(new Error("shutting down"));
    await assert.rejects(pending, { message: "shutting down" });
  } finally {
    release.resolve();
    await tracker.close();
  }
});

Deno.test("Announcer registers, hands peers over, and says goodbye with stopped", async () => {
  const tracker = new TestTracker();
  const sink = new RecordingSink();
  try {
    const url = await tracker.url();
    await announce(url, params({ peerId: peerId(9), port: 7009, left: 0 }), { event: "started" });
    const got = Promise.withResolvers<TrackerPeer[]>();
    const announcer = new Announcer({
      urls: [url.replace("/announce", ""), url],
      params: () => params({ peerId: peerId(1), port: 7001 }),
      sink,
      onPeers: got.resolve,
    });
    assert.deepEqual(announcer.urls, [url], "duplicates removed after normalising");
    const stop = new AbortController();
    const running = announcer.start(stop.signal);
    try {
      assert.deepEqual(await within(got.promise, 5000, "peers"), [{
        host: "127.0.0.1",
        port: 7009,
        peerId: peerId(9),
      }]);
      await sink.waitFor(
        (e) => e.event === "info" && /announced to tracker/.test(e.message),
        5000,
        "info",
      );
      assert.equal(tracker.table.peerCount, 2);
    } finally {
      await within(announcer.stop(), 5000, "stop()");
      await running;
    }
    assert.deepEqual(tracker.events().slice(1), ["started", "stopped"]);
    assert.equal(tracker.table.peerCount, 1, "stopped removed us at once");
    assert.deepEqual(sink.messages("warning"), []);
    await announcer.stop();
    assert.equal(tracker.requests.length, 3, "a second stop() sends nothing more");
  } finally {
    await tracker.close();
  }
});

Deno.test("Announcer re-announces at the interval the tracker asks for", async () => {
  const tracker = new TestTracker({ intervalSec: 1 });
  const sink = new RecordingSink();
  try {
    const announcer = new Announcer({ urls: [await tracker.url()], params: () => params(), sink });
    const stop = new AbortController();
    const running = announcer.start(stop.signal);
    try {
      await tracker.requestCount(2, 5000);
    } finally {
      await announcer.stop();
      await running;
    }
    assert.deepEqual(tracker.events().slice(0, 2), ["started", ""]);
    const gapMs = tracker.requests[1].atMs - tracker.requests[0].atMs;
    assert.ok(gapMs >= 900, `re-announced after ${gapMs} ms, expected about 1000`);
  } finally {
    await tracker.close();
  }
});

Deno.test("Announcer: tracker down -> one warning, backoff, then recovery with one info line", async () => {
  const port = closedPort();
  const url = `http://127.0.0.1:${port}/announce`;
  const sink = new RecordingSink();
  const peers = Promise.withResolvers<TrackerPeer[]>();
  const announcer = new Announcer({
    urls: [url],
    params: () => params({ peerId: peerId(1) }),
    sink,
    onPeers: peers.resolve,
    backoffInitialMs: 10,
    backoffMaxMs: 40,
  });
  const stop = new AbortController();
  const running = announcer.start(stop.signal);
  let tracker: TestTracker | undefined;
  try {
    const warning = await sink.waitFor((e) => e.event === "warning", 5000, "warning");
    assert.match(
      (warning as { message: string }).message,
      new RegExp(
        `^tracker ${url}: unreachable \\(.+\\); retrying with backoff, carrying on with known peers$`,
      ),
    );
    tracker = new TestTracker({ port });
    // Listed before the event loop turns, so the announcer's first answer surely includes it.
    tracker.table.announce({
      infoHash: HASH,
      peerId: peerId(7),
      ip: "127.0.0.1",
      port: 7007,
      left: 0,
      uploaded: 0,
      downloaded: 0,
      event: "started",
      numwant: 0,
    }, performance.now());
    await sink.waitFor(
      (e) => e.event === "info" && /reachable again/.test(e.message),
      5000,
      "recovery",
    );
    assert.deepEqual(await within(peers.promise, 5000, "peers"), [{
      host: "127.0.0.1",
      port: 7007,
      peerId: peerId(7),
    }]);
    assert.equal(sink.messages("warning").length, 1, "one warning for the whole outage");
    assert.deepEqual(sink.messages("info"), [`tracker ${url} is reachable again (1 peer)`]);
    assert.equal(tracker.events()[0], "started", "the first successful announce is a started");
  } finally {
    await announcer.stop();
    await running;
    await tracker?.close();
  }
});

Deno.test("Announcer backs off exponentially while the tracker fails, and warns once", async () => {
  const failFirst = 5;
  const tracker = new TestTracker({
    respond: (_req, n) =>
      n <= failFirst ? Response.json({ error: "overloaded" }, { status: 503 }) : undefined,
  });
  const sink = new RecordingSink();
  const announcer = new Announcer({
    urls: [await tracker.url()],
    params: () => params(),
    sink,
    backoffInitialMs: 20,
    backoffMaxMs: 80,
  });
  const stop = new AbortController();
  const running = announcer.start(stop.signal);
  try {
    await sink.waitFor(
      (e) => e.event === "info" && /reachable again/.test(e.message),
      5000,
      "recovery",
    );
  } finally {
    await announcer.stop();
    await running;
    await tracker.close();
  }
  const times = tracker.requests.map((r) => r.atMs);
  const expectedMs = [20, 40, 80, 80, 80];
  for (let i = 0; i < failFirst; i++) {
    const gap = times[i + 1] - times[i];
    assert.ok(
      gap >= expectedMs[i] - 2,
      `wait ${i + 1} was ${gap.toFixed(1)} ms, expected at least ${expectedMs[i]}`,
    );
  }
  assert.deepEqual(sink.messages("warning"), [
    `tracker ${await tracker
      .url()} refused the announce: 503 overloaded; retrying with backoff, carrying on with known peers`,
  ]);
  assert.deepEqual(tracker.events().slice(0, failFirst + 2), [
    ...Array(failFirst + 1).fill("started"),
    "stopped",
  ]);
});

Deno.test("Announcer.completed() tells the tracker at once", async () => {
  const tracker = new TestTracker();
  const sink = new RecordingSink();
  let left = 10;
  const announcer = new Announcer({
    urls: [await tracker.url()],
    params: () => params({ left }),
    sink,
  });
  const stop = new AbortController();
  const running = announcer.start(stop.signal);
  try {
    await tracker.requestCount(1, 5000);
    left = 0;
    await within(announcer.completed(), 5000, "completed()");
    assert.deepEqual(tracker.events().slice(0, 2), ["started", "completed"]);
    assert.deepEqual(tracker.table.scrape(HASH), {
      infoHash: HASH,
      seeders: 1,
      leechers: 0,
      completed: 1,
    });
  } finally {
    await announcer.stop();
    await running;
    await tracker.close();
  }
});

Deno.test("Announcer: the signal ends announcing; stop() is quick even when the tracker is gone", async () => {
  const sink = new RecordingSink();
  const announcer = new Announcer({
    urls: [`127.0.0.1:${closedPort()}`],
    params: () => params(),
    sink,
    backoffInitialMs: 10_000,
  });
  const stop = new AbortController();
  const running = announcer.start(stop.signal);
  await sink.waitFor((e) => e.event === "warning", 5000, "warning");
  stop.abort();
  await within(running, 1000, "the loop to end on abort");
  await within(announcer.completed(), 1000, "completed() after the end");
  const started = performance.now();
  await announcer.stop();
  assert.ok(performance.now() - started < 2500, "stop() is bounded");
  assert.throws(() => announcer.start(new AbortController().signal), /called twice/);
});

Deno.test("Announcer.stop() before start() sends nothing", async () => {
  const tracker = new TestTracker();
  try {
    const announcer = new Announcer({
      urls: [await tracker.url()],
      params: () => params(),
      sink: new RecordingSink(),
    });
    await announcer.completed();
    await announcer.stop();
    assert.equal(tracker.requests.length, 0);
  } finally {
    await tracker.close();
  }
});

Deno.test("Announcer refuses a bad tracker address up front", () => {
  assert.throws(
    () => new Announcer({ urls: ["udp://x:1"], params: () => params(), sink: new RecordingSink() }),
    UsageError,
  );
});

Deno.test("the tracker command serves announces, refuses a port in use, and returns 0 when stopped", async () => {
  const sink = new RecordingSink();
  const stop = new AbortController();
  const run = trackerCommand.run(["--port", "0", "--host", "127.0.0.1", "--interval", "5"], {
    sink,
    signal: stop.signal,
  });
  try {
    const listening = await sink.waitFor((e) => e.event === "listening", 5000, "listening");
    assert.ok(listening.event === "listening" && listening.service === "tracker");
    const { port, url } = listening;
    assert.equal(url, `http://127.0.0.1:${port}/announce`);

    const seeder = new Announcer({
      urls: [`127.0.0.1:${port}`],
      params: () => params({ peerId: peerId(1), port: 7001, left: 0 }),
      sink,
    });
    const seeding = seeder.start(stop.signal);
    await sink.waitFor(
      (e) => e.event === "info" && /announced to tracker/.test(e.message),
      5000,
      "seeder registered",
    );
    const leecher = await announce(url ?? "", params({ peerId: peerId(2), port: 7002 }), {
      event: "started",
    });
    assert.equal(leecher.intervalSec, 5);
    assert.deepEqual(leecher.peers, [{ host: "127.0.0.1", port: 7001, peerId: peerId(1) }]);
    await seeder.stop();
    await seeding;
    const stats = await (await fetch(`http://127.0.0.1:${port}/stats`)).json();
    assert.deepEqual(stats.swarms, [{ infoHash: HASH, seeders: 0, leechers: 1, completed: 0 }]);

    await assert.rejects(
      () =>
        trackerCommand.run(["--port", String(port), "--host", "127.0.0.1"], {
          sink,
          signal: stop.signal,
        }),
      { message: `tracker: cannot listen on 127.0.0.1:${port}: address already in use` },
    );
  } finally {
    stop.abort();
  }
  assert.equal(await within(run, 5000, "the tracker to stop"), 0);
});

Deno.test("the tracker command refuses bad options with a UsageError", async () => {
  const cases: [string[], RegExp][] = [
    [["--interval", "0"], /--interval must be an integer from 1/],
    [["--port", "70000"], /--port must be an integer/],
    [["--allow-ip-from", "my-router"], /--allow-ip-from needs an IP address/],
    [["--host", ""], /--host must not be empty/],
    [["extra"], /unexpected argument/],
    [["--bogus"], /bogus/],
  ];
  for (const [argv, message] of cases) {
    await assert.rejects(
      () => trackerCommand.run(argv, { sink: new RecordingSink(), signal: AbortSignal.abort() }),
      (err: unknown) => {
        assert.ok(err instanceof UsageError, argv.join(" "));
        assert.match(err.message, message, argv.join(" "));
        return true;
      },
    );
  }
  assert.match(trackerCommand.usage, /--allow-ip-from ADDR/);
  assert.match(trackerCommand.usage, /--interval SECONDS/);
});

Deno.test("main.ts tracker prints a listening line, serves, and exits 0 on SIGTERM", async () => {
  const main = fileURLToPath(new URL("../main.ts", import.meta.url));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      main,
      "tracker",
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--json",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let text = "";
    while (!text.includes("\n")) {
      const { done, value } = await within(reader.read(), 20_000, "the listening line");
      if (done) break;
      text += value;
    }
    const event = JSON.parse(text.split("\n")[0]);
    assert.equal(event.event, "listening");
    assert.equal(event.service, "tracker");
    const res = await fetch(`http://127.0.0.1:${event.port}/announce?info_hash=short`);
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /info_hash must be 64 hex/);
    const ok = await announce(
      `http://127.0.0.1:${event.port}/announce`,
      params(),
    );
    assert.deepEqual(ok.peers, []);
  } finally {
    child.kill("SIGTERM");
    const status = await within(child.status, 10_000, "the child to exit");
    await reader.cancel();
    const errors = await stderr;
    assert.equal(status.code, 0, errors);
  }
});
