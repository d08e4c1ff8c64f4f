import assert from "node:assert/strict";
import {
  formatRate,
  type Line,
  renderLine,
  renderProgressBar,
  type Role,
} from "../lib/cli/render.ts";
import type { EventName, P2PEvent } from "../lib/events.ts";

const HASH = "3f".repeat(32);

type EventOf<K extends EventName> = Extract<P2PEvent, { event: K }>;
type Progress = EventOf<"progress">;

interface Case<K extends EventName> {
  event: EventOf<K>;
  role: Role;
  /** The expected line, or `undefined` when the event has no line of its own. */
  expected: Line | undefined;
}

const out = (text: string): Line => ({ text, stream: "out" });
const err = (text: string): Line => ({ text, stream: "err" });

const PROGRESS: Progress = {
  event: "progress",
  piecesDone: 2,
  piecesTotal: 5,
  bytesDone: 32768,
  bytesTotal: 70000,
  rateBytesPerSec: 1_500_000,
  etaSeconds: 25,
  peers: 1,
  uploadRateBytesPerSec: 250_000,
  bytesDownloaded: 32768,
  bytesUploaded: 16384,
};
const PROGRESS_TEXT = "2/5 pieces 32.0 KiB/68.4 KiB (46.8%) ↓1.5 ↑0.3 MB/s ETA 25s peers 1";

