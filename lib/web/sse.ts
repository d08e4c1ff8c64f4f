/**
 * @module web/sse
 * Server-sent events framing (the `text/event-stream` format the browser's `EventSource`
 * reads). Pure: strings in, strings out.
 */

/** One server-sent event. */
export interface SseMessage {
  /** The event type the page listens for (`addEventListener(type, ...)`); default "message". */
  event?: string;
  /** The payload; a line break in it becomes one `data:` line per line. */
  data: string;
  /** Milliseconds the browser waits before reconnecting, sent as a `retry:` field. */
  retryMs?: number;
}

/**
 * Frames one event: `event:` and `data:` lines and the blank line that ends it.
 *
 * @throws {RangeError} when the event type holds a line break (it would split the frame)
 * @example
 * ```ts
 * sseFrame({ event: "tick", data: '{"t":1}' }); // 'event: tick\ndata: {"t":1}\n\n'
 * ```
 */
export function sseFrame(message: SseMessage): string {
  let out = "";
  if (message.retryMs !== undefined) out += `retry: ${Math.max(0, Math.round(message.retryMs))}\n`;
  if (message.event !== undefined) {
    if (/[\r\n]/.test(message.event)) {
      throw new RangeError(`SSE event type must be one line, got ${JSON.stringify(message.event)}`);
    }
    out += `event: ${message.event}\n`;
  }
  for (const line of message.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** A comment line (ignored by `EventSource`, keeps idle connections open through proxies). */
export function sseComment(text: string): string {
  return `: ${text.replace(/[\r\n]+/g, " ")}\n\n`;
}

/** A parsed event, as a reader of `text/event-stream` sees it (tests use this). */
export interface ParsedSseEvent {
  event: string;
  data: string;
  retryMs?: number;
}

/**
 * Splits complete events out of `text/event-stream` text; comments are dropped and an event
 * without a blank line after it is left in `rest`.
 */
export function parseSse(text: string): { events: ParsedSseEvent[]; rest: string } {
  const events: ParsedSseEvent[] = [];
  const normalized = text.replace(/\r\n|\r/g, "\n");
  const blocks = normalized.split("\n\n");
  const rest = blocks.pop() ?? "";
  for (const block of blocks) {
    let event = "message";
    const data: string[] = [];
    let retryMs: number | undefined;
    let fields = 0;
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      fields++;
      if (name === "event") event = value;
      else if (name === "data") data.push(value);
      else if (name === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
    }
    if (fields === 0) continue;
    events.push({ event, data: data.join("\n"), ...(retryMs === undefined ? {} : { retryMs }) });
  }
  return { events, rest };
}
