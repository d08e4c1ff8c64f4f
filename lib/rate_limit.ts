/**
 * @module rate_limit
 * A token bucket shared by every connection of one direction, so `--max-upload-rate` and
 * `--max-download-rate` hold for the whole program, not per peer. Pure: the caller passes the
 * time (ms, monotonic) and sleeps for the delay it is told.
 *
 * Transfers take their bytes first and may run the bucket into debt by one block; the next
 * taker then waits until the debt is paid. The long-run rate is exact and the error over any
 * window is at most one block plus the burst, which callers keep small next to the rate.
 */

/** Token bucket limiting bytes per second. */
export class RateLimiter {
  readonly bytesPerSec: number;
  /** Most tokens saved up while idle: a short burst, so a window never runs far above the rate. */
  readonly burstBytes: number;
  #tokens: number;
  #lastMs: number;

  /**
   * @param bytesPerSec the limit (> 0)
   * @param nowMs the current time
   * @param burstMs how many milliseconds of tokens may accumulate while idle
   */
  constructor(bytesPerSec: number, nowMs: number, burstMs = 100) {
    if (!(bytesPerSec > 0)) throw new RangeError(`invalid rate ${bytesPerSec}`);
    this.bytesPerSec = bytesPerSec;
    this.burstBytes = (bytesPerSec * burstMs) / 1000;
    this.#tokens = 0;
    this.#lastMs = nowMs;
  }

  #refill(nowMs: number): void {
    const elapsed = Math.max(0, nowMs - this.#lastMs);
    this.#lastMs = nowMs;
    this.#tokens = Math.min(this.burstBytes, this.#tokens + (elapsed * this.bytesPerSec) / 1000);
  }

  /**
   * Milliseconds to wait before `bytes` may go (0: now). Call again after waiting; when it
   * answers 0 the bytes have been taken.
   */
  reserve(bytes: number, nowMs: number): number {
    this.#refill(nowMs);
    if (this.#tokens < 0) return Math.ceil((-this.#tokens * 1000) / this.bytesPerSec);
    this.#tokens -= bytes;
    return 0;
  }

  /** Tokens available now (negative while in debt). */
  available(nowMs: number): number {
    this.#refill(nowMs);
    return this.#tokens;
  }
}

/** Waits (with timers) until `limiter` lets `bytes` go; resolves at once without a limiter. */
export async function throttle(
  limiter: RateLimiter | undefined,
  bytes: number,
  signal?: AbortSignal,
): Promise<void> {
  if (!limiter) return;
  for (;;) {
    const waitMs = limiter.reserve(bytes, performance.now());
    if (waitMs === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, waitMs);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    });
    if (signal?.aborted) return;
  }
}
