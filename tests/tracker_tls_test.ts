/**
 * Tracker over HTTPS, in process: `announce()` and the `Announcer` against real HTTPS trackers on
 * 127.0.0.1 (port 0) with self-signed certificates (good, expired, for another host), trusted
 * through a CA file (`--tracker-ca`), a pin (`--tracker-pin`) or nothing; and the `tracker`
 * command's `--tls-cert`/`--tls-key`. Synchronised on events and counters, never on sleeps.
 */

import assert from "node:assert/strict";
import { announce, type AnnounceParams, Announcer } from "../lib/tracker_client.ts";
import { checkTrackerTrust } from "../lib/cli/announce.ts";
import { trackerCommand } from "../lib/cli/tracker_cmd.ts";
import { UsageError } from "../lib/errors.ts";
import type { EventSink, P2PEvent } from "../lib/events.ts";
import {
  certificatePin,
  formatPin,
  TrackerCertificateError,
  type TrackerTrust,
} from "../lib/https_trust.ts";
import type { Identity } from "../lib/identity.ts";
import { SwarmTable } from "../lib/swarm_table.ts";
import { createTrackerHandler } from "../lib/tracker_server.ts";
import { closedPort, tempDir, waitFor } from "./helpers.ts";
import { httpsTrackerInProcess, trackerCertFiles } from "./tls_kit.ts";

const DAY_MS = 86_400_000;
const HASH = "7c".repeat(32);

const dir = await tempDir("p2p_tracker_tls_");
const good = await trackerCertFiles(dir.path, "good");
const stranger = await trackerCertFiles(dir.path, "stranger");
const expired = await trackerCertFiles(dir.path, "expired", {
  notBefore: new Date(Date.now() - 30 * DAY_MS),
  notAfter: new Date(Date.now() - DAY_MS),
});
const wrongHost = await trackerCertFiles(dir.path, "wronghost", {
  altNames: ["127.0.0.2", "tracker.example"],
});

function peerId(n: number): string {
  return n.toString(16).padStart(40, "0");
}

function params(overrides: Partial<AnnounceParams> = {}): AnnounceParams {
  return {
    infoHash: HASH,
    peerId: peerId(1),
    port: 6881,
    left: 0,
    uploaded: 0,
    downloaded: 0,
    name: "file.bin",
    ...overrides,
  };
}

function pinOf(id: Identity): string {
  return formatPin(certificatePin(id.certPem));
}

/** Collects events; lets a test wait for one that matches. */
class RecordingSink implements EventSink {
  events: P2PEvent[] = [];
  emit(event: P2PEvent): void {
    this.events.push(event);
  }
  messages(kind: "warning" | "info"): string[] {
    return this.events.flatMap((e) => e.event === kind ? [e.message] : []);
  }
  waitFor(match: (e: P2PEvent) => boolean, ms: number, what: string): Promise<P2PEvent> {
    return waitFor(() => this.events.find(match), ms, what);
  }
}

/** An HTTPS tracker (the real handler) on 127.0.0.1 port 0 with `id`'s certificate. */
async function withHttpsTracker(
  id: Identity,
  fn: (url: string, table: SwarmTable, port: number) => Promise<void>,
): Promise<void> {
  await using tracker = httpsTrackerInProcess(id);
  await fn(tracker.url, tracker.table, tracker.port);
}

/** The refusal `announce()` gives with `trust`, checked to be a certificate error. */
async function refusal(url: string, trust?: TrackerTrust): Promise<string> {
  try {
    await announce(url, params(), { event: "started", trust, timeoutMs: 5000 });
  } catch (err) {
    assert.ok(err instanceof TrackerCertificateError, `not a certificate error: ${err}`);
    return err.message;
  }
  return "accepted";
}

/**
 * A TCP forwarder on 127.0.0.1 whose target can change while it runs, counting connections:
 * lets a test see how often a client tried, and turn one tracker into another behind one URL.
 */
function switchableProxy(initialTarget: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let target = initialTarget;
  let connections = 0;
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const close = (c: Deno.Conn) => {
    if (conns.delete(c)) {
      try {
        c.close();
      } catch {
        // Already closed.
      }
    }
  };
  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    const buf = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) return;
        let done = 0;
        while (done < n) done += await to.write(buf.subarray(done, n));
      }
    } catch {
      // One side went away.
    }
  };
  const serve = async (client: Deno.Conn) => {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: target });
    } catch {
      close(client); // the "tracker" is down: the client sees its connection dropped
      return;
    }
    conns.add(upstream);
    const a = pump(client, upstream);
    const b = pump(upstream, client);
    await Promise.race([a, b]);
    close(client);
    close(upstream);
    await Promise.all([a, b]);
  };
  const accepting = (async () => {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch {
        return;
      }
      connections++;
      conns.add(client);
      const task = serve(client).finally(() => tasks.delete(task));
      tasks.add(task);
    }
  })();
  return {
    port: listener.addr.port,
    connections: () => connections,
    retarget(port: number) {
      target = port;
    },
    async stop() {
      listener.close();
      await accepting;
      for (const c of [...conns]) close(c);
      while (tasks.size > 0) await Promise.allSettled([...tasks]);
    },
  };
}

