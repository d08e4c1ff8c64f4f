import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import {
  CERT_FILE,
  certificateFingerprint,
  KEY_FILE,
  loadOrCreateIdentity,
  makeSelfSignedCertificate,
  PEER_CERT_CN,
} from "../lib/identity.ts";
import { toHex } from "../lib/units.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "p2p_identity_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadOrCreateIdentity() makes a key (0600), a folder (0700) and a CA:FALSE certificate", async () => {
  await withTempDir(async (tmp) => {
    const dir = join(tmp, ".identity");
    const id = await loadOrCreateIdentity(dir);
    assert.equal((await Deno.stat(join(dir, KEY_FILE))).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assert.equal(await Deno.readTextFile(join(dir, CERT_FILE)), id.certPem);
    assert.equal(await Deno.readTextFile(join(dir, KEY_FILE)), id.keyPem);
    const cert = new X509Certificate(id.certPem);
    assert.equal(cert.subject, `CN=${PEER_CERT_CN}`);
    assert.equal(cert.ca, false);
    const years = (Date.parse(cert.validTo) - Date.now()) / (365 * 86_400_000);
    assert.ok(years > 9.9 && years < 10.1, `valid for ${years} years`);
    assert.ok(cert.checkPrivateKey((await import("node:crypto")).createPrivateKey(id.keyPem)));
    assert.deepEqual(new Uint8Array(cert.raw), id.certDer);
    assert.equal(toHex(id.fingerprint), cert.fingerprint256.replaceAll(":", "").toLowerCase());
  });
});

Deno.test("loadOrCreateIdentity() makes missing parents with --allow-write on the identity folder alone", async () => {
  await withTempDir(async (tmp) => {
    const dir = join(tmp, "not", "yet", "id");
    const script = join(tmp, "make_identity.ts");
    const lib = new URL("../lib/identity.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { loadOrCreateIdentity } from ${JSON.stringify(lib)};\n` +
        `await loadOrCreateIdentity(${JSON.stringify(dir)});\n`,
    );
    const config = new URL("../deno.json", import.meta.url).pathname;
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--config", config, `--allow-read=${tmp}`, `--allow-write=${dir}`, script],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.equal((await Deno.stat(join(dir, KEY_FILE))).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(join(tmp, "not"))).mode! & 0o777, 0o700);
  });
});

Deno.test("loadOrCreateIdentity() reuses the stored identity on later runs", async () => {
  await withTempDir(async (dir) => {
    const first = await loadOrCreateIdentity(dir);
    const second = await loadOrCreateIdentity(dir);
    assert.equal(second.keyPem, first.keyPem);
    assert.equal(second.certPem, first.certPem);
    assert.deepEqual(second.fingerprint, first.fingerprint);
  });
});

Deno.test("loadOrCreateIdentity() refuses a key file other users may read", async () => {
  await withTempDir(async (dir) => {
    await loadOrCreateIdentity(dir);
    const keyPath = join(dir, KEY_FILE);
    await Deno.chmod(keyPath, 0o644);
    await assert.rejects(
      loadOrCreateIdentity(dir),
      (err: Error) => {
        assert.match(err.message, /identity key .*peer-key\.pem is accessible by other users/);
        assert.match(err.message, /mode 644/);
        assert.match(err.message, /chmod 600/);
        return true;
      },
    );
    await Deno.chmod(keyPath, 0o600);
    await loadOrCreateIdentity(dir);
  });
});

Deno.test("loadOrCreateIdentity() remakes a missing or foreign certificate from the same key", async () => {
  await withTempDir(async (dir) => {
    const first = await loadOrCreateIdentity(dir);
    await Deno.remove(join(dir, CERT_FILE));
    const remade = await loadOrCreateIdentity(dir);
    assert.equal(remade.keyPem, first.keyPem);
    assert.notEqual(remade.certPem, first.certPem);
    const other = await makeSelfSignedCertificate({ commonName: "someone else" });
    await Deno.writeTextFile(join(dir, CERT_FILE), other.certPem);
    const fixed = await loadOrCreateIdentity(dir);
    assert.equal(fixed.keyPem, first.keyPem);
    assert.ok(new X509Certificate(fixed.certPem).checkPrivateKey(
      (await import("node:crypto")).createPrivateKey(first.keyPem),
    ));
  });
});

Deno.test("loadOrCreateIdentity() started twice at once settles on one key", async () => {
  await withTempDir(async (dir) => {
    const [a, b] = await Promise.all([loadOrCreateIdentity(dir), loadOrCreateIdentity(dir)]);
    assert.equal(a.keyPem, b.keyPem);
    const stored = await loadOrCreateIdentity(dir);
    assert.equal(stored.keyPem, a.keyPem);
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names.sort(), [CERT_FILE, KEY_FILE].sort(), "no temp files left behind");
  });
});

Deno.test("loadOrCreateIdentity() names a key file that is not a key", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, KEY_FILE), "not a key\n", { mode: 0o600 });
    await assert.rejects(loadOrCreateIdentity(dir), /is not a P-256 private key in PKCS#8 PEM/);
  });
});

Deno.test("makeSelfSignedCertificate() sets validity and alternative names", async () => {
  const notBefore = new Date(Date.UTC(2020, 0, 1));
  const notAfter = new Date(Date.UTC(2021, 0, 1));
  const made = await makeSelfSignedCertificate({
    commonName: "tracker",
    notBefore,
    notAfter,
    altNames: ["127.0.0.1", "tracker.example"],
  });
  const cert = new X509Certificate(made.certPem);
  assert.equal(Date.parse(cert.validFrom), notBefore.getTime());
  assert.equal(Date.parse(cert.validTo), notAfter.getTime());
  assert.match(cert.subjectAltName ?? "", /IP Address:127\.0\.0\.1/);
  assert.match(cert.subjectAltName ?? "", /DNS:tracker\.example/);
  assert.deepEqual(certificateFingerprint(made.certDer), made.fingerprint);
});