// A mapped type, so adding an event kind without a case here fails type checking.
const CASES: { [K in EventName]: Case<K>[] } = {
  created: [{
    event: {
      event: "created",
      path: "demo.p2pmeta",
      infoHash: HASH,
      name: "demo.txt",
      bytes: 70000,
      pieces: 5,
      pieceLength: 16384,
    },
    role: "create",
    expected: out(
      `[create] wrote demo.p2pmeta (demo.txt, 68.4 KiB, 5 pieces of 16.0 KiB)\n[create] info hash ${HASH}`,
    ),
  }],
  share: [
    {
      event: {
        event: "share",
        path: "demo.p2pmeta",
        name: "demo.txt",
        bytes: 70000,
        pieceLength: 16384,
        pieces: 5,
        infoHash: HASH,
        trackers: [],
        comment: null,
        createdBy: null,
        creationDate: null,
      },
      role: "info",
      expected: out(
        [
          "demo.p2pmeta",
          "  name:         demo.txt",
          "  size:         68.4 KiB (70000 bytes)",
          "  pieces:       5 of 16.0 KiB",
          `  info hash:    ${HASH}`,
          "  trackers:     (none)",
        ].join("\n"),
      ),
    },
    {
      event: {
        event: "share",
        path: "demo.p2pmeta",
        name: "demo.txt",
        bytes: 1024,
        pieceLength: 1024,
        pieces: 1,
        infoHash: HASH,
        trackers: ["http://a:7000/announce", "http://b:7000/announce"],
        comment: "hello",
        createdBy: "p2p-share 0.1",
        creationDate: "2025-01-02T03:04:05Z",
      },
      role: "info",
      expected: out(
        [
          "demo.p2pmeta",
          "  name:         demo.txt",
          "  size:         1.00 KiB (1024 bytes)",
          "  pieces:       1 of 1.00 KiB",
          `  info hash:    ${HASH}`,
          "  trackers:     http://a:7000/announce, http://b:7000/announce",
          "  comment:      hello",
          "  created by:   p2p-share 0.1",
          "  created:      2025-01-02T03:04:05Z",
        ].join("\n"),
      ),
    },
  ],
  listening: [
    {
      event: { event: "listening", host: "0.0.0.0", port: 7000, service: "tracker" },
      role: "tracker",
      expected: out("tracker listening on 0.0.0.0:7000"),
    },
    {
      event: {
        event: "listening",
        host: "127.0.0.1",
        port: 8080,
        service: "web",
        url: "http://127.0.0.1:8080/",
      },
      role: "seed",
      expected: out("[seed] web monitor on http://127.0.0.1:8080/"),
    },
    {
      event: { event: "listening", host: "127.0.0.1", port: 8080, service: "web" },
      role: "seed",
      expected: out("[seed] web monitor on 127.0.0.1:8080"),
    },
    {
      event: { event: "listening", host: "0.0.0.0", port: 5001, service: "peer" },
      role: "seed",
      expected: undefined, // the serving line says it
    },
  ],
  ingested: [{
    event: { event: "ingested", pieces: 5, piecesTotal: 5, source: "samples/demo.txt" },
    role: "seed",
    expected: out("[seed] ingested 5/5 verified pieces from samples/demo.txt"),
  }],
  serving: [{
    event: {
      event: "serving",
      name: "demo.txt",
      pieces: 5,
      host: "192.168.1.20",
      port: 5001,
      hint: "deno task download --meta demo.p2pmeta --host 192.168.1.20 --port 5001",
    },
    role: "seed",
    expected: out(
      "[seed] serving demo.txt (pieces=5) on 192.168.1.20:5001\n" +
        "[seed] hint: on downloader → deno task download --meta demo.p2pmeta --host 192.168.1.20 --port 5001",
    ),
  }],
  rechecking: [{
    event: {
      event: "rechecking",
      path: "downloads/demo.txt.partial",
      reason: "state file missing; rechecking the partial data",
    },
    role: "client",
    expected: out(
      "[client] rechecking downloads/demo.txt.partial: state file missing; rechecking the partial data",
    ),
  }],
  file_complete: [{
    event: {
      event: "file_complete",
      path: "downloads/holiday/photos/a.jpg",
      file: "photos/a.jpg",
      bytes: 70000,
    },
    role: "client",
    expected: out("[client] file complete: downloads/holiday/photos/a.jpg (68.4 KiB)"),
  }],
  started: [{
    event: {
      event: "started",
      name: "demo.txt",
      piecesNeeded: 5,
      piecesTotal: 5,
      connections: 4,
      peer: "192.168.1.20:5001",
    },
    role: "client",
    expected: out("[client] requesting 5 pieces with 4 workers from 192.168.1.20:5001"),
  }],
  progress: [
    { event: PROGRESS, role: "client", expected: out(`[client] ${PROGRESS_TEXT}`) },
    {
      event: {
        ...PROGRESS,
        rateBytesPerSec: 0,
        uploadRateBytesPerSec: 0,
        etaSeconds: null,
        peers: 0,
      },
      role: "client",
      expected: out(
        "[client] 2/5 pieces 32.0 KiB/68.4 KiB (46.8%) ↓0.0 ↑0.0 MB/s ETA -- peers 0",
      ),
    },
    {
      event: {
        ...PROGRESS,
        piecesDone: 0,
        piecesTotal: 0,
        bytesDone: 0,
        bytesTotal: 0,
        etaSeconds: 3725,
      },
      role: "client",
      expected: out(
        "[client] 0/0 pieces 0 B/0 B (100.0%) ↓1.5 ↑0.3 MB/s ETA 1h02m peers 1",
      ),
    },
  ],
  peer_connected: [
    {
      event: { event: "peer_connected", peer: "127.0.0.1:5555", direction: "in" },
      role: "seed",
      expected: out("[seed] peer 127.0.0.1:5555 connected"),
    },
    {
      event: { event: "peer_connected", peer: "192.168.1.20:5001", direction: "out" },
      role: "client",
      expected: undefined, // a downloader's own connections are not news
    },
  ],
  peer_disconnected: [
    {
      event: { event: "peer_disconnected", peer: "127.0.0.1:5555", reason: "closed by peer" },
      role: "seed",
      expected: out("[seed] peer 127.0.0.1:5555 disconnected: closed by peer"),
    },
    {
      event: { event: "peer_disconnected", peer: "192.168.1.20:5001", reason: "done" },
      role: "client",
      expected: undefined,
    },
  ],
  piece_failed: [{
    event: {
      event: "piece_failed",
      index: 3,
      peer: "192.168.1.20:5001",
      reason: "piece 3 from 192.168.1.20:5001 failed SHA-256 verification; discarded",
    },
    role: "client",
    expected: err(
      "[client] warning: piece 3 from 192.168.1.20:5001 failed SHA-256 verification; discarded",
    ),
  }],
  complete: [
    {
      event: {
        event: "complete",
        path: "downloads/demo.txt",
        bytes: 70000,
        piecesFetched: 5,
        bytesFetched: 70000,
        bytesDownloaded: 70000,
        bytesUploaded: 0,
        piecesTotal: 5,
        seconds: 0.5,
      },
      role: "client",
      expected: out(
        "[client] download complete → downloads/demo.txt (68.4 KiB, fetched 5/5 pieces in 0.50s, 0.1 MB/s)",
      ),
    },
    {
      event: {
        event: "complete",
        path: "downloads/demo.txt",
        bytes: 70000,
        piecesFetched: 0,
        bytesFetched: 0,
        bytesDownloaded: 0,
        bytesUploaded: 0,
        piecesTotal: 5,
        seconds: 0.004,
      },
      role: "client",
      expected: out(
        "[client] download complete → downloads/demo.txt (68.4 KiB, fetched 0/5 pieces in 0.00s)",
      ),
    },
    {
      // A resumed run: the rate counts only the bytes fetched in this run.
      event: {
        event: "complete",
        path: "downloads/demo.txt",
        bytes: 70000,
        piecesFetched: 2,
        bytesFetched: 35000,
        bytesDownloaded: 35000,
        bytesUploaded: 0,
        piecesTotal: 5,
        seconds: 0.05,
      },
      role: "client",
      expected: out(
        "[client] download complete → downloads/demo.txt (68.4 KiB, fetched 2/5 pieces in 0.05s, 0.7 MB/s)",
      ),
    },
  ],
  verified: [
    {
      event: {
        event: "verified",
        path: "demo.txt",
        ok: true,
        piecesGood: 5,
        piecesTotal: 5,
        badPieces: [],
      },
      role: "verify",
      expected: out("[verify] OK: demo.txt matches (5/5 pieces verified)"),
    },
    {
      event: {
        event: "verified",
        path: "demo.txt",
        ok: false,
        piecesGood: 3,
        piecesTotal: 5,
        badPieces: [1, 3],
      },
      role: "verify",
      expected: err("[verify] FAILED: demo.txt has 2 bad pieces of 5: 1, 3"),
    },
    {
      event: {
        event: "verified",
        path: "big.bin",
        ok: false,
        piecesGood: 40,
        piecesTotal: 100,
        badPieces: Array.from({ length: 60 }, (_, i) => i),
      },
      role: "verify",
      expected: err(
        `[verify] FAILED: big.bin has 60 bad pieces of 100: ${
          Array.from({ length: 50 }, (_, i) => i).join(", ")
        }, ...`,
      ),
    },
  ],
  warning: [{
    event: { event: "warning", message: "connection to 10.0.0.2:5001 failed; retry 1/5" },
    role: "client",
    expected: err("[client] warning: connection to 10.0.0.2:5001 failed; retry 1/5"),
  }],
  info: [{
    event: { event: "info", message: "verifying 4 pieces recorded in demo.txt.state.json" },
    role: "client",
    expected: out("[client] verifying 4 pieces recorded in demo.txt.state.json"),
  }],
  error: [{
    event: { event: "error", message: "cannot read demo.p2pmeta: not found" },
    role: "client",
    expected: err("error: cannot read demo.p2pmeta: not found"),
  }],
};