Deno.test("announce() registers with an HTTPS tracker trusted by --tracker-ca or --tracker-pin", async () => {
  await withHttpsTracker(good.identity, async (url, table) => {
    const first = await announce(url, params({ peerId: peerId(1), port: 7001 }), {
      event: "started",
      trust: { caFile: good.certFile },
    });
    assert.equal(first.intervalSec, 30);
    assert.deepEqual(first.peers, []);
    const second = await announce(url, params({ peerId: peerId(2), port: 7002, left: 5 }), {
      event: "started",
      trust: { pinSha256: pinOf(good.identity) },
    });
    assert.deepEqual(second.peers, [{ host: "127.0.0.1", port: 7001, peerId: peerId(1) }]);
    assert.deepEqual(table.stats().swarms, [{
      infoHash: HASH,
      name: "file.bin",
      seeders: 1,
      leechers: 1,
      completed: 0,
    }]);
  });
});

Deno.test("announce() refuses a self-signed HTTPS tracker without trust, and sends it nothing", async () => {
  await withHttpsTracker(good.identity, async (url, table, port) => {
    const message = await refusal(url);
    assert.equal(
      message,
      `tracker https://127.0.0.1:${port}/announce: certificate refused: it is not signed by a ` +
        "trusted authority (a self-signed tracker needs --tracker-ca FILE or --tracker-pin SHA256)",
    );
    assert.doesNotMatch(message, /unreachable/);
    assert.equal(table.stats().peerCount, 0);
  });
});

Deno.test("announce() refuses a CA file or a pin of another certificate", async () => {
  await withHttpsTracker(good.identity, async (url, table) => {
    assert.match(
      await refusal(url, { caFile: stranger.certFile }),
      /\/announce: certificate refused: it is not signed by a certificate in --tracker-ca .*stranger-cert\.pem$/,
    );
    assert.match(
      await refusal(url, { pinSha256: pinOf(stranger.identity) }),
      new RegExp(
        `/announce: certificate refused: its SHA-256 fingerprint ${
          pinOf(good.identity)
        } is not the pinned ${pinOf(stranger.identity)}$`,
      ),
    );
    assert.equal(table.stats().peerCount, 0);
  });
});

Deno.test("announce() refuses an expired certificate even when --tracker-ca or the pin names it", async () => {
  await withHttpsTracker(expired.identity, async (url, table) => {
    for (const trust of [{ caFile: expired.certFile }, { pinSha256: pinOf(expired.identity) }]) {
      assert.match(
        await refusal(url, trust),
        /^tracker https:\/\/127\.0\.0\.1:\d+\/announce: certificate refused: it expired on \d{4}-\d\d-\d\dT/,
        JSON.stringify(trust),
      );
    }
    assert.equal(table.stats().peerCount, 0);
  });
});

Deno.test("announce() refuses a certificate for another host even when --tracker-ca or the pin names it", async () => {
  await withHttpsTracker(wrongHost.identity, async (url, table) => {
    for (
      const trust of [{ caFile: wrongHost.certFile }, { pinSha256: pinOf(wrongHost.identity) }]
    ) {
      const message = await refusal(url, trust);
      assert.match(
        message,
        /^tracker https:\/\/127\.0\.0\.1:\d+\/announce: certificate refused: it is not valid for 127\.0\.0\.1 \(it names /,
        JSON.stringify(trust),
      );
      assert.match(message, /tracker\.example/);
    }
    assert.equal(table.stats().peerCount, 0);
  });
});

Deno.test("announce() over HTTPS gives up after its timeout when the TLS handshake never ends", async () => {
  // Accepts connections and says nothing: a TLS client waits for a ServerHello forever.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for (;;) {
      try {
        accepted.push(await listener.accept());
      } catch {
        return;
      }
    }
  })();
  const url = `https://127.0.0.1:${listener.addr.port}/announce`;
  try {
    for (
      const trust of [undefined, { caFile: good.certFile }, { pinSha256: pinOf(good.identity) }]
    ) {
      await assert.rejects(
        announce(url, params(), { trust, timeoutMs: 200 }),
        (err: Error) => {
          assert.ok(!(err instanceof TrackerCertificateError), err.message);
          assert.equal(err.message, `tracker ${url}: no answer within 200 ms`);
          return true;
        },
        JSON.stringify(trust),
      );
    }
  } finally {
    listener.close();
    await accepting;
    for (const conn of accepted) conn.close();
  }
});

