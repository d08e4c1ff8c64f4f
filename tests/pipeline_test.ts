import assert from "node:assert/strict";
import { PIPELINE_FLOOR_BYTES, PIPELINE_MAX_BYTES, pipelineBytes } from "../lib/pipeline.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const block = 256 * KiB;
const base = { blockBytes: block, maxRequests: 128 };

Deno.test("pipelineBytes() keeps the floor on a near link, split between connections", () => {
  // Loopback: 500 MB/s and a 0.3 ms round trip hold 300 KB, under the floor.
  const near = { ...base, rateBytesPerSec: 500e6, roundTripMs: 0.3 };
  assert.equal(pipelineBytes({ ...near, connections: 1 }), PIPELINE_FLOOR_BYTES);
  assert.equal(pipelineBytes({ ...near, connections: 2 }), 512 * KiB);
  // Never under two blocks, however many connections share the floor.
  assert.equal(pipelineBytes({ ...near, connections: 4 }), 2 * block);
  assert.equal(pipelineBytes({ ...near, connections: 8 }), 2 * block);
  // Before anything arrived (no rate, no round trip yet): the floor.
  assert.equal(pipelineBytes({ ...base, rateBytesPerSec: 0, roundTripMs: 0, connections: 0 }), MiB);
});

Deno.test("pipelineBytes() covers twice the bandwidth-delay product of a far link, up to the cap", () => {
  const far = { ...base, roundTripMs: 100, connections: 4 };
  // 10 MB/s over 100 ms: 2 MB requested ahead.
  assert.equal(pipelineBytes({ ...far, rateBytesPerSec: 10e6 }), 2e6);
  // It grows with the rate (slow start), and stops at the cap.
  assert.ok(pipelineBytes({ ...far, rateBytesPerSec: 15e6 }) > 2e6);
  assert.equal(pipelineBytes({ ...far, rateBytesPerSec: 100e6 }), PIPELINE_MAX_BYTES);
  // Small blocks (a rate limit) cap it by the request count instead.
  assert.equal(
    pipelineBytes({ ...far, rateBytesPerSec: 100e6, blockBytes: 16 * KiB }),
    128 * 16 * KiB,
  );
});
