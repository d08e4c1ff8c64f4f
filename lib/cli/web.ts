/**
 * @module cli/web
 * The `--web [HOST:]PORT` and `--web-token TOKEN` options every long-running command takes,
 * and {@linkcode startWebMonitor}, which serves the web monitor for a running share or tracker
 * with `Deno.serve`, takes a snapshot every half second on a timer, and stops when the
 * command's signal aborts. Shell: network I/O and one timer.
 *
 * Wiring in a command (seed and download do the same with their own snapshot source):
 * ```ts
 * const args = parseCommandArgs(argv, { ...OWN_OPTIONS, ...WEB_OPTIONS }, "seed");
 * const web = webSettings(args, "seed"); // validates early: a UsageError before any work
 * // ... once the share can be snapshotted:
 * const monitor = web && await startWebMonitor({ ...web, source, signal, sink: ctx.sink });
 * const sink = monitor ? new TeeSink(ctx.sink, monitor.events) : ctx.sink;
 * // ... on the way out (after the signal that the monitor got has aborted):
 * await monitor?.finished;
 * ```
 */

import { UsageError } from "../errors.ts";
import type { EventSink } from "../events.ts";
import type { SnapshotSource, TeeSink } from "../snapshot.ts";
import { generateToken, isLoopbackHost, tokenProblem } from "../web/auth.ts";
import { createWebHandler } from "../web/handler.ts";
import { MonitorHub } from "../web/hub.ts";
import { type OptionSpec, optString, type ParsedArgs } from "./args.ts";

/** Address the monitor binds when `--web` gives only a port. */
export const DEFAULT_WEB_HOST = "127.0.0.1";
/** How often the monitor takes a snapshot and updates open pages. */
export const SNAPSHOT_INTERVAL_MS = 500;
/** Longest wait, on the way out, for open pages to read their last messages. */
export const CLOSE_GRACE_MS = 2000;

/** The options to add to a command's `parseCommandArgs` spec. */
export const WEB_OPTIONS: OptionSpec = {
  web: { type: "string" },
  "web-token": { type: "string" },
};

/** The lines to add to a command's usage text, under "Options:". */
export const WEB_USAGE =
  `  --web [HOST:]PORT     serve a live web page of what this command does, and print its URL
                        (default host ${DEFAULT_WEB_HOST}; port 0 picks a free one); bound to an
                        address other than loopback it requires a token
  --web-token TOKEN     the token the page requires (16+ letters, digits or . _ ~ -);
                        default: none on loopback, a random one otherwise (in the printed URL)`;

/** What `--web` and `--web-token` asked for. */
export interface WebSettings {
  /** `[HOST:]PORT`, already checked. */
  listen: string;
  token?: string;
}

/**
 * Parses `[HOST:]PORT`: `8080`, `0`, `0.0.0.0:8080`, `localhost:0`, `[::1]:8080`.
 *
 * @throws {RangeError} when it is not of that form or the port is out of range
 */
export function parseWebListen(text: string): { host: string; port: number } {
  const match = /^(\d{1,5})$/.exec(text) ??
    /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ??
    /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  const host = match === null ? "" : match.length === 2 ? DEFAULT_WEB_HOST : match[1];
  const port = match === null ? NaN : Number(match[match.length - 1]);
  if (match === null || !(port >= 0 && port <= 65535)) {
    throw new RangeError(
      `expected [HOST:]PORT such as 8080, 127.0.0.1:0 or 0.0.0.0:8080, got "${text}"`,
    );
  }
  return { host, port };
}

/**
 * Reads `--web` and `--web-token`, so that a bad value stops the command before it starts.
 *
 * @returns the settings, or `undefined` without `--web`
 * @throws {UsageError} on a malformed address or token, or `--web-token` without `--web`
 */
export function webSettings(args: ParsedArgs, command: string): WebSettings | undefined {
  const listen = optString(args, "web");
  const token = optString(args, "web-token");
  if (listen === undefined) {
    if (token !== undefined) throw new UsageError(`${command}: --web-token needs --web`);
    return undefined;
  }
  checkSettings(listen, token, command);
  return token === undefined ? { listen } : { listen, token };
}

function checkSettings(
  listen: string,
  token: string | undefined,
  command: string,
): { host: string; port: number } {
  let address: { host: string; port: number };
  try {
    address = parseWebListen(listen);
  } catch (err) {
    throw new UsageError(`${command}: --web: ${(err as Error).message}`, { cause: err });
  }
  const problem = token === undefined ? undefined : tokenProblem(token);
  if (problem !== undefined) throw new UsageError(`${command}: --web-token: ${problem}`);
  return address;
}

/** What {@linkcode startWebMonitor} needs. */
export interface WebMonitorOptions {
  /** `[HOST:]PORT` (default host 127.0.0.1; port 0 picks one). */
  listen: string;
  /** The token pages must carry; generated when bound off loopback without one. */
  token?: string;
  /** The running share or tracker. */
  source: SnapshotSource;
  /** Stops the monitor: open pages get a last snapshot and `bye`, then the server closes. */
  signal: AbortSignal;
  /** The program's own sink, which gets the `listening` event (service "web", with the URL). */
  sink: EventSink;
  /** Snapshot period in milliseconds (default 500, at least 50). */
  intervalMs?: number;
}

