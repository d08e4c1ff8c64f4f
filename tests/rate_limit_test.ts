/**
 * Unit tests of the token bucket (lib/rate_limit.ts) on an injected clock: the long-run rate is
 * exact, a burst after idling is bounded, a taker that ran the bucket into debt makes the next
 * one wait, and `throttle` without a limiter costs nothing.
 */

import assert from "node:assert/strict";
import { RateLimiter, throttle } from "../lib/rate_limit.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A greedy taker on a simulated clock: takes `blockBytes` whenever allowed, waiting exactly as
 * told, until `untilMs`. Returns the time (ms) of every block taken.
 */
function drain(
  limiter: RateLimiter,
  options: { startMs: number; untilMs: number; blockBytes: number },
): number[] {
  const taken: number[] = [];
  let now = options.startMs;
  while (now <= options.untilMs) {
    const waitMs = limiter.reserve(options.blockBytes, now);
    if (waitMs === 0) taken.push(now);
    else {
      assert.ok(waitMs > 0 && Number.isFinite(waitMs), `wait ${waitMs} ms`);
      now += waitMs;
    }
  }
  return taken;
}

Deno.test("new RateLimiter() rejects a rate that is not above zero", () => {
  for (const rate of [0, -1, Number.NaN]) {
    assert.throws(() => new RateLimiter(rate, 0), RangeError, `rate ${rate}`);
  }
});

Deno.test("RateLimiter: the long-run rate is exact, for any block size and rate", () => {
  const cases = [
    { bytesPerSec: MiB, blockBytes: 64 * KiB },
    { bytesPerSec: 512 * KiB, blockBytes: 16 * KiB },
    { bytesPerSec: 3 * MiB + 17, blockBytes: 256 * KiB },
    { bytesPerSec: 1000, blockBytes: 333 }, // waits that are not whole milliseconds
    { bytesPerSec: 100 * MiB, blockBytes: 16 * KiB },
  ];
  for (const { bytesPerSec, blockBytes } of cases) {
    const startMs = 12_345.678;
    const limiter = new RateLimiter(bytesPerSec, startMs);
    const seconds = 100;
    const taken = drain(limiter, { startMs, untilMs: startMs + seconds * 1000, blockBytes });
    const bytes = taken.length * blockBytes;
    const ideal = bytesPerSec * seconds;
    // Off by at most one block (the debt a taker may run) plus the idle burst.
    assert.ok(
      Math.abs(bytes - ideal) <= blockBytes + limiter.burstBytes,
      `${bytesPerSec} B/s in ${blockBytes} B blocks: ${bytes} bytes in ${seconds}s, ideal ${ideal}`,
    );
    assert.ok(
      Math.abs(bytes / ideal - 1) < 0.01,
      `${bytesPerSec} B/s: long-run rate off by ${((bytes / ideal - 1) * 100).toFixed(2)}%`,
    );
    // Over every 5-second window the rate holds within 10%.
    for (let from = startMs; from + 5000 <= startMs + seconds * 1000; from += 2500) {
      const inWindow = taken.filter((t) => t >= from && t < from + 5000).length * blockBytes;
      assert.ok(
        Math.abs(inWindow / (bytesPerSec * 5) - 1) <= 0.1,
        `${bytesPerSec} B/s: ${inWindow} bytes in the 5 s from ${from - startMs} ms`,
      );
    }
  }
});

Deno.test("RateLimiter: after a long idle the burst is bounded by burstBytes plus one block", () => {
  for (const burstMs of [0, 50, 100, 1000]) {
    const limiter = new RateLimiter(MiB, 0, burstMs);
    assert.equal(limiter.burstBytes, (MiB * burstMs) / 1000);
    const idleUntil = 3_600_000; // an hour idle saves no more than the burst
    assert.equal(limiter.available(idleUntil), limiter.burstBytes);
    const blockBytes = 16 * KiB;
    let taken = 0;
    while (limiter.reserve(blockBytes, idleUntil) === 0) taken += blockBytes;
    assert.ok(
      taken <= limiter.burstBytes + blockBytes,
      `burst ${burstMs} ms: took ${taken} bytes at once, burst is ${limiter.burstBytes}`,
    );
    assert.ok(taken >= limiter.burstBytes, `burst ${burstMs} ms: took only ${taken} bytes`);
  }
});

Deno.test("RateLimiter: a taker's debt makes the next taker wait until it is paid", () => {
  const bytesPerSec = MiB;
  const limiter = new RateLimiter(bytesPerSec, 1000, 100);
  // Fresh bucket: nothing saved, but a taker may go first and run into debt.
  assert.equal(limiter.available(1000), 0);
  assert.equal(limiter.reserve(4 * MiB, 1000), 0);
  assert.equal(limiter.available(1000), -4 * MiB);
  // The next one (any size) waits the 4 seconds the debt takes to pay off.
  assert.equal(limiter.reserve(1, 1000), 4000);
  assert.equal(limiter.reserve(1, 3000), 2000, "half the debt paid after 2 s");
  assert.equal(limiter.reserve(1, 4999), 1);
  assert.equal(limiter.reserve(1, 5000), 0, "debt paid: the bytes go");
  assert.ok(Math.abs(limiter.available(5000) - -1) < 1e-6, "only the 1 byte is owed now");
  // A wait that is not whole milliseconds is rounded up, never down.
  const odd = new RateLimiter(3000, 0);
  assert.equal(odd.reserve(10, 0), 0);
  assert.equal(odd.reserve(10, 0), Math.ceil((10 * 1000) / 3000));
});

Deno.test("throttle() resolves at once without a limiter, whatever the size", async () => {
  let settled = false;
  const done = throttle(undefined, Number.MAX_SAFE_INTEGER).then(() => (settled = true));
  // No timer is involved: two microtask turns are enough.
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(settled, true);
  await done;
});

Deno.test("throttle() waits for the debt, and an abort ends the wait early", async () => {
  // 1 byte/s with a big debt: the wait would be days; the abort must end it.
  const limiter = new RateLimiter(1, performance.now());
  assert.equal(limiter.reserve(1_000_000, performance.now()), 0);
  const controller = new AbortController();
  let settled = false;
  const waiting = throttle(limiter, 1, controller.signal).then(() => (settled = true));
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(settled, false, "throttle resolved while the limiter was in debt");
  controller.abort();
  await waiting;
  assert.equal(settled, true);
  // A limiter with tokens saved lets a small take through without a timer.
  const roomy = new RateLimiter(MiB, performance.now() - 1000, 1000);
  let quick = false;
  const fast = throttle(roomy, 1024).then(() => (quick = true));
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(quick, true);
  await fast;
});
