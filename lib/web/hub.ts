/**
 * @module web/hub
 * The web monitor's state and fan-out: takes a snapshot when told to ({@linkcode MonitorHub.tick},
 * on the caller's timer), keeps the recent events and the rate history, and writes
 * server-sent events to every open page. One snapshot and one encoding per tick, whatever the
 * number of pages. No timers of its own and no sockets: it hands out `ReadableStream`s that a
 * `Response` carries, so tests drive it without either.
 *
 * Stream messages (each an SSE event whose data is JSON; see `view` for the shapes):
 * `hello` (first, everything needed to draw), `snapshot` (something changed), `tick` (nothing
 * changed), `p2p` (an event, pushed at once), `bye` (the program is stopping).
 */

import type { EventSink, P2PEvent } from "../events.ts";
import type { ShareSnapshot, SnapshotSource, TrackerSnapshot } from "../snapshot.ts";
import { encodePieceMap } from "./piece_map.ts";
import { sseFrame } from "./sse.ts";
import {
  type HelloMessage,
  type MonitorView,
  type RateSample,
  shareView,
  type StampedEvent,
  trackerView,
  trimEvent,
} from "./view.ts";

/** Recent events kept for a page that opens later. */
export const MAX_RECENT_EVENTS = 100;
/** Rate samples kept: at one per tick of 500 ms, the last five minutes. */
export const MAX_RATE_SAMPLES = 600;
/** Bytes queued for one page before it is dropped as too slow (it reconnects and resyncs). */
export const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** How long the browser waits before reconnecting a lost stream. */
export const RECONNECT_MS = 2000;

/** Settings for a {@linkcode MonitorHub}. */
export interface MonitorHubOptions {
  /** Monotonic clock in milliseconds (default `performance.now`). */
  now?: () => number;
  /** Wall clock in milliseconds since 1970, for event times (default `Date.now`). */
  wallClock?: () => number;
}

interface Captured {
  view: MonitorView;
  /** JSON of `view` without a piece map, to tell whether anything changed. */
  json: string;
  /** A copy of the piece states (shares only). */
  states?: Uint8Array;
  /** The full map of `states`, made when a page first needs it. */
  fullMap?: string;
}

const encoder = new TextEncoder();

/**
 * The monitor's hub: an {@linkcode EventSink} for the program's events and the source of every
 * page's event stream.
 *
 * @example
 * ```ts
 * const hub = new MonitorHub(source);
 * const timer = setInterval(() => hub.tick(), 500);
 * const handler = createWebHandler(hub, { tokenRequired: false });
 * // ... on shutdown:
 * clearInterval(timer);
 * hub.close();
 * ```
 */
export class MonitorHub implements EventSink {
  readonly source: SnapshotSource;
  #now: () => number;
  #wallClock: () => number;
  #startMs: number;
  #pages = new Set<PageStream>();
  #events: StampedEvent[] = [];
  #history: RateSample[] = [];
  #summary: StampedEvent | null = null;
  #last: Captured | undefined;
  #closed = false;

  constructor(source: SnapshotSource, options: MonitorHubOptions = {}) {
    this.source = source;
    this.#now = options.now ?? (() => performance.now());
    this.#wallClock = options.wallClock ?? (() => Date.now());
    this.#startMs = this.#now();
  }

  /** Pages connected right now. */
  get clientCount(): number {
    return this.#pages.size;
  }

