import assert from "node:assert/strict";
import { type AnnounceRecord, normalizeIp, SwarmTable } from "../lib/swarm_table.ts";

const HASH_A = "a".repeat(64);
const HASH_B = "b".repeat(64);

function peerId(n: number): string {
  return n.toString(16).padStart(40, "0");
}

function record(overrides: Partial<AnnounceRecord> = {}): AnnounceRecord {
  return {
    infoHash: HASH_A,
    peerId: peerId(1),
    ip: "10.0.0.1",
    port: 6881,
    left: 100,
    uploaded: 0,
    downloaded: 0,
    event: "started",
    numwant: 50,
    ...overrides,
  };
}

function announceOk(table: SwarmTable, rec: AnnounceRecord, nowMs = 0) {
  const outcome = table.announce(rec, nowMs);
  if (!outcome.ok) throw new Error(`unexpected refusal: ${outcome.message}`);
  return outcome;
}

Deno.test("announce() never returns the asker and returns the others", () => {
  const table = new SwarmTable();
  announceOk(table, record({ peerId: peerId(1), port: 1001 }));
  announceOk(table, record({ peerId: peerId(2), port: 1002 }));
  const third = announceOk(table, record({ peerId: peerId(3), port: 1003 }));
  assert.deepEqual(third.peers.map((p) => p.peerId).sort(), [peerId(1), peerId(2)]);
  const again = announceOk(table, record({ peerId: peerId(1), port: 1001, event: "" }));
  assert.ok(again.peers.every((p) => p.peerId !== peerId(1)));
  assert.equal(again.peers.length, 2);
});

Deno.test("announce() leaves out another entry at the asker's own ip and port", () => {
  const table = new SwarmTable();
  // A client restarted with a fresh peer id: its old entry points at itself.
  announceOk(table, record({ peerId: peerId(1), ip: "10.0.0.9", port: 7000 }));
  const restarted = announceOk(table, record({ peerId: peerId(2), ip: "10.0.0.9", port: 7000 }));
  assert.deepEqual(restarted.peers, []);
});

Deno.test("announce() caps the answer at numwant with a random subset", () => {
  let seed = 1;
  const random = () => {
    seed = (seed * 16807) % 2147483647;
    return (seed - 1) / 2147483646;
  };
  const table = new SwarmTable({ random });
  for (let i = 0; i < 30; i++) {
    announceOk(table, record({ peerId: peerId(i + 10), port: 2000 + i }));
  }
  const seen = new Set<string>();
  for (const numwant of [0, 1, 5, 29, 200]) {
    const outcome = announceOk(table, record({ peerId: peerId(1), numwant, event: "" }));
    assert.equal(outcome.peers.length, Math.min(numwant, 30));
    assert.equal(
      new Set(outcome.peers.map((p) => p.peerId)).size,
      outcome.peers.length,
      "no duplicates",
    );
  }
  for (let round = 0; round < 20; round++) {
    for (const p of announceOk(table, record({ peerId: peerId(1), numwant: 5, event: "" })).peers) {
      seen.add(p.peerId);
    }
  }
  assert.ok(seen.size > 10, `random subsets should cover the swarm, saw ${seen.size}`);
});

Deno.test("announce() gives a seeder only leechers", () => {
  const table = new SwarmTable();
  announceOk(table, record({ peerId: peerId(1), left: 0, port: 1 }));
  announceOk(table, record({ peerId: peerId(2), left: 5, port: 2 }));
  const seeder = announceOk(table, record({ peerId: peerId(3), left: 0, port: 3 }));
  assert.deepEqual(seeder.peers.map((p) => p.peerId), [peerId(2)]);
  const leecher = announceOk(table, record({ peerId: peerId(4), left: 9, port: 4 }));
  assert.equal(leecher.peers.length, 3);
});

Deno.test("announce() counts seeders, leechers and completed (once per peer)", () => {
  const table = new SwarmTable();
  announceOk(table, record({ peerId: peerId(1), left: 0 }));
  announceOk(table, record({ peerId: peerId(2), left: 50 }));
  let outcome = announceOk(table, record({ peerId: peerId(3), left: 50 }));
  assert.deepEqual([outcome.seeders, outcome.leechers, outcome.completed], [1, 2, 0]);
  outcome = announceOk(table, record({ peerId: peerId(2), left: 0, event: "completed" }));
  assert.deepEqual([outcome.seeders, outcome.leechers, outcome.completed], [2, 1, 1]);
  outcome = announceOk(table, record({ peerId: peerId(2), left: 0, event: "completed" }));
  assert.equal(outcome.completed, 1, "a repeated completed is not counted again");
  outcome = announceOk(table, record({ peerId: peerId(1), left: 10, event: "" }));
  assert.deepEqual([outcome.seeders, outcome.leechers], [1, 2], "a seeder can turn leecher again");
  assert.deepEqual(table.scrape(HASH_A), {
    infoHash: HASH_A,
    seeders: 1,
    leechers: 2,
    completed: 1,
  });
});

