/**
 * @module capture_kit
 * Packet capture for the encryption tests: runs `tcpdump` on the loopback interface with a
 * filter on the test's own ports, and searches the capture for any 32-byte window of a known
 * file (found: the file crossed the wire in the clear). Does I/O (runs tcpdump, temp files).
 *
 * Needs Debian's `tcpdump` (`.ci/run` installs it) and the right to capture (root, or
 * CAP_NET_RAW). {@linkcode captureSupport} says whether both hold, so tests can skip with a
 * clear message instead of failing.
 */

import { join } from "node:path";

/** Window length searched for. */
export const WINDOW_BYTES = 32;
/** How long tcpdump may take to start capturing. */
const START_TIMEOUT_MS = 10_000;
/** How long the capture file may keep growing after the traffic is done. */
const SETTLE_TIMEOUT_MS = 5_000;

/** Whether capturing works here, and if not, why. */
export interface CaptureSupport {
  ok: boolean;
  reason: string;
}

/** What a finished capture holds. */
export interface CaptureResult {
  /** The pcap file's bytes. */
  bytes: Uint8Array;
  /** Packets the kernel dropped (tcpdump's own count): a capture with drops proves nothing. */
  droppedByKernel: number;
}

/** A running capture. */
export interface Capture {
  /** Waits for the capture file to settle, stops tcpdump, returns what it captured. */
  stop(): Promise<CaptureResult>;
}

/**
 * Checks once that `tcpdump` exists and may capture on `lo` (a 1-packet capture with a
 * filter that matches nothing, stopped as soon as it listens).
 */
