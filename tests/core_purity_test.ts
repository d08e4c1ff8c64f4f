import assert from "node:assert/strict";

/** The pure core: bytes and values in and out, no I/O, no clocks, no console. */
const CORE_FILES = [
  "units.ts",
  "paths.ts",
  "metadata.ts",
  "bitfield.ts",
  "pieces.ts",
  "wire.ts",
  "hash.ts",
  "errors.ts",
  "events.ts",
  "picker.ts",
  "rate.ts",
  "swarm_table.ts",
  "glob.ts",
  "choker.ts",
  "share_auth.ts",
  "tls_sniff.ts",
  "pipeline.ts",
];

const LIB = new URL("../lib/", import.meta.url);

async function readCore(file: string): Promise<string> {
  return await Deno.readTextFile(new URL(file, LIB));
}

Deno.test("core modules never use the Deno namespace", async () => {
  for (const file of CORE_FILES) {
    const source = await readCore(file);
    assert.ok(source.length > 0, `lib/${file} is empty`);
    assert.equal(
      source.includes("Deno."),
      false,
      `lib/${file} uses Deno.*: the core must stay free of I/O`,
    );
  }
});

Deno.test("core modules use no console, timers or clock", async () => {
  const forbidden = [
    "console.",
    "setTimeout",
    "setInterval",
    "performance.now",
    "Date.now",
    "fetch(",
  ];
  for (const file of CORE_FILES) {
    const source = await readCore(file);
    for (const word of forbidden) {
      assert.equal(source.includes(word), false, `lib/${file} uses ${word}`);
    }
  }
});

Deno.test("core modules import only other core modules", async () => {
  const specifier = /(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g;
  for (const file of CORE_FILES) {
    const source = await readCore(file);
    for (const match of source.matchAll(specifier)) {
      const target = match[1];
      assert.ok(
        target.startsWith("./") && CORE_FILES.includes(target.slice(2)),
        `lib/${file} imports "${target}": the core must not depend on the shell or on remote modules`,
      );
    }
  }
});