/** A running web monitor. */
export interface WebMonitor {
  /** The page's address, with `?token=...` when a token is required. */
  url: string;
  /** Where the command sends its events (tee it with its own sink), shown as recent events. */
  events: EventSink;
  /** Settles once the signal aborted and the server has closed every connection. */
  finished: Promise<void>;
}

/**
 * Serves the web monitor until `signal` aborts.
 *
 * @returns once listening, after emitting `{event: "listening", service: "web", host, port, url}`
 * @throws {UsageError} on a malformed address or token
 * @throws {Error} with one line when the address cannot be listened on (port in use)
 * @example
 * ```ts
 * const monitor = await startWebMonitor({ listen: "127.0.0.1:0", source, signal, sink });
 * console.log(monitor.url);
 * ```
 */
export function startWebMonitor(options: WebMonitorOptions): Promise<WebMonitor> {
  // A promise, so that callers need not change if listening ever becomes asynchronous; a
  // throw becomes a rejection.
  return new Promise((resolve) => resolve(serveMonitor(options)));
}

function serveMonitor(options: WebMonitorOptions): WebMonitor {
  const { host, port } = checkSettings(options.listen, options.token, "web");
  // Off loopback anybody on the network could look: never without a token.
  const token = options.token ?? (isLoopbackHost(host) ? undefined : generateToken());
  const hub = new MonitorHub(options.source);
  const handler = createWebHandler(hub, token === undefined ? {} : { token });
  const intervalMs = Math.max(50, options.intervalMs ?? SNAPSHOT_INTERVAL_MS);

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: host,
      port,
      onListen: () => {},
      onError: () => new Response("internal error\n", { status: 500 }),
    }, handler);
  } catch (err) {
    const where = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    if (err instanceof Deno.errors.AddrInUse) {
      throw new Error(
        `web: cannot listen on ${where}: address already in use (choose another with --web, or port 0 for any)`,
        { cause: err },
      );
    }
    if (err instanceof Deno.errors.AddrNotAvailable) {
      throw new Error(`web: cannot listen on ${where}: no such address on this machine`, {
        cause: err,
      });
    }
    throw err;
  }

  const timer = setInterval(() => hub.tick(), intervalMs);
  const stopped = new Promise<void>((resolve, reject) => {
    const stop = async () => {
      clearInterval(timer);
      // Open pages get the last state and "bye", then their streams end; a graceful shutdown
      // lets those last bytes out (aborting the server would cut them). A page that does not
      // read them in time is dropped, or the shutdown would wait for it for ever.
      let grace: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        hub.close(),
        new Promise<void>((done) => (grace = setTimeout(done, CLOSE_GRACE_MS))),
      ]);
      clearTimeout(grace);
      hub.dropAll();
      await server.shutdown();
    };
    const start = () => stop().then(resolve, reject);
    if (options.signal.aborted) start();
    else options.signal.addEventListener("abort", start, { once: true });
  });
  const finished = stopped.then(() => server.finished);

  const bound = server.addr.hostname;
  const shown = reachableHost(bound);
  const url = `http://${shown.includes(":") ? `[${shown}]` : shown}:${server.addr.port}/` +
    (token === undefined ? "" : `?token=${token}`);
  options.sink.emit({
    event: "listening",
    host: bound,
    port: server.addr.port,
    service: "web",
    url,
  });
  return { url, events: hub, finished };
}

/**
 * The address to put in the printed URL: the bound one, or for a wildcard bind this machine's
 * first LAN address when allowed to list interfaces (asked without a prompt), else 127.0.0.1.
 */
function reachableHost(bound: string): string {
  if (bound !== "0.0.0.0" && bound !== "::") return bound;
  try {
    const permission = Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" });
    if (permission.state === "granted") {
      for (const nic of Deno.networkInterfaces()) {
        if (nic.family === "IPv4" && !nic.address.startsWith("127.")) return nic.address;
      }
    }
  } catch {
    // Cannot tell: loopback is still right on this machine.
  }
  return "127.0.0.1";
}

/**
 * Starts the monitor for a share when `--web` was given and adds it to the command's event
 * fan-out, so seed and download attach it the same way.
 *
 * @returns the monitor, or `undefined` without `--web`
 */
export async function attachWebMonitor(
  settings: WebSettings | undefined,
  options: {
    source: SnapshotSource;
    signal: AbortSignal;
    /** Where the monitor's own `listening` line goes (the terminal or JSON output). */
    sink: EventSink;
    /** The command's fan-out: the monitor joins it to receive every event. */
    tee: TeeSink;
  },
): Promise<WebMonitor | undefined> {
  if (!settings) return undefined;
  const monitor = await startWebMonitor({
    ...settings,
    source: options.source,
    signal: options.signal,
    sink: options.sink,
  });
  options.tee.sinks.push(monitor.events);
  return monitor;
}
