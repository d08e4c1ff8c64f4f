import assert from "node:assert/strict";
import { Bitfield } from "../lib/bitfield.ts";
import { PiecePicker, type Random } from "../lib/picker.ts";

/** A seeded, repeatable random source (mulberry32). */
function seeded(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bits(size: number, indexes: number[]): Bitfield {
  const field = new Bitfield(size);
  for (const i of indexes) field.set(i);
  return field;
}

/** Picks until the picker has nothing more for `peerHas`, returning the picks in order. */
function drain(
  picker: PiecePicker,
  peerHas: Bitfield,
  options: { exclude?: ReadonlySet<number>; endGame?: boolean } = {},
): number[] {
  const picks: number[] = [];
  for (let n = 0; n < 10_000; n++) {
    const index = picker.pick(peerHas, options);
    if (index === undefined) return picks;
    picks.push(index);
  }
  throw new Error("pick() never ran out");
}

Deno.test("pick() never picks a piece already held or one the peer lacks", () => {
  const have = bits(8, [0, 1, 6]);
  const peer = bits(8, [1, 2, 3, 6, 7]);
  const picker = new PiecePicker(have, { random: seeded(1) });
  assert.equal(picker.remaining, 5);
  const picks = drain(picker, peer);
  assert.deepEqual([...picks].sort((a, b) => a - b), [2, 3, 7]);
  assert.equal(picker.pick(Bitfield.full(8)) !== undefined, true, "other needed pieces remain");
});

Deno.test("pick() returns undefined for a peer with nothing we need", () => {
  const picker = new PiecePicker(bits(4, [0, 1]), { random: seeded(1) });
  assert.equal(picker.pick(bits(4, [0, 1])), undefined);
  assert.equal(picker.pick(new Bitfield(4)), undefined);
  assert.equal(picker.inFlightCount, 0, "a failed pick marks nothing in flight");
});

Deno.test("pick() takes the rarest piece first, by the availability addPeer() counts", () => {
  const picker = new PiecePicker(new Bitfield(4), { random: seeded(7) });
  picker.addPeer(Bitfield.full(4)); // 0:1 1:1 2:1 3:1
  picker.addPeer(bits(4, [0, 1, 2])); // 0:2 1:2 2:2 3:1
  picker.addPeer(bits(4, [0, 1])); // 0:3 1:3 2:2 3:1
  const picks = drain(picker, Bitfield.full(4));
  assert.equal(picks[0], 3);
  assert.equal(picks[1], 2);
  assert.deepEqual(picks.slice(2).sort(), [0, 1]);
});

Deno.test("removePeer() and addHave() change which piece is rarest", () => {
  const a = bits(3, [0, 1]);
  const picker = new PiecePicker(new Bitfield(3), { random: seeded(3) });
  picker.addPeer(a); // 0:1 1:1 2:0
  picker.addPeer(bits(3, [0, 2])); // 0:2 1:1 2:1
  picker.addHave(2); // 0:2 1:1 2:2
  picker.addHave(99); // out of range: ignored
  picker.addHave(-1);
  assert.equal(picker.pick(Bitfield.full(3)), 1);
  picker.release(1);
  picker.removePeer(a); // 0:1 1:0 2:2
  picker.removePeer(a); // never below zero: 0:0 1:0 2:2
  picker.addHave(0); // 0:1 1:0 2:2
  assert.equal(picker.pick(Bitfield.full(3)), 1);
  assert.equal(picker.pick(Bitfield.full(3)), 0);
  assert.equal(picker.pick(Bitfield.full(3)), 2);
});

Deno.test("pick() breaks ties at random, spreading first picks over all equally rare pieces", () => {
  const size = 8;
  const random = seeded(42);
  const counts = new Array<number>(size).fill(0);
  const rounds = 800;
  for (let round = 0; round < rounds; round++) {
    const picker = new PiecePicker(new Bitfield(size), { random });
    picker.addPeer(Bitfield.full(size));
    const index = picker.pick(Bitfield.full(size));
    assert.ok(index !== undefined);
    counts[index]++;
  }
  // Uniform would be 100 each; a picker without a random tie-break gives 800 to one piece.
  for (let i = 0; i < size; i++) {
    assert.ok(counts[i] > 60 && counts[i] < 140, `piece ${i} picked ${counts[i]}/${rounds}`);
  }
});

Deno.test("pick() with the same seed gives the same order, and ties only break among the rarest", () => {
  const order = (seed: number) => {
    const picker = new PiecePicker(new Bitfield(16), { random: seeded(seed) });
    picker.addPeer(Bitfield.full(16));
    picker.addPeer(bits(16, [0, 1, 2, 3, 4, 5, 6, 7])); // 8..15 are rarer
    return drain(picker, Bitfield.full(16));
  };
  const first = order(5);
  assert.deepEqual(order(5), first);
  assert.notDeepEqual(order(6), first, "another seed gives another order");
  assert.deepEqual(first.slice(0, 8).sort((a, b) => a - b), [8, 9, 10, 11, 12, 13, 14, 15]);
  assert.deepEqual(first.slice(8).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7]);
});