export async function captureSupport(): Promise<CaptureSupport> {
  let capture: Capture;
  try {
    capture = await startCapture([1]);
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  await capture.stop();
  return { ok: true, reason: "" };
}

/**
 * Starts `tcpdump -i lo -U -w FILE 'tcp port A or tcp port B ...'` and resolves once it is
 * capturing.
 *
 * @param ports the TCP ports whose traffic is captured
 * @throws {Error} `tcpdump is not installed ...` or `tcpdump cannot capture here: ...`
 */
export async function startCapture(ports: number[]): Promise<Capture> {
  // tcpdump drops root privileges before it opens the file: the folder must be open to it.
  const dir = await Deno.makeTempDir({ prefix: "p2p_capture_" });
  await Deno.chmod(dir, 0o777);
  const file = join(dir, "capture.pcap");
  const filter = ports.map((p) => `tcp port ${p}`).join(" or ");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("tcpdump", {
      // A 64 MiB buffer (-B, in KiB): loopback segments are up to 64 KiB and come fast.
      // --immediate-mode: packets reach the file at once, not when a 1 s buffer block fills.
      args: ["-i", "lo", "-U", "--immediate-mode", "-n", "-B", "65536", "-w", file, filter],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    await Deno.remove(dir, { recursive: true });
    if (err instanceof Deno.errors.NotFound) {
      throw new Error("tcpdump is not installed (apt-get install -y tcpdump)");
    }
    throw new Error(`cannot run tcpdump: ${(err as Error).message}`);
  }
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let said = "";
  const ready = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return false;
      said += value;
      if (/listening on lo/.test(said)) return true;
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const listening = await Promise.race([
    ready,
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), START_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  // Keep draining stderr so tcpdump never blocks on it; the drain ends when it exits.
  const drained = (async () => {
    await ready;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      said += value;
    }
  })().catch(() => {});
  const finish = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await child.status;
    await drained;
  };
  if (!listening) {
    await finish();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(`tcpdump cannot capture here: ${said.trim() || "it never started listening"}`);
  }
  return {
    async stop() {
      try {
        await settle(file);
        await finish();
        const dropped = /(\d+) packets? dropped by kernel/.exec(said);
        return {
          bytes: await Deno.readFile(file),
          droppedByKernel: dropped ? Number(dropped[1]) : 0,
        };
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  };
}

/** Waits until the capture file has stopped growing for three checks in a row. */
async function settle(file: string): Promise<void> {
  const started = performance.now();
  let last = -1;
  let steady = 0;
  while (steady < 3 && performance.now() - started < SETTLE_TIMEOUT_MS) {
    const size = await Deno.stat(file).then((s) => s.size, () => 0);
    steady = size === last ? steady + 1 : 0;
    last = size;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const BASE = 0x01000193;

/** BASE^(WINDOW_BYTES) mod 2^32: what the byte leaving a window weighs in the rolling hash. */
function outWeight(windowBytes: number): number {
  let w = 1;
  for (let i = 0; i < windowBytes; i++) w = Math.imul(w, BASE);
  return w;
}

/**
 * Where some `windowBytes`-long window of `file` occurs in `haystack` (the capture), or
 * `undefined` when none does. Exact: every window of the file is indexed with a rolling hash
 * and every hash hit is compared byte for byte.
 *
 * @param haystack the captured bytes
 * @param file the file whose contents must not appear
 * @returns offsets in both, for the first window found
 */
export function findFileWindow(
  haystack: Uint8Array,
  file: Uint8Array,
  windowBytes = WINDOW_BYTES,
): { captureOffset: number; fileOffset: number } | undefined {
  if (file.length < windowBytes || haystack.length < windowBytes) return undefined;
  const weight = outWeight(windowBytes);
  const index = new Map<number, number[]>();
  let h = 0;
  for (let i = 0; i < file.length; i++) {
    h = (Math.imul(h, BASE) + file[i]) | 0;
    if (i >= windowBytes) h = (h - Math.imul(file[i - windowBytes], weight)) | 0;
    if (i >= windowBytes - 1) {
      const at = i - windowBytes + 1;
      const list = index.get(h);
      if (list) list.push(at);
      else index.set(h, [at]);
    }
  }
  h = 0;
  for (let i = 0; i < haystack.length; i++) {
    h = (Math.imul(h, BASE) + haystack[i]) | 0;
    if (i >= windowBytes) h = (h - Math.imul(haystack[i - windowBytes], weight)) | 0;
    if (i < windowBytes - 1) continue;
    const candidates = index.get(h);
    if (!candidates) continue;
    const start = i - windowBytes + 1;
    for (const at of candidates) {
      let same = true;
      for (let k = 0; k < windowBytes && same; k++) same = haystack[start + k] === file[at + k];
      if (same) return { captureOffset: start, fileOffset: at };
    }
  }
  return undefined;
}

/**
 * Total TCP payload bytes in a pcap capture (Ethernet, IPv4), to check that a capture holds a
 * whole transfer before concluding anything from what is absent in it.
 *
 * @param pcap a classic pcap file as tcpdump writes it
 * @returns the sum of the TCP payload lengths of all captured packets
 * @throws {SyntaxError} when it is not a pcap file
 */
export function tcpPayloadBytes(pcap: Uint8Array): number {
  const view = new DataView(pcap.buffer, pcap.byteOffset, pcap.byteLength);
  if (pcap.length < 24) throw new SyntaxError("not a pcap file (too short)");
  const magic = view.getUint32(0, true);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (
    !little && view.getUint32(0, false) !== 0xa1b2c3d4 && view.getUint32(0, false) !== 0xa1b23c4d
  ) {
    throw new SyntaxError("not a pcap file (bad magic)");
  }
  let total = 0;
  let at = 24;
  while (at + 16 <= pcap.length) {
    const captured = view.getUint32(at + 8, little);
    const packet = at + 16;
    at = packet + captured;
    if (at > pcap.length || captured < 14 + 20) continue;
    if (view.getUint16(packet + 12) !== 0x0800) continue; // not IPv4
    const ip = packet + 14;
    const ipHeader = (pcap[ip] & 0x0f) * 4;
    if (pcap[ip + 9] !== 6) continue; // not TCP
    const ipLength = view.getUint16(ip + 2);
    const tcpHeader = (pcap[ip + ipHeader + 12] >> 4) * 4;
    total += Math.max(0, ipLength - ipHeader - tcpHeader);
  }
  return total;
}