for (const [kind, cases] of Object.entries(CASES) as [EventName, Case<EventName>[]][]) {
  Deno.test(`renderLine() renders "${kind}" events as the expected text`, () => {
    assert.ok(cases.length > 0);
    for (const c of cases) {
      assert.deepEqual(renderLine(c.event, c.role), c.expected, JSON.stringify(c.event));
    }
  });
}

Deno.test("renderLine() puts warnings, failed pieces, failed verifications and errors on stderr only", () => {
  const errKinds = new Set<EventName>(["warning", "error", "piece_failed"]);
  for (const cases of Object.values(CASES) as Case<EventName>[][]) {
    for (const c of cases) {
      const line = renderLine(c.event, c.role);
      if (!line) continue;
      const failed = c.event.event === "verified" && !c.event.ok;
      const expected = errKinds.has(c.event.event) || failed ? "err" : "out";
      assert.equal(line.stream, expected, JSON.stringify(c.event));
    }
  }
});

Deno.test("renderLine() prefixes every line of a multi-line message with the role", () => {
  const line = renderLine(CASES.serving[0].event, "seed");
  assert.ok(line);
  for (const text of line.text.split("\n")) assert.match(text, /^\[seed\] /);
});

Deno.test("formatRate() shows megabytes per second with one decimal", () => {
  const cases: [number, string][] = [[0, "0.0 MB/s"], [140_000, "0.1 MB/s"], [
    12_345_678,
    "12.3 MB/s",
  ]];
  for (const [rate, text] of cases) assert.equal(formatRate(rate), text);
});

