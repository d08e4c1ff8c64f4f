/**
 * @module identity
 * This peer's TLS identity: an ECDSA P-256 key and a self-signed X.509 certificate, made on
 * first use and reused afterwards. Does file I/O.
 *
 * Files, in the identity folder (`<workdir>/.identity` unless `--identity DIR`):
 * - `peer-key.pem`: the private key (PKCS#8), created with mode 0600 (owner only). A key file
 *   that other users may read or write is refused, like ssh does: it may have leaked, and
 *   silently fixing the mode would hide that. The folder itself is created with mode 0700.
 * - `peer-cert.pem`: the certificate (CN "p2p-share peer", CA:FALSE, ten years). It carries
 *   no trust of its own: peers authenticate each other with the share proof bound to the
 *   certificates' SHA-256 fingerprints (see `secure_handshake`). The key is the identity; a
 *   missing, expired or mismatched certificate is simply made again from the key.
 *
 * Two processes starting at once in one work folder race safely: the key is published with an
 * exclusive link, so exactly one key wins and both use it.
 */

import * as x509 from "@peculiar/x509";
import { createHash } from "node:crypto";
import { join } from "node:path";

x509.cryptoProvider.set(crypto);

/** Name of the private key file inside the identity folder. */
export const KEY_FILE = "peer-key.pem";
/** Name of the certificate file inside the identity folder. */
export const CERT_FILE = "peer-cert.pem";
/** Common name of every peer certificate: says what it is, nothing about who runs it. */
export const PEER_CERT_CN = "p2p-share peer";
/** Lifetime of a peer certificate. */
export const PEER_CERT_DAYS = 3650;

const DAY_MS = 86_400_000;
const EC_KEY = { name: "ECDSA", namedCurve: "P-256" } as const;
const EC_SIGN = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** A peer's TLS identity, ready for `node:tls`. */
export interface Identity {
  /** Certificate, PEM. */
  certPem: string;
  /** Private key, PKCS#8 PEM. */
  keyPem: string;
  /** Certificate, DER. */
  certDer: Uint8Array;
  /** SHA-256 of {@linkcode Identity.certDer}: what the share proof binds to. */
  fingerprint: Uint8Array;
}

/** Options for {@linkcode makeSelfSignedCertificate}. */
export interface CertificateOptions {
  /** Subject (and issuer) common name. */
  commonName: string;
  /** Start of validity (default: one hour ago, so clocks a little behind still accept it). */
  notBefore?: Date;
  /** End of validity (default: {@linkcode PEER_CERT_DAYS} days from now). */
  notAfter?: Date;
  /** Host names and IP addresses for the subjectAltName extension (none by default). */
  altNames?: string[];
}

/**
 * Makes an ECDSA P-256 key and a self-signed end-entity certificate (CA:FALSE) for it.
 * Used for peer identities, and by tests and tools for tracker certificates.
 *
 * @param options subject, validity, alternative names
 * @returns the certificate and key as PEM, and the certificate's DER and SHA-256
 * @example const { certPem, keyPem } = await makeSelfSignedCertificate({ commonName: "t", altNames: ["127.0.0.1"] });
 */
export async function makeSelfSignedCertificate(options: CertificateOptions): Promise<Identity> {
  const keys = await crypto.subtle.generateKey(EC_SIGN, true, ["sign", "verify"]);
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  const keyPem = x509.PemConverter.encode(pkcs8, "PRIVATE KEY");
  return await certifyKey(keys, keyPem, options);
}

/**
 * Loads this peer's identity from `dir`, making the folder, key and certificate when missing.
 *
 * @param dir the identity folder
 * @returns the identity to hand to the TLS transport
 * @throws {Error} when the key file is readable or writable by other users, is not a P-256
 *   PKCS#8 key, or the folder cannot be written (the message names the file and what to do)
 */
export async function loadOrCreateIdentity(dir: string): Promise<Identity> {
  const keyPath = join(dir, KEY_FILE);
  const certPath = join(dir, CERT_FILE);
  let keyPem = await readIfExists(keyPath);
  if (keyPem === undefined) {
    await makeIdentityDir(dir);
    keyPem = await publishNewKey(dir, keyPath);
  }
  await checkKeyPermissions(keyPath);
  const keys = await importKeyPair(keyPem, keyPath);
  const certPem = await readIfExists(certPath);
  if (certPem !== undefined) {
    const reused = await reuseCertificate(certPem, keys.publicKey);
    if (reused) return { ...reused, keyPem };
  }
  const identity = await certifyKey(keys, keyPem, { commonName: PEER_CERT_CN });
  await writeAtomically(certPath, identity.certPem, 0o644);
  return identity;
}

/** SHA-256 of a certificate's DER: the fingerprint both sides bind their proofs to. */
export function certificateFingerprint(certDer: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(certDer).digest());
}

