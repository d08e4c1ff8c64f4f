/**
 * @module cli/output
 * Event sinks for the process: JSON lines on stdout for `--json`, or text for people — a live
 * progress line on a terminal, plain log lines otherwise. Does I/O (writes stdout/stderr).
 */

import type { EventSink, P2PEvent } from "../events.ts";
import { renderLine, renderProgressBar, type Role } from "./render.ts";

const encoder = new TextEncoder();

function writeAll(stream: typeof Deno.stdout, text: string): void {
  const bytes = encoder.encode(text);
  let done = 0;
  try {
    while (done < bytes.length) done += stream.writeSync(bytes.subarray(done));
  } catch {
    // The reader went away (`| head`): output is lost, but the transfer must not be.
  }
}

/** One JSON object per line on stdout: the stable interface for scripts. */
export class JsonSink implements EventSink {
  emit(event: P2PEvent): void {
    writeAll(Deno.stdout, `${JSON.stringify(event)}\n`);
  }
}

/** How often a progress log line is written when stdout is not a terminal. */
const LOG_PROGRESS_INTERVAL_MS = 2000;

/** Text for people: a redrawn progress line on a terminal, or log lines. */
export class TextSink implements EventSink {
  readonly role: Role;
  readonly terminal: boolean;
  #barShown = false;
  #lastLogMs = -Infinity;

  constructor(role: Role, terminal = Deno.stdout.isTerminal()) {
    this.role = role;
    this.terminal = terminal;
  }

  emit(event: P2PEvent): void {
    if (event.event === "progress") {
      if (this.terminal) {
        let columns = 80;
        try {
          columns = Deno.consoleSize().columns;
        } catch {
          // Not measurable: keep 80 columns.
        }
        writeAll(Deno.stdout, `\r${renderProgressBar(event, this.role, columns)}\x1b[K`);
        this.#barShown = true;
        return;
      }
      const now = performance.now();
      if (
        now - this.#lastLogMs < LOG_PROGRESS_INTERVAL_MS && event.piecesDone < event.piecesTotal
      ) return;
      this.#lastLogMs = now;
    }
    const line = renderLine(event, this.role);
    if (!line) return;
    this.#clearBar();
    writeAll(line.stream === "out" ? Deno.stdout : Deno.stderr, `${line.text}\n`);
  }

  #clearBar(): void {
    if (this.#barShown) {
      writeAll(Deno.stdout, "\r\x1b[K");
      this.#barShown = false;
    }
  }
}

/** The sink for a command: JSON lines or text for `role`. */
export function createSink(json: boolean, role: Role): EventSink {
  return json ? new JsonSink() : new TextSink(role);
}
