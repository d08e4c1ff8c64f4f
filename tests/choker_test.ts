/**
 * Unit tests of the choker (lib/choker.ts): the bounded upload slots, tit-for-tat ranking with
 * ties to the least-served peer, the optimistic slot, and, over many simulated rounds, that no
 * peer (however many connections it opens, however much it takes) holds every slot.
 */

import assert from "node:assert/strict";
import { type ChokeCandidate, chooseUnchoked, pickOptimistic } from "../lib/choker.ts";

/** An interested candidate uploading `rateFromThem` to us, served `bytesToThem` so far. */
function peer(id: string, rateFromThem = 0, bytesToThem = 0, interested = true): ChokeCandidate {
  return { id, interested, rateFromThem, bytesToThem };
}

/** A small deterministic random source (mulberry32), so rotations are reproducible. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * One round as the peer server runs it: every `optimisticRounds` rounds a new optimistic peer
 * is drawn among those outside the regular slots, then the slots are chosen with it.
 */
function simulateRounds(
  rounds: number,
  options: {
    slots: number;
    optimisticRounds?: number;
    random: () => number;
    candidates: (round: number) => ChokeCandidate[];
    onRound?: (unchoked: Set<string>, candidates: ChokeCandidate[]) => void;
  },
): Set<string>[] {
  const every = options.optimisticRounds ?? 3;
  let optimisticId: string | undefined;
  const out: Set<string>[] = [];
  for (let round = 0; round < rounds; round++) {
    const candidates = options.candidates(round);
    if (round % every === 0 || optimisticId === undefined) {
      const regular = chooseUnchoked(candidates, { slots: Math.max(1, options.slots - 1) });
      optimisticId = pickOptimistic(candidates, regular, options.random);
    }
    const unchoked = chooseUnchoked(candidates, { slots: options.slots, optimisticId });
    options.onRound?.(unchoked, candidates);
    out.push(unchoked);
  }
  return out;
}

Deno.test("chooseUnchoked() never unchokes more peers than there are slots", () => {
  const candidates = Array.from({ length: 12 }, (_, i) => peer(`p${i}`, (i * 37) % 11, i * 100));
  for (const slots of [2, 3, 4, 8, 11]) {
    for (const optimisticId of [undefined, "p0", "p11", "absent"]) {
      const chosen = chooseUnchoked(candidates, { slots, optimisticId });
      assert.equal(chosen.size, slots, `slots ${slots}, optimistic ${optimisticId}`);
      for (const id of chosen) assert.ok(candidates.some((c) => c.id === id), id);
    }
  }
});

Deno.test({
  name: "chooseUnchoked() with a single slot and an optimistic peer unchokes one peer",
  fn() {
    const candidates = [peer("best", 100), peer("other", 0), peer("third", 0)];
    const chosen = chooseUnchoked(candidates, { slots: 1, optimisticId: "other" });
    assert.equal(chosen.size, 1, `unchoked ${[...chosen]}`);
  },
});

Deno.test("chooseUnchoked() fills the regular slots with the peers that upload most to us", () => {
  const candidates = [
    peer("slow", 10),
    peer("fastest", 900),
    peer("idle", 0),
    peer("fast", 500),
    peer("medium", 200),
    peer("slower", 5),
  ];
  // 4 slots: 3 by tit for tat, and with no optimistic peer the fourth goes by rank too.
  assert.deepEqual(
    [...chooseUnchoked(candidates, { slots: 4 })].sort(),
    ["fast", "fastest", "medium", "slow"],
  );
  // 3 slots, optimistic "idle": the two best plus the optimistic one.
  assert.deepEqual(
    [...chooseUnchoked(candidates, { slots: 3, optimisticId: "idle" })].sort(),
    ["fast", "fastest", "idle"],
  );
});

Deno.test("chooseUnchoked() breaks ties in favour of the peers we have served least", () => {
  // A seeder: nobody uploads to it, so only what each was given decides.
  const candidates = [
    peer("a", 0, 5_000_000),
    peer("b", 0, 100),
    peer("c", 0, 3_000_000),
    peer("d", 0, 0),
    peer("e", 0, 250),
  ];
  assert.deepEqual([...chooseUnchoked(candidates, { slots: 3 })].sort(), ["b", "d", "e"]);
  // Rate first, bytes second: a peer uploading to us beats a less-served one.
  const mixed = [...candidates, peer("uploader", 1, 9_000_000)];
  assert.deepEqual([...chooseUnchoked(mixed, { slots: 2 })].sort(), ["d", "uploader"]);
  // Full ties are broken by id, so the answer does not depend on the input order.
  const tied = [peer("z"), peer("y"), peer("x"), peer("w")];
  assert.deepEqual([...chooseUnchoked(tied, { slots: 2 })].sort(), ["w", "x"]);
  assert.deepEqual([...chooseUnchoked([...tied].reverse(), { slots: 2 })].sort(), ["w", "x"]);
});

Deno.test("chooseUnchoked() always includes an interested optimistic peer, even the worst ranked", () => {
  const candidates = [
    peer("a", 400),
    peer("b", 300),
    peer("c", 200),
    peer("d", 100),
    peer("newcomer", 0, 0),
  ];
  const chosen = chooseUnchoked(candidates, { slots: 4, optimisticId: "newcomer" });
  assert.deepEqual([...chosen].sort(), ["a", "b", "c", "newcomer"]);
  // An optimistic peer that lost interest (or left) frees its slot for the next by rank.
  const bored = candidates.map((c) => c.id === "newcomer" ? { ...c, interested: false } : c);
  assert.deepEqual(
    [...chooseUnchoked(bored, { slots: 4, optimisticId: "newcomer" })].sort(),
    ["a", "b", "c", "d"],
  );
  assert.deepEqual(
    [...chooseUnchoked(candidates, { slots: 4, optimisticId: "gone" })].sort(),
    ["a", "b", "c", "d"],
  );
});