async function certifyKey(
  keys: CryptoKeyPair,
  keyPem: string,
  options: CertificateOptions,
): Promise<Identity> {
  const now = Date.now();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
  ];
  if (options.altNames && options.altNames.length > 0) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(
        options.altNames.map((name): x509.JsonGeneralName => ({
          type: isIpAddress(name) ? "ip" : "dns",
          value: name,
        })),
      ),
    );
  }
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] &= 0x7f; // a positive integer, as RFC 5280 requires
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Array.from(serial, (b) => b.toString(16).padStart(2, "0")).join(""),
    name: `CN=${options.commonName}`,
    notBefore: options.notBefore ?? new Date(now - 3600_000),
    notAfter: options.notAfter ?? new Date(now + PEER_CERT_DAYS * DAY_MS),
    keys,
    signingAlgorithm: EC_SIGN,
    extensions,
  });
  const certDer = new Uint8Array(cert.rawData);
  return {
    certPem: `${cert.toString("pem")}\n`,
    keyPem,
    certDer,
    fingerprint: certificateFingerprint(certDer),
  };
}

function isIpAddress(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(":");
}

/**
 * Makes the identity folder owner-only. Missing folders above it are made (owner-only too) by
 * one recursive mkdir, which Deno checks against the path it is given (checked on 2.9.6): so
 * `--allow-write=DIR` is enough for a new `--identity DIR` whose parents do not exist yet.
 */
async function makeIdentityDir(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { mode: 0o700 });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return;
    try {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      await Deno.mkdir(dir, { mode: 0o700, recursive: true });
    } catch (err) {
      throw new Error(`cannot create identity folder ${dir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Writes a new key beside its final name, then links it into place: the link fails when
 * another process published its key first, and then that key is used instead.
 */
async function publishNewKey(dir: string, keyPath: string): Promise<string> {
  const keys = await crypto.subtle.generateKey(EC_SIGN, true, ["sign", "verify"]);
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  const keyPem = `${x509.PemConverter.encode(pkcs8, "PRIVATE KEY")}\n`;
  const tmp = join(dir, `.${KEY_FILE}.${crypto.randomUUID()}.tmp`);
  try {
    await Deno.writeTextFile(tmp, keyPem, { mode: 0o600, createNew: true });
    await Deno.chmod(tmp, 0o600).catch(() => {}); // the umask may have cleared bits; never added
    try {
      try {
        await Deno.link(tmp, keyPath);
      } catch (err) {
        if (err instanceof Deno.errors.AlreadyExists) throw err;
        // A file system without hard links: an exclusive create still elects one key.
        await Deno.writeTextFile(keyPath, keyPem, { mode: 0o600, createNew: true });
      }
      return keyPem;
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      const theirs = await readIfExists(keyPath);
      if (theirs === undefined) throw err;
      return theirs;
    }
  } catch (err) {
    throw new Error(`cannot create identity key ${keyPath}: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

async function checkKeyPermissions(keyPath: string): Promise<void> {
  const mode = (await Deno.stat(keyPath)).mode;
  if (mode === null) return; // Windows: no POSIX modes; the folder's ACL protects the key
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(3, "0");
    throw new Error(
      `identity key ${keyPath} is accessible by other users (mode ${octal}): ` +
        `run "chmod 600 ${keyPath}" if only you ever had access to it, otherwise delete it ` +
        `so that a new identity is made`,
    );
  }
}

async function importKeyPair(keyPem: string, keyPath: string): Promise<CryptoKeyPair> {
  try {
    const der = x509.PemConverter.decodeFirst(keyPem);
    const privateKey = await crypto.subtle.importKey("pkcs8", der, EC_KEY, true, ["sign"]);
    // Web Crypto cannot derive a public key directly; its JWK export carries the point.
    const jwk = await crypto.subtle.exportKey("jwk", privateKey);
    const publicKey = await crypto.subtle.importKey(
      "jwk",
      { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, ext: true },
      EC_KEY,
      true,
      ["verify"],
    );
    return { privateKey, publicKey };
  } catch (err) {
    throw new Error(
      `identity key ${keyPath} is not a P-256 private key in PKCS#8 PEM ` +
        `(${(err as Error).message}); delete it so that a new identity is made`,
      { cause: err },
    );
  }
}

/** The stored certificate, when it belongs to `publicKey` and is valid for a while yet. */
async function reuseCertificate(
  certPem: string,
  publicKey: CryptoKey,
): Promise<Omit<Identity, "keyPem"> | undefined> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch {
    return undefined; // unreadable: made again from the key
  }
  const ours = new Uint8Array(await crypto.subtle.exportKey("spki", publicKey));
  const theirs = new Uint8Array(cert.publicKey.rawData);
  if (ours.length !== theirs.length || !ours.every((b, i) => b === theirs[i])) return undefined;
  const now = Date.now();
  if (cert.notBefore.getTime() > now + DAY_MS || cert.notAfter.getTime() < now + 30 * DAY_MS) {
    return undefined; // expired or about to: a fresh one costs nothing
  }
  const certDer = new Uint8Array(cert.rawData);
  return { certPem, certDer, fingerprint: certificateFingerprint(certDer) };
}

async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(tmp, text, { mode, createNew: true });
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}
