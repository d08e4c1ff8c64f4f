/**
 * @module cli/announce
 * Keeps a share registered with its trackers for the life of a command, or does nothing when
 * there are none: seed and download share this so both say hello, re-announce and say goodbye
 * the same way.
 */

import type { EventSink } from "../events.ts";
import type { ShareStorage } from "../storage.ts";
import { Announcer, type TrackerPeer } from "../tracker_client.ts";
import { toHex } from "../units.ts";

/** A running registration; `stop` says goodbye and waits for every announce loop. */
export interface Registration {
  completed(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts announcing the share held in `storage` to `urls` (none: a registration that does
 * nothing). What is left, uploaded and downloaded is read afresh for every announce.
 *
 * @throws {UsageError} when a tracker address is malformed
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
