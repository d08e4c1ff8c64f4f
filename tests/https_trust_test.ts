import assert from "node:assert/strict";
import { join } from "node:path";
import { UsageError } from "../lib/errors.ts";
import {
  certificatePin,
  formatPin,
  loadTrackerTls,
  parsePin,
  TrackerCertificateError,
  trackerFetch,
  type TrackerTrust,
} from "../lib/https_trust.ts";
import { type Identity, makeSelfSignedCertificate } from "../lib/identity.ts";
import { serveHttps } from "./tls_kit.ts";

const DAY_MS = 86_400_000;
const good = await makeSelfSignedCertificate({ commonName: "tracker", altNames: ["127.0.0.1"] });
const expired = await makeSelfSignedCertificate({
  commonName: "tracker",
  altNames: ["127.0.0.1"],
  notBefore: new Date(Date.now() - 30 * DAY_MS),
  notAfter: new Date(Date.now() - DAY_MS),
});
const wrongHost = await makeSelfSignedCertificate({
  commonName: "tracker",
  altNames: ["tracker.example"],
});
const stranger = await makeSelfSignedCertificate({
  commonName: "tracker",
  altNames: ["127.0.0.1"],
});

const tmp = await Deno.makeTempDir({ prefix: "p2p_https_trust_" });
async function pemFile(name: string, text: string, mode = 0o600): Promise<string> {
  const path = join(tmp, name);
  await Deno.writeTextFile(path, text, { mode });
  return path;
}

/** What the tracker saw of a request (a Request cannot be read once answered). */
interface Seen {
  url: string;
  headers: Headers;
}

/** A tracker-like HTTPS server on 127.0.0.1 port 0 with `id`'s certificate. */
async function withTracker(
  id: Identity,
  fn: (url: string, requests: Seen[]) => Promise<void>,
): Promise<void> {
  const requests: Seen[] = [];
  await using server = serveHttps(id, (req) => {
    requests.push({ url: req.url, headers: new Headers(req.headers) });
    return Response.json({ interval: 30, peers: [], q: new URL(req.url).search });
  });
  await fn(`https://127.0.0.1:${server.port}/announce?info_hash=ab`, requests);
}

async function refusal(url: string, trust: TrackerTrust): Promise<string> {
  try {
    await trackerFetch(url, {}, trust);
  } catch (err) {
    assert.ok(err instanceof TrackerCertificateError, `${err}`);
    return (err as Error).message;
  }
  return "accepted";
}

Deno.test("trackerFetch() trusts a self-signed tracker given as --tracker-ca", async () => {
  const caFile = await pemFile("good-ca.pem", good.certPem, 0o644);
  await withTracker(good, async (url) => {
    const res = await trackerFetch(url, {}, { caFile });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { interval: 30, peers: [], q: "?info_hash=ab" });
  });
});

Deno.test("trackerFetch() trusts the pinned certificate and sends the request only then", async () => {
  await withTracker(good, async (url, requests) => {
    const pin = formatPin(certificatePin(good.certPem));
    const res = await trackerFetch(url, { headers: { "x-test": "1" } }, { pinSha256: pin });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).q, "?info_hash=ab");
    assert.equal(requests.length, 1);
    assert.equal(requests[0].headers.get("x-test"), "1");
    // The pin may also be written as bare hex.
    const bare = await trackerFetch(url, {}, { pinSha256: certificatePin(good.certPem) });
    assert.equal(bare.status, 200);
    await bare.body?.cancel();
  });
});

Deno.test("trackerFetch() refuses a self-signed tracker without trust, saying what to do", async () => {
  await withTracker(good, async (url) => {
    const message = await refusal(url, {});
    assert.match(message, /^tracker https:\/\/127\.0\.0\.1:\d+\/: certificate refused: /);
    assert.match(message, /not signed by a trusted authority .*--tracker-ca FILE or --tracker-pin/);
  });
});

Deno.test("trackerFetch() refuses a certificate that is not the CA file's or the pinned one", async () => {
  const caFile = await pemFile("stranger-ca.pem", stranger.certPem);
  await withTracker(good, async (url, requests) => {
    assert.match(
      await refusal(url, { caFile }),
      /certificate refused: it is not signed by a certificate in --tracker-ca .*stranger-ca\.pem/,
    );
    const wrongPin = certificatePin(stranger.certPem);
    assert.match(
      await refusal(url, { pinSha256: wrongPin }),
      new RegExp(
        `certificate refused: its SHA-256 fingerprint [0-9A-F:]+ is not the pinned ${
          formatPin(wrongPin)
        }`,
      ),
    );
    assert.equal(requests.length, 0, "a request reached an untrusted tracker");
  });
});

Deno.test("trackerFetch() refuses an expired certificate, with a CA file or a pin", async () => {
  const caFile = await pemFile("expired-ca.pem", expired.certPem);
  await withTracker(expired, async (url, requests) => {
    assert.match(await refusal(url, { caFile }), /certificate refused: it expired on \d{4}-/);
    assert.match(
      await refusal(url, { pinSha256: certificatePin(expired.certPem) }),
      /certificate refused: it expired on \d{4}-/,
    );
    assert.equal(requests.length, 0);
  });
});