  /** True once {@linkcode close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Records `event` and pushes it to every page. Never throws. */
  emit(event: P2PEvent): void {
    if (this.#closed || event.event === "progress") return; // progress is in every snapshot
    try {
      const stamped: StampedEvent = { time: this.#wallClock(), event: trimEvent(event) };
      this.#events.push(stamped);
      if (this.#events.length > MAX_RECENT_EVENTS) this.#events.shift();
      if (event.event === "complete") this.#summary = stamped;
      this.#broadcast(sseFrame({ event: "p2p", data: JSON.stringify(stamped) }));
    } catch {
      // A display must never disturb the transfer that feeds it.
    }
  }

  /**
   * Takes a snapshot, records the rates, and sends the pages what changed (a `snapshot`
   * message) or a `tick` when nothing did. Call it on a timer; it never throws.
   */
  tick(): void {
    if (this.#closed) return;
    const previous = this.#last;
    const captured = this.#capture();
    if (captured === undefined || this.#pages.size === 0) return;
    const t = this.#seconds();
    let pieceMap: string | null = null;
    if (captured.states !== undefined) {
      pieceMap = encodePieceMap(captured.states, previous?.states);
    }
    if (previous !== undefined && previous.json === captured.json && pieceMap === null) {
      this.#broadcast(sseFrame({ event: "tick", data: JSON.stringify({ t }) }));
      return;
    }
    const view = pieceMap === null ? captured.view : { ...captured.view, pieceMap };
    this.#broadcast(sseFrame({ event: "snapshot", data: JSON.stringify({ t, view }) }));
  }

  /**
   * A new page's event stream: the reconnect delay and a `hello` message first, then every
   * update until the page goes away or the hub closes.
   */
  connect(): ReadableStream<Uint8Array> {
    const page = new PageStream(() => this.#pages.delete(page));
    if (this.#closed) {
      page.push(encoder.encode(this.#byeFrame()));
      page.end();
      return page.stream;
    }
    this.#pages.add(page);
    page.push(encoder.encode(sseFrame({
      event: "hello",
      data: JSON.stringify(this.hello()),
      retryMs: RECONNECT_MS,
    })));
    return page.stream;
  }

  /**
   * Everything a page needs to draw: the last snapshot taken (each later update is relative to
   * it), with the full piece map, the rate history and the recent events.
   */
  hello(): HelloMessage {
    // Reuse the last tick's snapshot: the deltas that follow are relative to it.
    const last = this.#last ?? this.#capture();
    let view: MonitorView | null = last?.view ?? null;
    if (view !== null && view.role !== "tracker" && last?.states !== undefined) {
      last.fullMap ??= encodePieceMap(last.states) ?? "r:";
      view = { ...view, pieceMap: last.fullMap };
    }
    return {
      t: this.#seconds(),
      view,
      history: [...this.#history],
      events: [...this.#events],
      summary: this.#summary,
    };
  }

  /** A fresh snapshot with its full piece map (for `GET /snapshot`), not sent to pages. */
  current(): MonitorView | undefined {
    const snapshot = this.#snapshot();
    if (snapshot === undefined) return undefined;
    if (snapshot.role === "tracker") return trackerView(snapshot);
    return { ...shareView(snapshot), pieceMap: encodePieceMap(snapshot.pieceStates) ?? "r:" };
  }

  /**
   * Sends a last snapshot and `bye`, ends every stream, and refuses new ones.
   *
   * @returns settles once every page has read its stream to the end (or gone away): only
   *   then may the server stop, or it would cut the last messages
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.tick();
      this.#closed = true;
      const bye = encoder.encode(this.#byeFrame());
      for (const page of this.#pages) {
        page.push(bye);
        page.end();
      }
    }
    return Promise.all([...this.#pages].map((page) => page.finished)).then(() => {});
  }

  /** Ends at once the streams of pages that did not read their last messages after close. */
  dropAll(): void {
    for (const page of this.#pages) page.drop("web monitor stopped");
  }

  #byeFrame(): string {
    return sseFrame({ event: "bye", data: JSON.stringify({ t: this.#seconds() }) });
  }

  #seconds(): number {
    return Math.round(this.#now() - this.#startMs) / 1000;
  }

  #snapshot(): ShareSnapshot | TrackerSnapshot | undefined {
    try {
      return this.source.snapshot();
    } catch {
      return undefined; // keep showing the last good state
    }
  }

  #capture(): Captured | undefined {
    const snapshot = this.#snapshot();
    if (snapshot === undefined) return undefined;
    let captured: Captured;
    if (snapshot.role === "tracker") {
      const view = trackerView(snapshot);
      captured = { view, json: JSON.stringify(view) };
    } else {
      const view = shareView(snapshot);
      // A copy: the source may reuse its buffer, and the next delta is computed against this.
      captured = { view, json: JSON.stringify(view), states: snapshot.pieceStates.slice() };
      this.#history.push([
        this.#seconds(),
        view.downloadRateBytesPerSec,
        view.uploadRateBytesPerSec,
      ]);
      if (this.#history.length > MAX_RATE_SAMPLES) this.#history.shift();
    }
    this.#last = captured;
    return captured;
  }

  #broadcast(frame: string): void {
    if (this.#pages.size === 0) return;
    const bytes = encoder.encode(frame);
    for (const page of this.#pages) page.push(bytes);
  }
}

/**
 * One page's event stream: a queue that the hub fills and the response body drains. The body
 * pulls one message at a time, so the queue shows how far behind the page is, and the end of
 * the stream shows that the page has been handed everything.
 */
class PageStream {
  readonly stream: ReadableStream<Uint8Array>;
  /** Settles when the stream was read to its end, cancelled by the page, or dropped. */
  readonly finished: Promise<void>;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #ending = false;
  #done = false;
  #wake: (() => void) | undefined;
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  #settle: () => void = () => {};
  #onGone: () => void;

  constructor(onGone: () => void) {
    this.#onGone = onGone;
    this.finished = new Promise<void>((resolve) => (this.#settle = resolve));
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: async (controller) => {
        while (this.#queue.length === 0 && !this.#ending) {
          await new Promise<void>((resolve) => (this.#wake = resolve));
        }
        if (this.#done) return;
        const chunk = this.#queue.shift();
        if (chunk !== undefined) {
          this.#queuedBytes -= chunk.length;
          controller.enqueue(chunk);
          return;
        }
        controller.close();
        this.#finish();
      },
      cancel: () => this.#finish(),
    }, { highWaterMark: 0 });
  }

  /** Queues a message; a page too far behind is dropped (its browser reconnects and resyncs). */
  push(bytes: Uint8Array): void {
    if (this.#ending || this.#done) return;
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    if (this.#queuedBytes > MAX_QUEUED_BYTES) {
      this.drop("web monitor page too slow: dropped");
      return;
    }
    this.#wakeUp();
  }

  /** Ends the stream now with an error, whatever is still queued. */
  drop(reason: string): void {
    if (this.#done) return;
    try {
      this.#controller?.error(new Error(reason));
    } catch {
      // Already closed.
    }
    this.#finish();
  }

  /** Ends the stream once the page has read what is queued. */
  end(): void {
    this.#ending = true;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#ending = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#wakeUp();
    this.#onGone();
    this.#settle();
  }
}