Deno.test("pick() does not hand out a piece in flight again outside the end game", () => {
  const picker = new PiecePicker(new Bitfield(2), { random: seeded(1) });
  const first = picker.pick(Bitfield.full(2));
  const second = picker.pick(Bitfield.full(2));
  assert.notEqual(first, second);
  assert.equal(picker.pick(Bitfield.full(2)), undefined);
  assert.equal(picker.inFlightCount, 2);
  assert.equal(picker.allInFlight, true);
});

Deno.test("pick({ endGame }) allows a second fetcher of a piece but not a third", () => {
  const picker = new PiecePicker(new Bitfield(1), { random: seeded(1) });
  assert.equal(picker.pick(Bitfield.full(1)), 0);
  assert.equal(picker.pick(Bitfield.full(1)), undefined);
  assert.equal(picker.pick(Bitfield.full(1), { endGame: true }), 0);
  assert.equal(picker.pick(Bitfield.full(1), { endGame: true }), undefined);
  assert.equal(picker.inFlightCount, 1, "one piece, fetched twice");
});

Deno.test("pick({ endGame }) prefers the piece with fewer fetchers", () => {
  const picker = new PiecePicker(new Bitfield(2), { random: seeded(9) });
  picker.addPeer(bits(2, [1])); // piece 0 is rarer
  assert.equal(picker.pick(Bitfield.full(2)), 0);
  assert.equal(picker.pick(Bitfield.full(2)), 1);
  assert.equal(picker.pick(Bitfield.full(2), { endGame: true }), 0);
  // Piece 0 now has two fetchers, so piece 1 comes next even though it is less rare.
  assert.equal(picker.pick(Bitfield.full(2), { endGame: true }), 1);
  assert.equal(picker.pick(Bitfield.full(2), { endGame: true }), undefined);
});

Deno.test("release() gives a piece back to the pool one fetcher at a time", () => {
  const picker = new PiecePicker(new Bitfield(1), { random: seeded(1) });
  assert.equal(picker.pick(Bitfield.full(1)), 0);
  assert.equal(picker.pick(Bitfield.full(1), { endGame: true }), 0);
  picker.release(0); // one fetcher left
  assert.equal(picker.inFlightCount, 1);
  assert.equal(picker.pick(Bitfield.full(1)), undefined, "still in flight once");
  picker.release(0);
  assert.equal(picker.inFlightCount, 0);
  assert.equal(picker.allInFlight, false);
  assert.equal(picker.pick(Bitfield.full(1)), 0, "picked again after the last release");
  picker.release(0);
  picker.release(0); // releasing a piece not in flight is harmless
  assert.equal(picker.inFlightCount, 0);
  assert.equal(picker.remaining, 1);
});

Deno.test("complete() removes a piece for good and done turns true after the last", () => {
  const picker = new PiecePicker(bits(3, [1]), { random: seeded(1) });
  assert.equal(picker.remaining, 2);
  assert.equal(picker.done, false);
  assert.equal(picker.needs(0), true);
  assert.equal(picker.needs(1), false, "held pieces are not needed");
  const a = picker.pick(Bitfield.full(3));
  const b = picker.pick(Bitfield.full(3), { endGame: true });
  assert.ok(a !== undefined && b !== undefined);
  picker.complete(a);
  assert.equal(picker.needs(a), false);
  assert.equal(picker.remaining, 1);
  assert.equal(
    picker.pick(Bitfield.full(3), { endGame: true }),
    b,
    "a completed piece is never picked",
  );
  picker.complete(b);
  assert.equal(picker.remaining, 0);
  assert.equal(picker.done, true);
  assert.equal(picker.inFlightCount, 0, "complete() clears every fetcher of the piece");
  assert.equal(picker.allInFlight, true, "vacuously: nothing is needed");
  assert.equal(picker.pick(Bitfield.full(3), { endGame: true }), undefined);
});

Deno.test("pick() honours exclude", () => {
  const picker = new PiecePicker(new Bitfield(4), { random: seeded(1) });
  const picks = drain(picker, Bitfield.full(4), { exclude: new Set([0, 2]) });
  assert.deepEqual(picks.sort(), [1, 3]);
  assert.equal(picker.pick(Bitfield.full(4), { exclude: new Set([0]) }), 2);
  assert.equal(
    picker.pick(Bitfield.full(4), { exclude: new Set([0]), endGame: true }) !== 0,
    true,
    "exclude holds in the end game too",
  );
});

Deno.test("the wanted option limits picking to those pieces, minus the held ones", () => {
  const picker = new PiecePicker(bits(6, [3]), { random: seeded(1), wanted: [1, 3, 4] });
  assert.equal(picker.remaining, 2);
  assert.equal(picker.needs(0), false);
  assert.equal(picker.needs(3), false);
  assert.deepEqual(drain(picker, Bitfield.full(6)).sort(), [1, 4]);
  const none = new PiecePicker(new Bitfield(6), { wanted: [] });
  assert.equal(none.done, true);
  assert.equal(none.pick(Bitfield.full(6)), undefined);
});

Deno.test("a picker over zero pieces is done at once", () => {
  const picker = new PiecePicker(new Bitfield(0));
  assert.equal(picker.done, true);
  assert.equal(picker.pieceCount, 0);
  assert.equal(picker.pick(new Bitfield(0)), undefined);
});
