/**
 * p2p-share: BitTorrent-style peer-to-peer file sharing, all roles in one program.
 *
 * The only place that reads `Deno.args`, prints errors for people, and calls `Deno.exit`.
 * Exit codes: 0 done, 1 failure, 2 usage.
 *
 * @module
 */

import { createCommand } from "./lib/cli/create_cmd.ts";
import type { Command, CommandContext } from "./lib/cli/context.ts";
import { downloadCommand } from "./lib/cli/download_cmd.ts";
import { infoCommand } from "./lib/cli/info_cmd.ts";
import { createSink } from "./lib/cli/output.ts";
import type { Role } from "./lib/cli/render.ts";
import { seedCommand } from "./lib/cli/seed_cmd.ts";
import { trackerCommand } from "./lib/cli/tracker_cmd.ts";
import { verifyCommand } from "./lib/cli/verify_cmd.ts";
import { UsageError } from "./lib/errors.ts";

/** Program version, printed by `--version`. */
export const VERSION = "0.1.0";

const COMMANDS: Command[] = [
  createCommand,
  seedCommand,
  downloadCommand,
  trackerCommand,
  verifyCommand,
  infoCommand,
];

const ROLES: Record<string, Role> = {
  create: "create",
  seed: "seed",
  download: "client",
  tracker: "tracker",
  verify: "verify",
  info: "info",
};

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `p2p-share ${VERSION}: share files directly between machines, BitTorrent-style`,
    "",
    "Usage: p2p-share <command> [options]      (each command has --help)",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    'Every command takes --json: one JSON object per line on stdout, each with an "event" field.',
    "Exit codes: 0 done, 1 failure, 2 usage.",
  ].join("\n");
}

/** Turns any thrown value into the one line a person sees. */
function describe(err: unknown): string {
  if (err instanceof Deno.errors.PermissionDenied || err instanceof Deno.errors.NotCapable) {
    return `permission denied: ${err.message}`;
  }
  if (err instanceof Error) {
    const message = err.message.split("\n")[0];
    return err instanceof Deno.errors.NotFound && !/not found|No such file/i.test(message)
      ? `not found: ${message}`
      : message;
  }
  return String(err);
}

/** Runs the program with `argv` and returns its exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`p2p-share ${VERSION}`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    console.error(`error: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.usage);
    return 0;
  }
  const json = rest.includes("--json");
  const sink = createSink(json, ROLES[command.name] ?? "info");
  const controller = new AbortController();
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM"];
  let interrupts = 0;
  const onSignal = () => {
    // First signal: stop cleanly (flush state, say goodbye). Second: leave at once.
    if (++interrupts > 1) Deno.exit(1);
    controller.abort(new Error("interrupted"));
  };
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const ctx: CommandContext = { sink, signal: controller.signal };
  try {
    return await command.run(rest, ctx);
  } catch (err) {
    const message = describe(err);
    if (json) sink.emit({ event: "error", message });
    console.error(`error: ${message}`);
    return err instanceof UsageError ? 2 : 1;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