Deno.test("announce() to an http tracker ignores the HTTPS trust settings; a wrong scheme gets a hint", async () => {
  const table = new SwarmTable();
  const handler = createTrackerHandler(table, { intervalSec: 30 });
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen: () => {} },
    (req, info) => handler(req, info.remoteAddr),
  );
  try {
    const url = `http://127.0.0.1:${server.addr.port}/announce`;
    for (const trust of [{ caFile: good.certFile }, { pinSha256: pinOf(good.identity) }]) {
      const result = await announce(url, params(), { event: "started", trust });
      assert.deepEqual(result.peers, []);
    }
    assert.equal(table.stats().peerCount, 1);
    // And https:// to that plain tracker says which scheme it speaks.
    const https = url.replace("http:", "https:");
    for (
      const trust of [undefined, { caFile: good.certFile }, { pinSha256: pinOf(good.identity) }]
    ) {
      await assert.rejects(
        announce(https, params(), { trust, timeoutMs: 5000 }),
        (err: Error) => {
          assert.ok(!(err instanceof TrackerCertificateError), err.message);
          assert.match(err.message, /: unreachable \(.*\); the tracker seems to serve plain HTTP/);
          assert.ok(err.message.endsWith(`use ${url}`), err.message);
          return true;
        },
        JSON.stringify(trust),
      );
    }
  } finally {
    controller.abort();
    await server.finished;
  }
});

Deno.test("Announcer: down, then a refused certificate, then fixed trust: one line each, retrying throughout", async () => {
  await withHttpsTracker(good.identity, async (_url, table, trackerPort) => {
    const proxy = switchableProxy(closedPort());
    const url = `https://127.0.0.1:${proxy.port}/announce`;
    // The CA file is read at every announce: it starts with the wrong certificate.
    const caFile = dir.join("changing-ca.pem");
    await Deno.writeTextFile(caFile, stranger.identity.certPem);
    const sink = new RecordingSink();
    const announcer = new Announcer({
      urls: [url],
      params: () => params({ peerId: peerId(3), port: 7003 }),
      sink,
      trust: { caFile },
      backoffInitialMs: 5,
      backoffMaxMs: 20,
    });
    const stop = new AbortController();
    const running = announcer.start(stop.signal);
    try {
      // 1. Nothing behind the address: an ordinary outage.
      await sink.waitFor((e) => e.event === "warning", 5000, "the outage warning");
      assert.match(sink.messages("warning")[0], new RegExp(`^tracker ${url}: unreachable \\(`));

      // 2. A tracker whose certificate the CA file does not vouch for: said once, in its own words.
      proxy.retarget(trackerPort);
      await sink.waitFor(
        (e) => e.event === "warning" && /certificate refused/.test(e.message),
        5000,
        "the certificate warning",
      );
      const triedBefore = proxy.connections();
      await waitFor(
        () => proxy.connections() >= triedBefore + 4,
        10_000,
        "four more attempts while the certificate is refused",
      );
      const warnings = sink.messages("warning");
      assert.equal(warnings.length, 2, warnings.join("\n"));
      assert.equal(
        warnings[1],
        `tracker ${url}: certificate refused: it is not signed by a certificate in --tracker-ca ` +
          `${caFile}; retrying with backoff, carrying on with known peers`,
      );
      assert.equal(table.stats().peerCount, 0, "nothing was announced to a refused tracker");

      // 3. The trust is fixed: the announcer gets through by itself.
      await Deno.writeTextFile(caFile, good.identity.certPem);
      await sink.waitFor(
        (e) => e.event === "info" && /is reachable again/.test(e.message),
        10_000,
        "the recovery line",
      );
      assert.deepEqual(sink.messages("info"), [`tracker ${url} is reachable again (0 peers)`]);
      assert.equal(table.peersOf(HASH).length, 1);
      assert.equal(sink.messages("warning").length, 2);
    } finally {
      await announcer.stop();
      await running;
      await proxy.stop();
    }
    // The goodbye went over HTTPS with the same trust.
    assert.equal(table.stats().peerCount, 0, "stopped removed the peer");
  });
});

Deno.test("Announcer refuses a malformed pin up front", () => {
  assert.throws(
    () =>
      new Announcer({
        urls: ["https://127.0.0.1:7443/announce"],
        params: () => params(),
        sink: new RecordingSink(),
        trust: { pinSha256: "12:34" },
      }),
    (err: unknown) =>
      err instanceof UsageError && /invalid certificate pin "12:34"/.test(err.message),
  );
});

