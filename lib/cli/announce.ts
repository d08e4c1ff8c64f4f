/**
 * @module cli/announce
 * Keeps a share registered with its trackers for the life of a command, or does nothing when
 * there are none: seed and download share this so both say hello, re-announce and say goodbye
 * the same way.
 */

import type { EventSink } from "../events.ts";
import { type AnnounceParams, Announcer, type TrackerPeer } from "../tracker_client.ts";

/** A running registration; `stop` says goodbye and waits for every announce loop. */
export interface Registration {
  completed(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts announcing to `urls` (none: a registration that does nothing).
 *
 * @throws {UsageError} when a tracker address is malformed
 */
export function register(options: {
  urls: string[];
  params: () => AnnounceParams;
  sink: EventSink;
  signal: AbortSignal;
  onPeers?: (peers: TrackerPeer[]) => void;
}): Registration {
  if (options.urls.length === 0) {
    return { completed: () => Promise.resolve(), stop: () => Promise.resolve() };
  }
  const announcer = new Announcer({
    urls: options.urls,
    params: options.params,
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
