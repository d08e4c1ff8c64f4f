/**
 * @module cli/context
 * What `main.ts` hands each command: where events go, how to stop, and the output mode.
 */

import type { EventSink } from "../events.ts";

/** Everything a command needs from the process around it. */
export interface CommandContext {
  /** Receives every event; renders them for a terminal, as log lines or as JSON lines. */
  sink: EventSink;
  /** Aborted on Ctrl-C / SIGTERM: long-running commands stop cleanly when it fires. */
  signal: AbortSignal;
}

/** A subcommand: parses its own arguments, runs, and returns the exit code. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[], ctx: CommandContext): Promise<number>;
}
