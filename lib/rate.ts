/**
 * @module rate
 * Transfer rate over a sliding window, for progress lines and ETAs. Pure: the caller passes the
 * current time (milliseconds from a monotonic clock).
 */

/** Samples closer together than this are merged, so memory stays bounded at any packet rate. */
const BUCKET_MS = 100;
/** Shortest span a rate is computed over, so a short burst does not read as an absurd rate. */
const MIN_SPAN_MS = 250;

/** Measures bytes per second over the last `windowMs`. */
export class RateMeter {
  readonly windowMs: number;
  #samples: { atMs: number; bytes: number }[] = [];
  #total = 0;
  #firstMs: number | undefined;

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
    this.#firstMs ??= nowMs;
    const last = this.#samples[this.#samples.length - 1];
    if (last && nowMs - last.atMs < BUCKET_MS) last.bytes += bytes;
    else this.#samples.push({ atMs: nowMs, bytes });
    this.#trim(nowMs);
  }

  /**
   * Bytes per second: the bytes of the last window over the window, or, until a whole window
   * has passed since the first byte, all bytes over the time since then (at least 250 ms, so a
   * short burst does not read as an absurd rate).
   */
  rate(nowMs: number): number {
    if (this.#firstMs === undefined) return 0;
    this.#trim(nowMs);
    let bytes = 0;
    for (const s of this.#samples) bytes += s.bytes;
    const span = Math.min(this.windowMs, Math.max(MIN_SPAN_MS, nowMs - this.#firstMs));
    return (bytes * 1000) / span;
  }

  #trim(nowMs: number): void {
    while (this.#samples.length > 0 && nowMs - this.#samples[0].atMs >= this.windowMs) {
      this.#samples.shift();
    }
  }
}
