/**
 * @module cli/announce
 * Keeps a share registered with its trackers for the life of a command, or does nothing when
 * there are none: seed and download share this so both say hello, re-announce and say goodbye
 * the same way, and trust an `https:` tracker's certificate the same way (`--tracker-ca`,
 * `--tracker-pin`).
 */

import { UsageError } from "../errors.ts";
import type { EventSink } from "../events.ts";
import { parsePin, type TrackerTrust } from "../https_trust.ts";
import type { ShareStorage } from "../storage.ts";
import { Announcer, type TrackerPeer } from "../tracker_client.ts";
import { toHex } from "../units.ts";
import type { OptionSpec } from "./args.ts";

/** A running registration; `stop` says goodbye and waits for every announce loop. */
export interface Registration {
  completed(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts announcing the share held in `storage` to `urls` (none: a registration that does
 * nothing). What is left, uploaded and downloaded is read afresh for every announce.
 *
 * @throws {UsageError} when a tracker address or the pin is malformed
 */
export function register(options: {
  urls: string[];
  storage: ShareStorage;
  peerId: Uint8Array;
  /** The port we accept peers on. */
  port: number;
  counters: () => { uploaded: number; downloaded: number };
  sink: EventSink;
  signal: AbortSignal;
  onPeers?: (peers: TrackerPeer[]) => void;
  /**
   * How `https:` trackers are trusted: `caFile` (`--tracker-ca FILE`) or `pinSha256`
   * (`--tracker-pin SHA256`); neither: the system roots. Check it first with
   * {@linkcode checkTrackerTrust}.
   */
  trust?: { caFile?: string; pinSha256?: string };
}): Registration {
  if (options.urls.length === 0) {
    return { completed: () => Promise.resolve(), stop: () => Promise.resolve() };
  }
  const announcer = new Announcer({
    urls: options.urls,
    params: () => {
      const { meta } = options.storage;
      return {
        infoHash: meta.infoHash,
        peerId: toHex(options.peerId),
        port: options.port,
        left: options.storage.bytesWanted - options.storage.bytesHaveWanted,
        ...options.counters(),
        name: meta.info.name,
      };
    },
    sink: options.sink,
    onPeers: options.onPeers,
    trust: options.trust,
  });
  const running = announcer.start(options.signal);
  return {
    completed: () => announcer.completed(),
    async stop() {
      await announcer.stop();
      await running;
    },
  };
}

/**
 * Checks `--tracker-ca FILE` and `--tracker-pin SHA256` before anything starts, so a typo is a
 * usage error (exit 2) rather than a warning repeated by every announce.
 *
 * @param flags the two flag values as typed (either may be absent)
 * @returns the trust to hand to {@linkcode register} (the pin normalised), or `undefined` when
 *   neither flag was given (the system roots)
 * @throws {UsageError} when both are given, the CA file cannot be read or holds no PEM
 *   certificate, or the pin is not a SHA-256 fingerprint
 */
export async function checkTrackerTrust(
  flags: { caFile?: string; pinSha256?: string },
): Promise<TrackerTrust | undefined> {
  const { caFile, pinSha256 } = flags;
  if (caFile !== undefined && pinSha256 !== undefined) {
    throw new UsageError(
      "--tracker-ca and --tracker-pin are alternatives: give one (a pin already names the " +
        "one certificate to accept)",
    );
  }
  if (pinSha256 !== undefined) return { pinSha256: parsePin(pinSha256) };
  if (caFile === undefined) return undefined;
  if (caFile === "") throw new UsageError("--tracker-ca must not be empty");
  let pem: string;
  try {
    pem = await Deno.readTextFile(caFile);
  } catch (err) {
    throw new UsageError(`cannot read --tracker-ca ${caFile}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new UsageError(`--tracker-ca ${caFile} holds no PEM certificate`);
  }
  return { caFile };
}

/** The tracker-trust options seed and download take. */
export const TRUST_OPTIONS: OptionSpec = {
  "tracker-ca": { type: "string" },
  "tracker-pin": { type: "string" },
};

/** Their help text. */
export const TRUST_USAGE =
  `  --tracker-ca FILE       trust an https:// tracker whose certificate is signed by (or is) a
                          certificate in this PEM file, e.g. the tracker's self-signed cert.pem
  --tracker-pin SHA256    trust an https:// tracker whose certificate has this SHA-256
                          fingerprint, as the tracker prints it at start (instead of --tracker-ca)`;