Deno.test("trackerFetch() refuses a certificate for another host, with a CA file or a pin", async () => {
  const caFile = await pemFile("wronghost-ca.pem", wrongHost.certPem);
  await withTracker(wrongHost, async (url, requests) => {
    assert.match(
      await refusal(url, { caFile }),
      /certificate refused: it is not valid for 127\.0\.0\.1 \(it names .*tracker\.example/,
    );
    assert.match(
      await refusal(url, { pinSha256: certificatePin(wrongHost.certPem) }),
      /certificate refused: it is not valid for 127\.0\.0\.1 \(it names DNS:tracker\.example\)/,
    );
    assert.equal(requests.length, 0);
  });
});

Deno.test("trackerFetch() fetches plain http as it is and caps the body", async () => {
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen: () => {} },
    () => new Response("x".repeat(5000)),
  );
  try {
    const url = `http://127.0.0.1:${server.addr.port}/announce`;
    assert.equal(
      await (await trackerFetch(url, {}, { caFile: "/nonexistent" })).text(),
      "x".repeat(5000),
    );
    await assert.rejects(
      trackerFetch(url, {}, {}, { maxBodyBytes: 1000 }),
      /tracker answer larger than 1000 bytes/,
    );
  } finally {
    controller.abort();
    await server.finished;
  }
});

Deno.test("parsePin() accepts the usual spellings and refuses anything else", () => {
  const hex = "ab".repeat(32);
  assert.equal(parsePin(hex), hex);
  assert.equal(parsePin(formatPin(hex)), hex);
  assert.equal(parsePin(`sha256:${hex.toUpperCase()}`), hex);
  assert.equal(parsePin(`SHA256/${formatPin(hex)}`), hex);
  for (const bad of ["", "ab", "zz".repeat(32), "ab".repeat(33)]) {
    assert.throws(() => parsePin(bad), UsageError);
  }
  assert.equal(formatPin("0a1b"), "0A:1B");
});

Deno.test("loadTrackerTls() checks --tls-cert/--tls-key and gives the pin clients use", async () => {
  const certFile = await pemFile("tracker-cert.pem", good.certPem, 0o644);
  const keyFile = await pemFile("tracker-key.pem", good.keyPem);
  const loaded = await loadTrackerTls({ certFile, keyFile });
  assert.equal(loaded.pin, formatPin(certificatePin(good.certPem)));
  assert.deepEqual(loaded.warnings, []);
  await withTracker({ ...good, certPem: loaded.cert, keyPem: loaded.key }, async (url) => {
    const res = await trackerFetch(url, {}, { pinSha256: loaded.pin });
    assert.equal(res.status, 200);
    await res.body?.cancel();
  });

  const otherKey = await pemFile("other-key.pem", stranger.keyPem);
  await assert.rejects(
    loadTrackerTls({ certFile, keyFile: otherKey }),
    (err: Error) => err instanceof UsageError && /is not the key of --tls-cert/.test(err.message),
  );
  const expiredCert = await pemFile("expired-cert.pem", expired.certPem);
  const expiredKey = await pemFile("expired-key.pem", expired.keyPem);
  await assert.rejects(
    loadTrackerTls({ certFile: expiredCert, keyFile: expiredKey }),
    /expired on .*: clients will refuse it/,
  );
  await assert.rejects(
    loadTrackerTls({ certFile: join(tmp, "missing.pem"), keyFile }),
    /cannot read --tls-cert .*missing\.pem/,
  );
  const openKey = await pemFile("open-key.pem", good.keyPem, 0o644);
  await Deno.chmod(openKey, 0o644);
  const warned = await loadTrackerTls({ certFile, keyFile: openKey });
  assert.match(warned.warnings.join("\n"), /readable by other users \(mode 644\)/);
});

Deno.test("loadTrackerTls() warns about an openssl default (CA) certificate", async (t) => {
  const certFile = join(tmp, "ca-cert.pem");
  const keyFile = join(tmp, "ca-key.pem");
  let made = false;
  try {
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        keyFile,
        "-out",
        certFile,
        "-days",
        "2",
        "-subj",
        "/CN=tracker",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ],
      stdout: "null",
      stderr: "null",
    }).output();
    made = out.success;
  } catch {
    made = false;
  }
  if (!made) {
    await t.step({ name: "openssl is not available: skipped", ignore: true, fn: () => {} });
    return;
  }
  await Deno.chmod(keyFile, 0o600);
  const loaded = await loadTrackerTls({ certFile, keyFile });
  assert.match(loaded.warnings.join("\n"), /is a CA certificate: clients refuse it/);
});

Deno.test({
  name: "https_trust tests clean up their files",
  fn: async () => {
    await Deno.remove(tmp, { recursive: true });
  },
});
