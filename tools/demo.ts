/**
 * `deno task demo`: the whole workflow on the built-in sample, in one process and a temp folder.
 * Creates metadata for samples/demo.txt, seeds it on a free local port, downloads it with three
 * connections, checks the result byte for byte, prints what happened and exits 0 (1 on any
 * mismatch). It drives the same command code as the CLI, so what it shows is what users get.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createCommand } from "../lib/cli/create_cmd.ts";
import { downloadCommand } from "../lib/cli/download_cmd.ts";
import { TextSink } from "../lib/cli/output.ts";
import type { Role } from "../lib/cli/render.ts";
import { seedCommand } from "../lib/cli/seed_cmd.ts";
import { errorMessage } from "../lib/errors.ts";
import type { EventSink, P2PEvent } from "../lib/events.ts";

const sample = fileURLToPath(new URL("../samples/demo.txt", import.meta.url));

function sinkFor(role: Role, watch?: (e: P2PEvent) => void): EventSink {
  const text = new TextSink(role, false);
  return { emit: (e) => (text.emit(e), watch?.(e)) };
}

async function demo(): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "p2p-share-demo-" });
  const meta = join(dir, "demo.txt.p2pmeta");
  const seedStop = new AbortController();
  let seeding: Promise<number> | undefined;
  try {
    console.log(`demo: working in ${dir}\n`);
    console.log(`$ p2p-share create ${sample} -o ${meta}`);
    await createCommand.run([sample, "-o", meta], {
      sink: sinkFor("create"),
      signal: seedStop.signal,
    });

    console.log(`\n$ p2p-share seed --meta ${meta} --source ${sample} --host 127.0.0.1 --port 0`);
    const port = await new Promise<number>((resolve, reject) => {
      const sink = sinkFor("seed", (e) => e.event === "serving" && resolve(e.port));
      seeding = seedCommand.run(
        [
          "--meta",
          meta,
          "--source",
          sample,
          "--host",
          "127.0.0.1",
          "--port",
          "0",
          "--workdir",
          join(dir, "data"),
        ],
        { sink, signal: seedStop.signal },
      );
      seeding.then(() => reject(new Error("the seeder stopped early")), reject);
    });

    const downloads = join(dir, "downloads");
    console.log(
      `\n$ p2p-share download --meta ${meta} --host 127.0.0.1 --port ${port} --workdir ${downloads} --parallel 3`,
    );
    await downloadCommand.run(
      [
        "--meta",
        meta,
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--workdir",
        downloads,
        "--parallel",
        "3",
      ],
      { sink: sinkFor("client"), signal: new AbortController().signal },
    );

    const original = await Deno.readFile(sample);
    const copy = await Deno.readFile(join(downloads, "demo.txt"));
    const same = original.length === copy.length && original.every((b, i) => b === copy[i]);
    console.log(`\n$ compare ${sample} ${join(downloads, "demo.txt")}`);
    console.log(same ? `identical: ${copy.length} bytes` : "DIFFERENT: the demo failed");
    return same ? 0 : 1;
  } finally {
    seedStop.abort();
    await seeding?.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

try {
  Deno.exit(await demo());
} catch (err) {
  console.error(`error: ${errorMessage(err)}`);
  Deno.exit(1);
}
