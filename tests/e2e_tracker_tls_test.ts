/**
 * End-to-end tracker over HTTPS: a real `tracker --tls-cert/--tls-key` process with a
 * self-signed certificate (ECDSA P-256, CA:FALSE, subjectAltName IP:127.0.0.1), real `seed` and
 * `download` processes under narrow permission flags on 127.0.0.1, port 0 everywhere,
 * synchronised on `--json` events and on `/stats` fetched over HTTPS with a client that trusts
 * the certificate. Expired and wrong-host trackers run in this process (a `tracker` refuses to
 * start with an expired certificate), so their swarm table can be read directly.
 */

import assert from "node:assert/strict";
import {
  certificatePin,
  formatPin,
  TrackerCertificateError,
  trackerFetch,
} from "../lib/https_trust.ts";
import type { Identity } from "../lib/identity.ts";
import {
  assertSameFile,
  createMeta,
  type JsonEvent,
  parseEvents,
  perms,
  randomFile,
  runCli,
  type Seeder,
  startSeeder,
  type TempDir,
  tempDir,
} from "./helpers.ts";
import { httpsTrackerInProcess, type TrackerCertFiles, trackerCertFiles } from "./tls_kit.ts";
import { fetchStats, pollStats, startTracker, swarmOf } from "./tracker_kit.ts";

const KiB = 1024;
const DAY_MS = 86_400_000;

/** A random file and its metadata (16 KiB pieces). */
async function share(
  dir: TempDir,
  name: string,
  bytes: number,
): Promise<{ source: string; meta: string; infoHash: string }> {
  const source = dir.join(name);
  await randomFile(source, bytes);
  const { meta, created } = await createMeta(source, { pieceSize: "16K" });
  return { source, meta, infoHash: created.infoHash as string };
}

function pinOf(id: Identity): string {
  return formatPin(certificatePin(id.certPem));
}

/** A seeder of `meta` announcing to `trackerUrl`, with `trustArgs` and read access to `readPaths`. */
function seedTo(
  dir: TempDir,
  files: { source: string; meta: string },
  trackerUrl: string,
  trustArgs: string[] = [],
  readPaths: string[] = [],
): Promise<Seeder> {
  return startSeeder({
    meta: files.meta,
    source: files.source,
    workdir: dir.join(`seed-${crypto.randomUUID().slice(0, 8)}`),
    extraArgs: ["--tracker", trackerUrl, ...trustArgs],
    readPaths,
  });
}

/** The seeder's first warning that a tracker's certificate was refused. */
async function certificateWarning(seeder: Seeder): Promise<string> {
  const event = await seeder.log.next("warning", {
    match: (e) => /certificate refused/.test(String(e.message)),
    timeoutMs: 15_000,
    what: "a certificate-refused warning from the seeder",
  });
  return String(event.message);
}

/** Warnings that call a tracker unreachable. */
function unreachable(events: JsonEvent[]): JsonEvent[] {
  return events.filter((e) => e.event === "warning" && /unreachable/.test(String(e.message)));
}

/** Certificates made once for the whole file. */
const certDir = await tempDir("p2p_e2e_tracker_tls_");
const good: TrackerCertFiles = await trackerCertFiles(certDir.path, "good");
const expired: TrackerCertFiles = await trackerCertFiles(certDir.path, "expired", {
  notBefore: new Date(Date.now() - 30 * DAY_MS),
  notAfter: new Date(Date.now() - DAY_MS),
});
const wrongHost: TrackerCertFiles = await trackerCertFiles(certDir.path, "wronghost", {
  altNames: ["127.0.0.2", "tracker.example"],
});

