/**
 * @module rate
 * Transfer rate over a sliding window, for progress lines and ETAs. Pure: the caller passes the
 * current time (milliseconds from a monotonic clock).
 */

/** Measures bytes per second over the last `windowMs`. */
export class RateMeter {
  readonly windowMs: number;
  #samples: { atMs: number; bytes: number }[] = [];
  #total = 0;

  constructor(windowMs = 3000) {
    this.windowMs = windowMs;
  }

  /** Total bytes ever added. */
  get total(): number {
    return this.#total;
  }

  /** Records `bytes` transferred at `nowMs`. */
  add(bytes: number, nowMs: number): void {
    this.#total += bytes;
    const last = this.#samples[this.#samples.length - 1];
    // Samples are bucketed per 100 ms so memory stays bounded at any packet rate.
    if (last && nowMs - last.atMs < 100) last.bytes += bytes;
    else this.#samples.push({ atMs: nowMs, bytes });
    this.#trim(nowMs);
  }

  /** Bytes per second over the window ending at `nowMs`. */
  rate(nowMs: number): number {
    this.#trim(nowMs);
    if (this.#samples.length === 0) return 0;
    // At least 250 ms, so a short burst does not read as an absurd rate.
    const span = Math.max(nowMs - this.#samples[0].atMs, 250);
    let bytes = 0;
    for (const s of this.#samples) bytes += s.bytes;
    return (bytes * 1000) / Math.min(span, this.windowMs);
  }

  #trim(nowMs: number): void {
    while (this.#samples.length > 0 && nowMs - this.#samples[0].atMs > this.windowMs) {
      this.#samples.shift();
    }
  }
}