Deno.test("announce() updates an existing peer instead of adding a second entry", () => {
  const table = new SwarmTable();
  announceOk(table, record({ port: 1000, uploaded: 1 }), 0);
  announceOk(table, record({ port: 1001, uploaded: 7, downloaded: 3, left: 4, event: "" }), 500);
  assert.deepEqual(table.peersOf(HASH_A), [{
    peerId: peerId(1),
    ip: "10.0.0.1",
    port: 1001,
    left: 4,
    uploaded: 7,
    downloaded: 3,
    lastSeenMs: 500,
  }]);
  assert.equal(table.peerCount, 1);
});

Deno.test("the same peer id from another address is a separate entry and cannot remove the first", () => {
  const table = new SwarmTable();
  announceOk(table, record({ ip: "10.0.0.1" }));
  announceOk(table, record({ ip: "10.6.6.6", event: "stopped" }));
  assert.equal(table.peerCount, 1, "a stranger's stopped removes nothing");
  assert.equal(table.remove(HASH_A, peerId(1), "10.6.6.6"), false);
  assert.equal(table.remove(HASH_A, peerId(1), "10.0.0.1"), true);
  assert.equal(table.peerCount, 0);
  assert.equal(table.swarmCount, 0, "an empty swarm is dropped");
});

Deno.test("stopped removes at once and never creates a swarm", () => {
  const table = new SwarmTable();
  const unknown = announceOk(table, record({ event: "stopped" }));
  assert.deepEqual(unknown, { ok: true, peers: [], seeders: 0, leechers: 0, completed: 0 });
  assert.equal(table.swarmCount, 0);
  announceOk(table, record({ peerId: peerId(1) }));
  announceOk(table, record({ peerId: peerId(2), port: 2 }));
  const stopped = announceOk(table, record({ peerId: peerId(1), event: "stopped" }));
  assert.deepEqual(stopped.peers, []);
  assert.equal(stopped.leechers, 1);
  assert.deepEqual(table.peersOf(HASH_A).map((p) => p.peerId), [peerId(2)]);
});

Deno.test("expire() drops peers silent longer than the time-to-live, and empty swarms", () => {
  const table = new SwarmTable({ peerTtlMs: 1000 });
  announceOk(table, record({ peerId: peerId(1) }), 0);
  announceOk(table, record({ peerId: peerId(2), port: 2 }), 600);
  announceOk(table, record({ infoHash: HASH_B, peerId: peerId(3) }), 100);
  assert.equal(table.expire(1000), 0, "exactly at the limit is still alive");
  assert.equal(table.expire(1050), 1);
  assert.deepEqual(table.peersOf(HASH_A).map((p) => p.peerId), [peerId(2)]);
  assert.equal(table.expire(1101), 1);
  assert.equal(table.swarmCount, 1);
  assert.equal(table.expire(5000), 1);
  assert.deepEqual(table.stats(), { swarms: [], swarmCount: 0, peerCount: 0 });
});

Deno.test("announce() never hands out a peer whose time-to-live ran out, even before a sweep", () => {
  const table = new SwarmTable({ peerTtlMs: 1000 });
  announceOk(table, record({ peerId: peerId(1), port: 1 }), 0);
  announceOk(table, record({ peerId: peerId(2), port: 2 }), 900);
  const outcome = announceOk(table, record({ peerId: peerId(3), port: 3 }), 1500);
  assert.deepEqual(outcome.peers.map((p) => p.peerId), [peerId(2)]);
  assert.equal(table.peerCount, 2);
});

Deno.test("a re-announce keeps a peer alive past its first time-to-live", () => {
  const table = new SwarmTable({ peerTtlMs: 1000 });
  announceOk(table, record(), 0);
  announceOk(table, record({ event: "" }), 800);
  assert.equal(table.expire(1700), 0);
  assert.equal(table.expire(1801), 1);
});

