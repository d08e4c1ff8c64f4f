/**
 * startWebMonitor() on real sockets (127.0.0.1, port 0): the listening event, the token rule,
 * the event stream over HTTP, a clean stop with a page still connected, and listen errors.
 */

import assert from "node:assert/strict";
import { startWebMonitor, type WebMonitor } from "../lib/cli/web.ts";
import type { P2PEvent } from "../lib/events.ts";
import type { HelloMessage, ShareView } from "../lib/web/view.ts";
import { FakeShare, SseReader } from "./web_kit.ts";

const TOKEN = "a-token-long-enough-0123456789";

function collect(): { events: P2PEvent[]; emit(event: P2PEvent): void } {
  const events: P2PEvent[] = [];
  return { events, emit: (event) => events.push(event) };
}

async function status(url: string, init?: RequestInit): Promise<number> {
  const res = await fetch(url, init);
  await res.body?.cancel();
  return res.status;
}

Deno.test("startWebMonitor() serves on loopback, streams events and stops with open pages", async () => {
  const share = new FakeShare(16, 1024);
  share.setDone(4);
  const sink = collect();
  const controller = new AbortController();
  const monitor: WebMonitor = await startWebMonitor({
    listen: "127.0.0.1:0",
    source: share,
    signal: controller.signal,
    sink,
    intervalMs: 50,
  });
  const port = Number(new URL(monitor.url).port);
  try {
    assert.equal(monitor.url, `http://127.0.0.1:${port}/`);
    assert.deepEqual(sink.events, [
      { event: "listening", host: "127.0.0.1", port, service: "web", url: monitor.url },
    ]);
    assert.equal(await status(monitor.url), 200);
    assert.equal(await status(monitor.url, { method: "POST", body: "x" }), 405);

    const res = await fetch(`${monitor.url}events`);
    assert.equal(res.status, 200);
    assert.ok(res.body);
    const sse = new SseReader(res.body);
    try {
      const [hello] = await sse.until("hello");
      assert.equal(((JSON.parse(hello.data) as HelloMessage).view as ShareView).piecesDone, 4);
      share.setDone(9);
      // The timer ticks on its own: the next snapshot shows the new state.
      await waitForSnapshot(sse, (view) => view.piecesDone === 9);
      monitor.events.emit({ event: "peer_connected", peer: "10.1.1.1:1", direction: "in" });
      await sse.until("p2p");

      // Stopping with the page still connected: it gets "bye", then the server closes.
      controller.abort();
      await sse.until("bye");
      await monitor.finished;
    } finally {
      await sse.cancel();
    }
  } finally {
    controller.abort();
    await monitor.finished;
  }
  await assert.rejects(fetch(monitor.url), TypeError, "the port is closed");
});

async function waitForSnapshot(sse: SseReader, match: (view: ShareView) => boolean) {
  for (let count = 1; count < 200; count++) {
    const updates = await sse.until("snapshot", count);
    const last = JSON.parse(updates[updates.length - 1].data) as { view: ShareView };
    if (match(last.view)) return;
  }
  throw new Error("no matching snapshot");
}

Deno.test("startWebMonitor() with --web-token on loopback requires it too", async () => {
  const controller = new AbortController();
  const monitor = await startWebMonitor({
    listen: "127.0.0.1:0",
    token: TOKEN,
    source: new FakeShare(1),
    signal: controller.signal,
    sink: collect(),
  });
  try {
    const url = new URL(monitor.url);
    assert.equal(url.searchParams.get("token"), TOKEN);
    const plain = `${url.origin}/`;
    assert.equal(await status(plain), 401);
    assert.equal(await status(`${plain}snapshot?token=nope-nope-nope-nope`), 401);
    assert.equal(await status(monitor.url), 200);
    assert.equal(await status(`${plain}snapshot`, { headers: { cookie: `x=1` } }), 401);
    const port = url.port;
    assert.equal(
      await status(`${plain}snapshot`, { headers: { cookie: `p2p_share_web_${port}=${TOKEN}` } }),
      200,
    );
  } finally {
    controller.abort();
    await monitor.finished;
  }
});

Deno.test("startWebMonitor() reports a port in use and bad settings in one line", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const controller = new AbortController();
  const base = { source: new FakeShare(1), signal: controller.signal, sink: collect() };
  await assert.rejects(
    startWebMonitor({ ...base, listen: `127.0.0.1:${port}` }),
    {
      message:
        `web: cannot listen on 127.0.0.1:${port}: address already in use (choose another with --web, or port 0 for any)`,
    },
  );
  await assert.rejects(startWebMonitor({ ...base, listen: "here" }), { name: "UsageError" });
  await assert.rejects(startWebMonitor({ ...base, listen: "0", token: "short" }), {
    name: "UsageError",
    message: /--web-token: the token must be at least 16/,
  });
  controller.abort();
});
