/**
 * @module choker
 * Decides which interested peers we upload to (unchoke): a bounded number of slots, most of
 * them for the peers that upload the most to us (tit for tat), ties going to the peers we have
 * given the least (so a seeder shares its upload fairly), plus one optimistic slot that rotates
 * among the others so newcomers get a start and a greedy peer cannot hold every slot.
 * Pure: the caller passes the numbers and the randomness.
 */

/** What the choker knows of one connected peer. */
export interface ChokeCandidate {
  id: string;
  interested: boolean;
  /** Bytes per second this peer currently uploads to us (0 when we only seed). */
  rateFromThem: number;
  /** Bytes we uploaded to it so far. */
  bytesToThem: number;
}

/**
 * The set of peer ids to unchoke: up to `slots - 1` regular slots by tit for tat, plus the
 * optimistic one (when it is still a choked, interested candidate) — or every interested peer
 * when they fit.
 */
export function chooseUnchoked(
  candidates: readonly ChokeCandidate[],
  options: { slots: number; optimisticId?: string },
): Set<string> {
  const interested = candidates.filter((c) => c.interested);
  if (interested.length <= options.slots) return new Set(interested.map((c) => c.id));
  // The optimistic peer, when there is one, takes the last slot (the only one when slots is 1).
  const hasOptimistic = options.optimisticId !== undefined &&
    interested.some((c) => c.id === options.optimisticId);
  const regular = hasOptimistic ? options.slots - 1 : options.slots;
  const ranked = [...interested].sort((a, b) =>
    b.rateFromThem - a.rateFromThem || a.bytesToThem - b.bytesToThem || (a.id < b.id ? -1 : 1)
  );
  const chosen = new Set(ranked.slice(0, regular).map((c) => c.id));
  if (hasOptimistic) chosen.add(options.optimisticId as string);
  // Fill any slot left (no optimistic peer) by rank.
  for (const c of ranked) {
    if (chosen.size >= options.slots) break;
    chosen.add(c.id);
  }
  return chosen;
}

/**
 * Picks the next optimistic peer among interested peers not in the regular slots, uniformly at
 * random, so every waiting peer gets its turn over time.
 */
export function pickOptimistic(
  candidates: readonly ChokeCandidate[],
  exclude: ReadonlySet<string>,
  random: () => number,
): string | undefined {
  const pool = candidates.filter((c) => c.interested && !exclude.has(c.id));
  if (pool.length === 0) return undefined;
  return pool[Math.floor(random() * pool.length)].id;
}