Deno.test("checkTrackerTrust() checks --tracker-ca and --tracker-pin before anything starts", async () => {
  assert.equal(await checkTrackerTrust({}), undefined);
  assert.deepEqual(await checkTrackerTrust({ caFile: good.certFile }), { caFile: good.certFile });
  assert.deepEqual(await checkTrackerTrust({ pinSha256: pinOf(good.identity) }), {
    pinSha256: certificatePin(good.identity.certPem),
  });
  const notPem = dir.join("not-pem.txt");
  await Deno.writeTextFile(notPem, "hello");
  const cases: [{ caFile?: string; pinSha256?: string }, RegExp][] = [
    [{ caFile: good.certFile, pinSha256: pinOf(good.identity) }, /are alternatives: give one/],
    [{ caFile: dir.join("missing.pem") }, /cannot read --tracker-ca .*missing\.pem/],
    [{ caFile: notPem }, /--tracker-ca .*not-pem\.txt holds no PEM certificate/],
    [{ caFile: "" }, /--tracker-ca must not be empty/],
    [{ pinSha256: "AB:CD" }, /invalid certificate pin "AB:CD"/],
  ];
  for (const [flags, message] of cases) {
    await assert.rejects(checkTrackerTrust(flags), (err: unknown) => {
      assert.ok(err instanceof UsageError, JSON.stringify(flags));
      assert.match(err.message, message);
      return true;
    });
  }
});

Deno.test("tracker --tls-cert/--tls-key serves HTTPS, prints its pin, and warns about an open key", async () => {
  const openKey = dir.join("open-key.pem");
  await Deno.writeTextFile(openKey, good.identity.keyPem);
  await Deno.chmod(openKey, 0o644);
  const sink = new RecordingSink();
  const stop = new AbortController();
  const run = trackerCommand.run(
    ["--port", "0", "--host", "127.0.0.1", "--tls-cert", good.certFile, "--tls-key", openKey],
    { sink, signal: stop.signal },
  );
  try {
    const listening = await sink.waitFor((e) => e.event === "listening", 5000, "listening");
    assert.ok(listening.event === "listening");
    assert.equal(listening.url, `https://127.0.0.1:${listening.port}/announce`);
    assert.deepEqual(sink.messages("info"), [`certificate SHA-256 pin: ${pinOf(good.identity)}`]);
    assert.equal(sink.messages("warning").length, 1);
    assert.match(sink.messages("warning")[0], /--tls-key .*open-key\.pem is readable by other/);
    // Events come in order: warnings and the pin before the listening line.
    assert.equal(sink.events.at(-1)?.event, "listening");

    // The pin as printed is what a client passes to --tracker-pin.
    const pin = sink.messages("info")[0].replace("certificate SHA-256 pin: ", "");
    const url = listening.url ?? "";
    assert.deepEqual(
      (await announce(url, params(), { event: "started", trust: { pinSha256: pin } })).peers,
      [],
    );
    assert.match(await refusal(url), /certificate refused: it is not signed by a trusted/);
    // Plain http to the HTTPS port: refused, with the way out.
    await assert.rejects(
      announce(url.replace("https:", "http:"), params(), { timeoutMs: 5000 }),
      (err: Error) => {
        assert.match(err.message, /: unreachable \(.*\); the tracker seems to serve HTTPS: use /);
        assert.ok(err.message.endsWith(`use ${url}`), err.message);
        return true;
      },
    );
  } finally {
    stop.abort();
  }
  assert.equal(await run, 0);
});

Deno.test("tracker --tls-cert/--tls-key: both or neither, readable, matching, within dates", async () => {
  const cases: [string[], RegExp][] = [
    [["--tls-cert", good.certFile], /--tls-cert and --tls-key go together/],
    [["--tls-key", good.keyFile], /--tls-cert and --tls-key go together/],
    [["--tls-cert", "", "--tls-key", good.keyFile], /must not be empty/],
    [["--tls-cert", good.certFile, "--tls-key", stranger.keyFile], /is not the key of/],
    [["--tls-cert", expired.certFile, "--tls-key", expired.keyFile], /expired on .*clients will/],
    [["--tls-cert", dir.join("nope.pem"), "--tls-key", good.keyFile], /cannot read --tls-cert/],
  ];
  for (const [argv, message] of cases) {
    await assert.rejects(
      trackerCommand.run(["--port", "0", "--host", "127.0.0.1", ...argv], {
        sink: new RecordingSink(),
        signal: AbortSignal.abort(),
      }),
      (err: unknown) => {
        assert.ok(err instanceof UsageError, argv.join(" "));
        assert.match(err.message, message, argv.join(" "));
        return true;
      },
    );
  }
  assert.match(trackerCommand.usage, /--tls-cert FILE --tls-key FILE/);
  assert.match(trackerCommand.usage, /--tracker-pin/);
});

Deno.test({
  name: "tracker_tls tests clean up their files",
  fn: async () => {
    await dir[Symbol.asyncDispose]();
  },
});