Deno.test("tracker --tls-cert/--tls-key serves HTTPS, prints its pin; /stats is trusted with the CA or the pin only", async () => {
  await using tracker = await startTracker({ tls: good });
  assert.match(tracker.base, /^https:\/\/127\.0\.0\.1:\d+$/);
  const infos = tracker.log.all("info").map((e) => String(e.message));
  assert.deepEqual(infos, [`certificate SHA-256 pin: ${pinOf(good.identity)}`]);
  assert.deepEqual(tracker.log.all("warning"), [], "a clean certificate gets no warning");

  const empty = { swarmCount: 0, peerCount: 0, swarms: [] };
  assert.deepEqual(await fetchStats(tracker.base, { caFile: good.certFile }), empty);
  const printedPin = infos[0].replace("certificate SHA-256 pin: ", "");
  assert.deepEqual(await fetchStats(tracker.base, { pinSha256: printedPin }), empty);
  await assert.rejects(
    trackerFetch(`${tracker.base}/stats`),
    (err: Error) =>
      err instanceof TrackerCertificateError &&
      /certificate refused: it is not signed by a trusted authority/.test(err.message),
  );

  const result = await tracker.stop();
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, "");
});

Deno.test("tracker: --tls-cert without --tls-key, an expired certificate, another key: exit 2, one line", async () => {
  const read = `--allow-read=${certDir.path}`;
  const cases: [string[], RegExp][] = [
    [["--tls-cert", good.certFile], /--tls-cert and --tls-key go together/],
    [["--tls-cert", expired.certFile, "--tls-key", expired.keyFile], /expired on .*clients will/],
    [["--tls-cert", good.certFile, "--tls-key", wrongHost.keyFile], /is not the key of/],
  ];
  for (const [flags, message] of cases) {
    const result = await runCli(
      ["tracker", "--host", "127.0.0.1", "--port", "0", ...flags],
      { perms: ["--allow-net=127.0.0.1", read], timeoutMs: 20_000 },
    );
    assert.equal(result.code, 2, `${flags.join(" ")}: ${result.stderr}`);
    assert.doesNotMatch(result.stdout, /listening/);
    const lines = result.stderr.split("\n").filter((l) => l.trim() !== "");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0], /^error: /);
    assert.match(lines[0], message);
  }
});

Deno.test("a seeder announcing to an HTTPS tracker it does not trust warns that the certificate was refused and is not listed", async () => {
  await using dir = await tempDir();
  await using tracker = await startTracker({ tls: good });
  const files = await share(dir, "untrusted.bin", 64 * KiB);
  const url = `${tracker.base}/announce`;
  await using seeder = await seedTo(dir, files, url);
  const warning = await certificateWarning(seeder);
  assert.equal(
    warning,
    `tracker ${url}: certificate refused: it is not signed by a trusted authority (a ` +
      "self-signed tracker needs --tracker-ca FILE or --tracker-pin SHA256); retrying with " +
      "backoff, carrying on with known peers",
  );
  assert.deepEqual(unreachable(seeder.events), [], "a refused certificate is not an outage");
  const stats = await fetchStats(tracker.base, { caFile: good.certFile });
  assert.equal(stats.peerCount, 0, JSON.stringify(stats));
  assert.equal(swarmOf(stats, files.infoHash), undefined);
  // It still serves: the tracker is optional, the refusal cost a warning only.
  const stopped = await seeder.stop();
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal(
    seeder.events.filter((e) => e.event === "warning" && /certificate/.test(String(e.message)))
      .length,
    1,
    "the certificate warning is said once",
  );
});

Deno.test({
  name:
    "a seeder with --tracker-ca is listed by the HTTPS tracker, and a downloader with --tracker-ca finds it",
  fn: async () => {
    await using dir = await tempDir();
    await using tracker = await startTracker({ tls: good });
    const files = await share(dir, "trusted.bin", 256 * KiB + 7);
    const url = `${tracker.base}/announce`;
    await using seeder = await seedTo(dir, files, url, ["--tracker-ca", good.certFile], [
      good.certFile,
    ]);
    await pollStats(tracker.base, (s) => swarmOf(s, files.infoHash)?.seeders === 1, {
      timeoutMs: 10_000,
      what: "the seeder in /stats",
      trust: { caFile: good.certFile },
    });
    await seeder.log.next("info", {
      match: (e) => String(e.message).startsWith(`announced to tracker ${url}`),
      timeoutMs: 5_000,
    });
    assert.deepEqual(seeder.log.all("warning"), []);

    const workdir = dir.join("dl");
    const result = await runCli([
      "download",
      "--meta",
      files.meta,
      "--tracker",
      url,
      "--tracker-ca",
      good.certFile,
      "--workdir",
      workdir,
      "--listen-host",
      "127.0.0.1",
      "--json",
    ], {
      perms: perms.download(files.meta, workdir).map((p) =>
        p.startsWith("--allow-read=") ? `${p},${good.certFile}` : p
      ),
      timeoutMs: 30_000,
    });
    assert.equal(result.code, 0, `download failed: ${result.stderr}`);
    const events = parseEvents(result.stdout);
    assert.equal(events.filter((e) => e.event === "complete").length, 1);
    assert.deepEqual(events.filter((e) => e.event === "warning"), []);
    await assertSameFile(`${workdir}/trusted.bin`, files.source);
    const stats = await fetchStats(tracker.base, { caFile: good.certFile });
    assert.equal(swarmOf(stats, files.infoHash)?.completed, 1);
  },
});