Deno.test("limits produce typed refusals instead of growth", () => {
  const cases: {
    name: string;
    options: ConstructorParameters<typeof SwarmTable>[0];
    fill: AnnounceRecord[];
    extra: AnnounceRecord;
    refusal: string;
  }[] = [
    {
      name: "too many swarms",
      options: { maxSwarms: 2 },
      fill: [record({ infoHash: HASH_A }), record({ infoHash: HASH_B })],
      extra: record({ infoHash: "c".repeat(64) }),
      refusal: "too_many_swarms",
    },
    {
      name: "swarm full",
      options: { maxPeersPerSwarm: 2 },
      fill: [record({ peerId: peerId(1) }), record({ peerId: peerId(2) })],
      extra: record({ peerId: peerId(3) }),
      refusal: "swarm_full",
    },
    {
      name: "tracker full",
      options: { maxPeers: 2 },
      fill: [record({ infoHash: HASH_A }), record({ infoHash: HASH_B })],
      extra: record({ infoHash: HASH_A, peerId: peerId(9) }),
      refusal: "tracker_full",
    },
  ];
  for (const c of cases) {
    const table = new SwarmTable(c.options);
    for (const r of c.fill) announceOk(table, r);
    const outcome = table.announce(c.extra, 0);
    assert.equal(outcome.ok, false, c.name);
    if (!outcome.ok) {
      assert.equal(outcome.refusal, c.refusal, c.name);
      assert.match(outcome.message, /maximum|full/, c.name);
    }
    assert.equal(table.peerCount, c.fill.length, `${c.name}: nothing added`);
    // Peers already listed keep re-announcing while the table is full.
    announceOk(table, { ...c.fill[0], event: "" });
  }
});

Deno.test("a limit frees up when peers leave", () => {
  const table = new SwarmTable({ maxPeersPerSwarm: 1 });
  announceOk(table, record({ peerId: peerId(1) }));
  assert.equal(table.announce(record({ peerId: peerId(2) }), 0).ok, false);
  announceOk(table, record({ peerId: peerId(1), event: "stopped" }));
  assert.equal(table.announce(record({ peerId: peerId(2) }), 0).ok, true);
});

Deno.test("the first name given to a swarm is kept", () => {
  const table = new SwarmTable();
  announceOk(table, record({ peerId: peerId(1) }));
  announceOk(table, record({ peerId: peerId(2), name: "movie.mkv" }));
  announceOk(table, record({ peerId: peerId(3), name: "renamed.exe" }));
  assert.equal(table.scrape(HASH_A).name, "movie.mkv");
  assert.equal(table.scrape(HASH_B).name, undefined);
});

Deno.test("stats() lists every swarm, busiest first", () => {
  const table = new SwarmTable();
  announceOk(table, record({ infoHash: HASH_A, peerId: peerId(1) }));
  announceOk(table, record({ infoHash: HASH_B, peerId: peerId(1), left: 0 }));
  announceOk(table, record({ infoHash: HASH_B, peerId: peerId(2) }));
  assert.deepEqual(table.stats(), {
    swarmCount: 2,
    peerCount: 3,
    swarms: [
      { infoHash: HASH_B, seeders: 1, leechers: 1, completed: 0 },
      { infoHash: HASH_A, seeders: 0, leechers: 1, completed: 0 },
    ],
  });
});

Deno.test("the constructor refuses limits that are not positive integers", () => {
  for (
    const options of [{ maxSwarms: 0 }, { maxPeers: -1 }, { peerTtlMs: 1.5 }, {
      maxPeersPerSwarm: NaN,
    }]
  ) {
    assert.throws(() => new SwarmTable(options), RangeError);
  }
});

Deno.test("normalizeIp() accepts IP literals in canonical form and refuses the rest", () => {
  const cases: [string, string | undefined][] = [
    ["127.0.0.1", "127.0.0.1"],
    ["255.255.255.255", "255.255.255.255"],
    ["0.0.0.0", "0.0.0.0"],
    ["::1", "::1"],
    ["[::1]", "::1"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["::ffff:10.1.2.3", "10.1.2.3"],
    ["::ffff:a01:203", "10.1.2.3"],
    ["256.1.1.1", undefined],
    ["01.2.3.4", undefined],
    ["1.2.3", undefined],
    ["localhost", undefined],
    ["example.com", undefined],
    ["fe80::1%eth0", undefined],
    ["1:2:3:4:5:6:7:8:9", undefined],
    ["", undefined],
    [" 1.2.3.4", undefined],
    ["x".repeat(100), undefined],
  ];
  for (const [input, expected] of cases) assert.equal(normalizeIp(input), expected, input);
});

Deno.test("the core module does no I/O", async () => {
  const text = await Deno.readTextFile(new URL("../lib/swarm_table.ts", import.meta.url));
  const source = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  assert.doesNotMatch(source, /\bDeno\./);
  assert.doesNotMatch(source, /\bset(Timeout|Interval)\b/);
});