Deno.test("chooseUnchoked() unchokes every interested peer when they fit, and no uninterested one", () => {
  const candidates = [
    peer("a", 0),
    peer("b", 50),
    peer("bored", 999, 0, false),
    peer("c", 0, 10),
  ];
  for (const slots of [3, 4, 10]) {
    assert.deepEqual([...chooseUnchoked(candidates, { slots })].sort(), ["a", "b", "c"]);
  }
  assert.deepEqual([...chooseUnchoked([], { slots: 4 })], []);
  assert.deepEqual([...chooseUnchoked([peer("x", 0, 0, false)], { slots: 4 })], []);
  // One slot with more peers: the single slot still goes to someone.
  assert.equal(chooseUnchoked(candidates, { slots: 1 }).size, 1);
});

Deno.test("pickOptimistic() draws uniformly among interested peers outside the regular slots", () => {
  const candidates = [
    peer("regular1"),
    peer("w1"),
    peer("bored", 0, 0, false),
    peer("w2"),
    peer("regular2"),
    peer("w3"),
  ];
  const exclude = new Set(["regular1", "regular2"]);
  assert.equal(pickOptimistic(candidates, exclude, () => 0), "w1");
  assert.equal(pickOptimistic(candidates, exclude, () => 0.5), "w2");
  assert.equal(pickOptimistic(candidates, exclude, () => 0.999999), "w3");
  const counts = new Map<string, number>();
  const random = seededRandom(7);
  for (let i = 0; i < 3000; i++) {
    const id = pickOptimistic(candidates, exclude, random);
    assert.ok(id !== undefined);
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  assert.deepEqual([...counts.keys()].sort(), ["w1", "w2", "w3"]);
  for (const [id, n] of counts) assert.ok(n > 800 && n < 1200, `${id} drawn ${n} of 3000 times`);
  assert.equal(
    pickOptimistic(candidates, new Set(["w1", "w2", "w3", "regular1", "regular2"]), random),
    undefined,
  );
  assert.equal(pickOptimistic([], new Set(), random), undefined);
});

Deno.test("a greedy peer with many connections holds one slot, and every other peer gets turns", () => {
  // The peer server lists one candidate per connection: "greedy" opened six and uploads the
  // most to us, yet slots count peers, so the other slots (and the rotation) serve the rest.
  const slots = 4;
  const others = ["a", "b", "c", "d", "e", "f"];
  const candidates = [
    ...Array.from({ length: 6 }, () => peer("greedy", 1000)),
    ...others.map((id, i) => peer(id, i === 0 ? 50 : 0, i * 10)),
  ];
  const unchokedRounds = new Map<string, number>();
  const rounds = simulateRounds(60, {
    slots,
    random: seededRandom(42),
    candidates: () => candidates,
    onRound: (unchoked) => {
      for (const id of unchoked) unchokedRounds.set(id, (unchokedRounds.get(id) ?? 0) + 1);
    },
  });
  for (const unchoked of rounds) {
    assert.equal(unchoked.size, slots, `round unchoked ${[...unchoked]}`);
    assert.ok(unchoked.has("greedy"), "the best uploader lost its slot");
    assert.ok([...unchoked].filter((id) => id !== "greedy").length === slots - 1);
  }
  for (const id of others) {
    assert.ok((unchokedRounds.get(id) ?? 0) > 0, `${id} was never unchoked in 60 rounds`);
  }
});

Deno.test("a greedy peer that only takes cannot keep a seeder's slots: uploads spread over everyone", () => {
  // A seeder (nobody uploads to it): each round every unchoked peer is sent what it asks for;
  // "greedy" asks ten times as much. Ties go to the least served, so it falls behind.
  const slots = 3;
  const ids = ["greedy", "a", "b", "c", "d", "e", "f"];
  const served = new Map(ids.map((id) => [id, 0]));
  const heldBy = new Map(ids.map((id) => [id, 0]));
  simulateRounds(90, {
    slots,
    random: seededRandom(3),
    candidates: () => ids.map((id) => peer(id, 0, served.get(id) ?? 0)),
    onRound: (unchoked) => {
      assert.equal(unchoked.size, slots);
      for (const id of unchoked) {
        served.set(id, (served.get(id) ?? 0) + (id === "greedy" ? 10 : 1));
        heldBy.set(id, (heldBy.get(id) ?? 0) + 1);
      }
    },
  });
  const rounds = 90;
  for (const id of ids) {
    assert.ok((heldBy.get(id) ?? 0) > 0, `${id} never got a slot`);
  }
  // Fair share of slot-rounds is 90 * 3 / 7 ≈ 39; the greedy peer gets well under all 90.
  const greedyRounds = heldBy.get("greedy") ?? 0;
  assert.ok(greedyRounds < rounds / 2, `greedy held a slot in ${greedyRounds} of ${rounds} rounds`);
  // Everyone else gets a fair share of turns (within a factor of two of 270 / 7).
  for (const id of ids.slice(1)) {
    const held = heldBy.get(id) ?? 0;
    assert.ok(held >= 20 && held <= 80, `${id} held a slot in ${held} of ${rounds} rounds`);
  }
});
