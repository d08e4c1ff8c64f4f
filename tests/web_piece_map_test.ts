import assert from "node:assert/strict";
import { applyPieceMap, encodePieceMap } from "../lib/web/piece_map.ts";

/** Deterministic pseudo-random states (xorshift), so failures reproduce. */
function randomStates(count: number, seed: number, weights = [1, 1, 1]): Uint8Array {
  let x = seed || 1;
  const total = weights[0] + weights[1] + weights[2];
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const r = ((x >>> 0) % 1000) / 1000 * total;
    out[i] = r < weights[0] ? 0 : r < weights[0] + weights[1] ? 1 : 2;
  }
  return out;
}

function full(count: number, state: number): Uint8Array {
  return new Uint8Array(count).fill(state);
}

Deno.test("encodePieceMap() then applyPieceMap() gives the states back, whatever the pattern", () => {
  const cases: [string, Uint8Array][] = [
    ["no pieces", new Uint8Array(0)],
    ["one missing piece", full(1, 0)],
    ["one verified piece", full(1, 2)],
    ["all verified", full(5000, 2)],
    ["all missing", full(100_000, 0)],
    ["in order, half done", new Uint8Array(1001).fill(2, 0, 500).fill(1, 500, 504)],
    ["random, 3 pieces", randomStates(3, 7)],
    ["random, 4 pieces", randomStates(4, 8)],
    ["random, 5 pieces", randomStates(5, 9)],
    ["random, 1000 pieces", randomStates(1000, 42)],
    ["random, 100,000 pieces", randomStates(100_000, 99)],
    ["sparse verified", randomStates(50_000, 3, [50, 0, 1])],
  ];
  for (const [label, states] of cases) {
    const text = encodePieceMap(states);
    assert.ok(text !== null, label);
    assert.match(text, /^[rp]:/, label);
    assert.deepEqual(applyPieceMap(text, states.length), states, label);
  }
});

Deno.test("encodePieceMap() picks the shorter form: runs for runs, packed for noise", () => {
  assert.equal(encodePieceMap(new Uint8Array(1000).fill(2, 0, 600)), "r:2go,0b4");
  assert.equal(encodePieceMap(new Uint8Array([2, 2, 2, 0])), "p:Kg==", "tiny: packed is shorter");
  assert.equal(encodePieceMap(full(100_000, 2)), `r:2${(100_000).toString(36)}`);
  const noise = encodePieceMap(randomStates(100_000, 5)) ?? "";
  assert.ok(noise.startsWith("p:"), "random states are packed");
  // 2 bits a piece, base64: 100,000 pieces in about 33 KB, never more.
  assert.ok(noise.length <= 2 + 4 * Math.ceil(25_000 / 3), `packed length ${noise.length}`);
});

Deno.test("encodePieceMap() sends what changed as a delta, and null when nothing did", () => {
  const before = new Uint8Array(100_000).fill(2, 0, 40_000);
  const after = before.slice();
  after.fill(1, 40_000, 40_004);
  after[99_999] = 2;
  const delta = encodePieceMap(after, before);
  assert.equal(delta, `d:1${(40_000).toString(36)}.4,2${(99_999).toString(36)}`);
  assert.deepEqual(applyPieceMap(delta, before.length, { base: before.slice() }), after);
  assert.equal(encodePieceMap(after, after.slice()), null);
});

Deno.test("applyPieceMap() applies a chain of deltas like a page does", () => {
  let page: Uint8Array | undefined;
  let previous: Uint8Array | undefined;
  for (let step = 0; step < 30; step++) {
    const states = randomStates(3000, step + 1, [10, 1, step]);
    // A few steps change only a little: the delta form is the one that travels.
    if (step % 3 === 1 && previous) {
      states.set(previous);
      states.fill(2, step * 10, step * 10 + 5);
    }
    const text = encodePieceMap(states, previous);
    if (text !== null) page = applyPieceMap(text, states.length, { base: page });
    assert.deepEqual(page, states, `step ${step} (${text?.slice(0, 2)})`);
    previous = states.slice();
  }
});

Deno.test("encodePieceMap() sends unknown state values as missing", () => {
  const text = encodePieceMap(new Uint8Array([2, 7, 255, 1]));
  assert.ok(text !== null);
  assert.deepEqual(applyPieceMap(text, 4), new Uint8Array([2, 0, 0, 1]));
});

Deno.test("applyPieceMap() rejects maps that do not fit the share", () => {
  const bad: [string, Uint8Array | undefined, string, number][] = [
    ["runs too short", undefined, "r:23", 4],
    ["runs too long", undefined, "r:25", 4],
    ["zero run", undefined, "r:20,24", 4],
    ["bad state", undefined, "r:34", 4],
    ["bad count digits", undefined, "r:2Z", 4],
    ["packed wrong size", undefined, "p:AAAA", 4],
    ["packed not base64", undefined, "p:!!!!", 4],
    ["packed state 3", undefined, "p:Aw==", 4],
    ["delta without a base", undefined, "d:20", 4],
    ["delta past the end", new Uint8Array(4), "d:23.2", 4],
    ["unknown form", undefined, "x:", 0],
    ["negative count", undefined, "r:", -1],
  ];
  for (const [label, base, text, count] of bad) {
    assert.throws(() => applyPieceMap(text, count, { base }), RangeError, label);
  }
});