Deno.test({
  name: "a seeder with the tracker's printed --tracker-pin is listed by the HTTPS tracker",
  fn: async () => {
    await using dir = await tempDir();
    await using tracker = await startTracker({ tls: good });
    const printed = tracker.log.all("info").map((e) => String(e.message))
      .find((m) => m.startsWith("certificate SHA-256 pin: "));
    assert.ok(printed, "the tracker printed no pin");
    const pin = printed.slice("certificate SHA-256 pin: ".length);
    const files = await share(dir, "pinned.bin", 64 * KiB);
    await using seeder = await seedTo(dir, files, `${tracker.base}/announce`, [
      "--tracker-pin",
      pin,
    ]);
    await pollStats(tracker.base, (s) => swarmOf(s, files.infoHash)?.seeders === 1, {
      timeoutMs: 10_000,
      what: "the pinned seeder in /stats",
      trust: { pinSha256: pin },
    });
    assert.deepEqual(seeder.log.all("warning"), []);
  },
});

Deno.test({
  name:
    "an expired tracker certificate is refused with a clear warning even with --tracker-ca or --tracker-pin naming it",
  fn: async () => {
    await using dir = await tempDir();
    await using tracker = httpsTrackerInProcess(expired.identity);
    const files = await share(dir, "expired.bin", 64 * KiB);
    const trusts = [["--tracker-ca", expired.certFile], ["--tracker-pin", pinOf(expired.identity)]];
    for (const trust of trusts) {
      await using seeder = await seedTo(dir, files, tracker.url, trust, [expired.certFile]);
      assert.match(
        await certificateWarning(seeder),
        new RegExp(
          `^tracker ${tracker.url}: certificate refused: it expired on \\d{4}-\\d\\d-\\d\\dT[^;]*; retrying`,
        ),
        trust[0],
      );
      assert.deepEqual(unreachable(seeder.events), []);
      assert.equal(tracker.table.stats().peerCount, 0, `${trust[0]}: listed anyway`);
    }
  },
});

Deno.test({
  name:
    "a tracker certificate for another host is refused with a clear warning even with --tracker-ca or --tracker-pin naming it",
  fn: async () => {
    await using dir = await tempDir();
    await using tracker = httpsTrackerInProcess(wrongHost.identity);
    const files = await share(dir, "wronghost.bin", 64 * KiB);
    const trusts = [
      ["--tracker-ca", wrongHost.certFile],
      ["--tracker-pin", pinOf(wrongHost.identity)],
    ];
    for (const trust of trusts) {
      await using seeder = await seedTo(dir, files, tracker.url, trust, [wrongHost.certFile]);
      const warning = await certificateWarning(seeder);
      assert.match(
        warning,
        new RegExp(
          `^tracker ${tracker.url}: certificate refused: it is not valid for 127\\.0\\.0\\.1 \\(it names `,
        ),
        trust[0],
      );
      assert.match(warning, /tracker\.example/);
      assert.deepEqual(unreachable(seeder.events), []);
      assert.equal(tracker.table.stats().peerCount, 0, `${trust[0]}: listed anyway`);
    }
  },
});

Deno.test({
  name: "e2e_tracker_tls tests clean up their files",
  fn: async () => {
    await certDir[Symbol.asyncDispose]();
  },
});