function barOf(line: string): { filled: number; empty: number } | undefined {
  const match = /^\[[a-z]+\] \[(#*)(-*)\] /.exec(line);
  return match ? { filled: match[1].length, empty: match[2].length } : undefined;
}

Deno.test("renderProgressBar() never reaches the last column of the terminal", () => {
  for (const columns of [21, 30, 40, 60, 79, 80, 81, 90, 100, 120, 200, 400]) {
    for (const role of ["client", "seed"] as const) {
      const line = renderProgressBar(PROGRESS, role, columns);
      assert.ok(line.length <= columns - 1, `${columns} columns: ${line.length} chars`);
      assert.ok(line.startsWith(`[${role}] `), line);
    }
  }
});

Deno.test("renderProgressBar() draws a 30-wide bar proportional to the bytes done on a wide terminal", () => {
  const cases: [number, number, number][] = [
    [0, 70000, 0],
    [17500, 70000, 8], // 7.5 rounds up
    [35000, 70000, 15],
    [69999, 70000, 30],
    [70000, 70000, 30],
    [0, 0, 30], // an empty share is complete
  ];
  for (const [bytesDone, bytesTotal, filled] of cases) {
    const line = renderProgressBar({ ...PROGRESS, bytesDone, bytesTotal }, "client", 200);
    assert.deepEqual(barOf(line), { filled, empty: 30 - filled }, line);
  }
  const line = renderProgressBar(PROGRESS, "client", 200);
  assert.equal(line, `[client] [##############----------------] ${PROGRESS_TEXT}`);
});

Deno.test("renderProgressBar() drops the bar, keeping the summary, when there is no room", () => {
  const line = renderProgressBar(PROGRESS, "client", 60);
  assert.equal(barOf(line), undefined);
  assert.equal(line, `[client] ${PROGRESS_TEXT}`.slice(0, 59));
});

Deno.test({
  name: "renderProgressBar() keeps the whole summary when it narrows the bar to fit",
  fn() {
    for (let columns = 80; columns <= 110; columns++) {
      const line = renderProgressBar(PROGRESS, "client", columns);
      assert.ok(line.endsWith(PROGRESS_TEXT), `${columns} columns: ${JSON.stringify(line)}`);
      assert.ok(line.length <= columns - 1);
    }
  },
});

Deno.test({
  name: "renderProgressBar() fits a very narrow terminal",
  fn() {
    for (const columns of [1, 5, 10, 20]) {
      const line = renderProgressBar(PROGRESS, "client", columns);
      assert.ok(line.length <= Math.max(columns - 1, 0), `${columns}: ${line.length} chars`);
    }
  },
});
