/**
 * `deno task compile`: builds standalone executables of p2p-share for every supported platform
 * into dist/. `deno compile` downloads Deno's runtime for each target, so this needs internet
 * access; the program is kept compile-ready (static imports, no files read beside the source).
 *
 * @module
 */

const TARGETS = [
  { target: "x86_64-unknown-linux-gnu", out: "p2p-share-linux-x64" },
  { target: "aarch64-unknown-linux-gnu", out: "p2p-share-linux-arm64" },
  { target: "x86_64-apple-darwin", out: "p2p-share-macos-x64" },
  { target: "aarch64-apple-darwin", out: "p2p-share-macos-arm64" },
  { target: "x86_64-pc-windows-msvc", out: "p2p-share-windows-x64.exe" },
];

/** The permissions baked into the binaries: every role's needs, nothing more. */
const PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-sys=networkInterfaces",
];

let failed = 0;
await Deno.mkdir("dist", { recursive: true });
for (const { target, out } of TARGETS) {
  const args = [
    "compile",
    ...PERMISSIONS,
    "--target",
    target,
    "--output",
    `dist/${out}`,
    "main.ts",
  ];
  console.log(`deno ${args.join(" ")}`);
  const { code } = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) {
    failed++;
    console.error(
      `error: could not build ${out} (deno compile exited ${code}; it needs internet access)`,
    );
  }
}
Deno.exit(failed === 0 ? 0 : 1);
