/**
 * @module settle
 * What every timed run of the benchmark starts from, untimed: the previous run's dirty pages
 * written back (`sync`), and free memory that the machine can hand out at full speed.
 *
 * Why the second: on the virtual machines we measure on, the guest gives freed memory back to
 * its host (free page reporting, a couple of seconds after it is freed), and the first write to
 * such memory costs the host a fault. Every run deletes the 1 GiB it wrote, so the next run's
 * page cache landed on given-back memory or not depending on timing: the same minimal Deno copy
 * took 1.23 s or 3.1 s (1.9-2.4 s more system time, all of it in copying into the page cache),
 * alternating run by run, and always 3.1 s when the run began 4 s after the delete. Touching
 * some free memory in a child that then exits, just before the run, leaves pages the host
 * already backs at the head of the free lists: the same runs then took 1.23-1.35 s. The
 * contenders all get the same treatment; `--no-pretouch` turns it off to see the difference.
 */

/** Bytes of free memory touched before each run (0: none). Set once by the benchmark. */
let pretouchBytes = 0;

/**
 * Sets how much free memory is touched before each run: `bytes`, but never more than half of
 * what the system has available now.
 *
 * @returns the amount chosen
 */
export function setPretouch(bytes: number): number {
  let available = Infinity;
  try {
    available = Deno.systemMemoryInfo().available;
  } catch {
    // Not available here: the asked amount is used.
  }
  pretouchBytes = Math.max(0, Math.floor(Math.min(bytes, available / 2)));
  return pretouchBytes;
}

/** `sync`, then touch free memory (see the module doc). Untimed: call before starting a clock. */
export async function settleBeforeRun(): Promise<void> {
  await new Deno.Command("sync", { stdout: "null", stderr: "null" }).output().catch(() => {});
  if (pretouchBytes > 0) await pretouch(pretouchBytes);
}

/**
 * Allocates `bytes` in a child Deno and writes one byte per 4 KiB page, then exits, freeing it.
 * A child, so the memory is returned at once instead of whenever the GC gets to it.
 */
async function pretouch(bytes: number): Promise<void> {
  const chunk = 256 * 1024 * 1024;
  const code = `const keep = [];
for (let left = ${bytes}; left > 0; left -= ${chunk}) {
  const b = new Uint8Array(Math.min(${chunk}, left));
  for (let i = 0; i < b.length; i += 4096) b[i] = 1;
  keep.push(b);
}`;
  await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => {});
}
