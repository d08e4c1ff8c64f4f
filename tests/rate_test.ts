import assert from "node:assert/strict";
import { RateMeter } from "../lib/rate.ts";

function assertNear(actual: number, expected: number, tolerance: number, what = ""): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what} expected ${expected} ± ${tolerance}, got ${actual}`,
  );
}

Deno.test("RateMeter.rate() is 0 before anything was added", () => {
  const meter = new RateMeter();
  assert.equal(meter.windowMs, 3000);
  assert.equal(meter.rate(0), 0);
  assert.equal(meter.rate(123_456), 0);
  assert.equal(meter.total, 0);
});

function steadyRate(windowMs: number, bytesPerTick: number, tickMs: number): number {
  const meter = new RateMeter(windowMs);
  let now = 1_000_000; // monotonic clocks need not start at 0
  for (let i = 0; i < (3 * windowMs) / tickMs; i++) {
    now += tickMs;
    meter.add(bytesPerTick, now);
  }
  return meter.rate(now);
}

Deno.test("RateMeter.rate() measures a steady rate of frequent samples", () => {
  const cases: { windowMs: number; bytesPerTick: number; tickMs: number; expected: number }[] = [
    { windowMs: 3000, bytesPerTick: 1000, tickMs: 100, expected: 10_000 },
    { windowMs: 3000, bytesPerTick: 5000, tickMs: 50, expected: 100_000 },
    { windowMs: 10_000, bytesPerTick: 64 * 1024, tickMs: 200, expected: 327_680 },
  ];
  for (const c of cases) {
    // Within 5%: the window holds one sample more than whole intervals (see the test below).
    const rate = steadyRate(c.windowMs, c.bytesPerTick, c.tickMs);
    assertNear(rate, c.expected, c.expected * 0.05, JSON.stringify(c));
  }
});

Deno.test({
  name: "RateMeter.rate() measures a steady rate of infrequent samples",
  fn() {
    const cases: { windowMs: number; bytesPerTick: number; tickMs: number; expected: number }[] = [
      { windowMs: 3000, bytesPerTick: 256 * 1024, tickMs: 1000, expected: 256 * 1024 },
      { windowMs: 5000, bytesPerTick: 1, tickMs: 1000, expected: 1 },
      { windowMs: 1000, bytesPerTick: 64 * 1024, tickMs: 200, expected: 327_680 },
    ];
    for (const c of cases) {
      const rate = steadyRate(c.windowMs, c.bytesPerTick, c.tickMs);
      assertNear(rate, c.expected, c.expected * 0.05, JSON.stringify(c));
    }
  },
});

Deno.test("RateMeter.add() accumulates the total whatever the window", () => {
  const meter = new RateMeter(1000);
  meter.add(10, 0);
  meter.add(20, 50); // same 100 ms bucket
  meter.add(30, 5000);
  assert.equal(meter.total, 60);
});

Deno.test("RateMeter forgets samples older than the window", () => {
  const meter = new RateMeter(3000);
  meter.add(6000, 0);
  assert.ok(meter.rate(2000) > 0);
  assert.equal(meter.rate(2000), 3000, "6000 bytes over 2 s");
  assert.ok(meter.rate(2999) > 0, "a sample just inside the window still counts");
  assert.equal(meter.rate(3000), 0, "one window old, it expires");
  assert.equal(meter.total, 6000, "the total keeps expired bytes");
  // After a pause, the rate is what arrived in the last window, over the window.
  meter.add(1000, 10_000);
  meter.add(1000, 10_500);
  assertNear(meter.rate(11_000), 2000 / 3, 1);
});

Deno.test("RateMeter.rate() drops old samples but keeps recent ones on a sliding window", () => {
  const meter = new RateMeter(1000);
  meter.add(100_000, 0); // a fast start
  meter.add(1000, 900);
  meter.add(1000, 1400);
  // At 1500 the first sample is 1500 ms old and gone: 2000 bytes over the 1000 ms window.
  assertNear(meter.rate(1500), 2000, 1);
});

Deno.test("RateMeter.rate() floors the span at 250 ms so a burst does not read as absurd", () => {
  const meter = new RateMeter();
  meter.add(1000, 0);
  assert.equal(meter.rate(0), 4000, "1000 bytes over the 250 ms floor");
  assert.equal(meter.rate(10), 4000);
  assert.equal(meter.rate(250), 4000);
  assert.equal(meter.rate(500), 2000, "past the floor, the real span counts");
  const burst = new RateMeter();
  for (let i = 0; i < 100; i++) burst.add(1500, 5000 + i * 0.5); // 100 packets in 50 ms
  assert.equal(burst.rate(5050), 600_000);
  assert.ok(Number.isFinite(burst.rate(5000)));
});
