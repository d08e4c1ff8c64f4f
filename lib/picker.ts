/**
 * @module picker
 * Decides which piece to fetch next from which peer: rarest first, random among equals (so a
 * swarm does not all chase the same piece), each piece from one peer at a time until the end
 * game, when the last pieces may be fetched from several peers at once.
 * Pure: the caller supplies randomness and never gives it I/O.
 */

import type { Bitfield } from "./bitfield.ts";

/** Random number source in [0, 1); injected so tests are repeatable. */
export type Random = () => number;

/** Tracks which pieces are needed, how many peers hold each, and which are being fetched. */
export class PiecePicker {
  readonly pieceCount: number;
  #needed: Set<number>;
  #availability: Uint32Array;
  /** Piece index -> number of peers currently fetching it. */
  #inFlight = new Map<number, number>();
  #random: Random;

  /**
   * @param have pieces already held (never picked)
   * @param options `random` for tie-breaks; `wanted` limits picking to these pieces
   */
  constructor(have: Bitfield, options: { random?: Random; wanted?: Iterable<number> } = {}) {
    this.pieceCount = have.size;
    this.#availability = new Uint32Array(have.size);
    this.#random = options.random ?? Math.random;
    this.#needed = new Set();
    for (const i of options.wanted ?? Array.from({ length: have.size }, (_, k) => k)) {
      if (Number.isInteger(i) && i >= 0 && i < have.size && !have.has(i)) this.#needed.add(i);
    }
  }

  /** Pieces still needed (including those in flight). */
  get remaining(): number {
    return this.#needed.size;
  }

  /** True when nothing more is needed. */
  get done(): boolean {
    return this.#needed.size === 0;
  }

  /** Number of pieces being fetched right now. */
  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  /** True when piece `index` is still needed. */
  needs(index: number): boolean {
    return this.#needed.has(index);
  }

  /** A peer joined with these pieces. */
  addPeer(pieces: Bitfield): void {
    for (const i of pieces.indexes()) this.#availability[i]++;
  }

  /** A peer left; its pieces no longer count towards availability. */
  removePeer(pieces: Bitfield): void {
    for (const i of pieces.indexes()) if (this.#availability[i] > 0) this.#availability[i]--;
  }

  /** A peer announced one more piece. */
  addHave(index: number): void {
    if (index >= 0 && index < this.pieceCount) this.#availability[index]++;
  }

  /**
   * Picks the next piece to fetch from a peer holding `peerHas`, and marks it in flight.
   *
   * @param peerHas the peer's pieces
   * @param options `exclude`: pieces not to take from this peer (failed before, or already
   *   being fetched from it); `endGame`: allow pieces already in flight elsewhere
   * @returns a piece index, or `undefined` when this peer has nothing we can take
   */
  pick(
    peerHas: Bitfield,
    options: { exclude?: ReadonlySet<number>; endGame?: boolean } = {},
  ): number | undefined {
    let best: number | undefined;
    let bestAvailability = Infinity;
    let ties = 0;
    for (const i of this.#needed) {
      if (!peerHas.has(i) || options.exclude?.has(i)) continue;
      const flying = this.#inFlight.get(i) ?? 0;
      // Outside the end game a piece has one fetcher; inside it, at most two.
      if (flying > 0 && (!options.endGame || flying >= 2)) continue;
      // In the end game prefer the pieces with the fewest fetchers, then rarity.
      const score = flying * 1e6 + this.#availability[i];
      if (score < bestAvailability) {
        best = i;
        bestAvailability = score;
        ties = 1;
      } else if (score === bestAvailability) {
        ties++;
        if (this.#random() * ties < 1) best = i; // reservoir sampling: uniform among equals
      }
    }
    if (best !== undefined) this.#inFlight.set(best, (this.#inFlight.get(best) ?? 0) + 1);
    return best;
  }

  /** True when piece `index` is being fetched. */
  isInFlight(index: number): boolean {
    return this.#inFlight.has(index);
  }

  /** True when every needed piece is already in flight (the end game may begin). */
  get allInFlight(): boolean {
    for (const i of this.#needed) if (!this.#inFlight.has(i)) return false;
    return true;
  }

  /** A fetch of `index` ended without the piece (peer gone, rejected, failed its hash). */
  release(index: number): void {
    const n = this.#inFlight.get(index) ?? 0;
    if (n <= 1) this.#inFlight.delete(index);
    else this.#inFlight.set(index, n - 1);
  }

  /** Piece `index` is verified and stored: no longer needed. */
  complete(index: number): void {
    this.#needed.delete(index);
    this.#inFlight.delete(index);
  }
}
