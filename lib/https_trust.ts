/**
 * @module https_trust
 * HTTPS to and from the tracker. Client side: {@linkcode trackerFetch} verifies the tracker's
 * certificate against the system roots, a CA file (`--tracker-ca`), or a pinned SHA-256
 * certificate fingerprint (`--tracker-pin`); an invalid, expired or wrong-host certificate is
 * refused with one clear line, never ignored. Server side: {@linkcode loadTrackerTls} checks
 * `--tls-cert`/`--tls-key` before `Deno.serve` gets them. Does file and network I/O.
 *
 * A pin replaces trust in authorities, not the other checks: the certificate must still be
 * within its validity dates and name the host in the URL.
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import type { IncomingMessage } from "node:http";
import * as https from "node:https";
import { isIP } from "node:net";
import * as tls from "node:tls";
import { UsageError } from "./errors.ts";

/** How the tracker's certificate is trusted. Both unset: the system roots. */
export interface TrackerTrust {
  /** A PEM file of CA certificates (or the tracker's self-signed certificate itself). */
  caFile?: string;
  /** The tracker certificate's SHA-256 fingerprint, hex, colons optional (see {@linkcode parsePin}). */
  pinSha256?: string;
}

/** Options for {@linkcode trackerFetch} beyond `RequestInit`. */
export interface TrackerFetchOptions {
  /** Largest body read; a bigger answer is an error (default 1 MiB). */
  maxBodyBytes?: number;
}

/**
 * The tracker's certificate was refused (untrusted, expired, not yet valid, another host, not
 * the pinned one). Its message is the whole line to show; retrying helps only once the
 * certificate or the trust changes (the announcer retries with backoff for that reason).
 */
export class TrackerCertificateError extends Error {
  override name = "TrackerCertificateError";
}

/** Default cap on a tracker answer read by {@linkcode trackerFetch}. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/**
 * Normalises a pin as typed (`AB:CD:…`, `abcd…`, optionally `sha256:` first) to 64 lower-case
 * hex characters.
 *
 * @param text the `--tracker-pin` value
 * @returns the pin as 64 lower-case hex characters
 * @throws {UsageError} when it is not 32 bytes of hex
 * @example parsePin("sha256:AB:" + "00:".repeat(30) + "CD") === "ab" + "00".repeat(30) + "cd"
 */
export function parsePin(text: string): string {
  const hex = text.trim().replace(/^sha-?256[:/]/i, "").replaceAll(":", "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new UsageError(
      `invalid certificate pin "${text}" (expected the SHA-256 fingerprint: 64 hex digits, ` +
        `colons allowed, as the tracker prints it at start)`,
    );
  }
  return hex;
}

/** Formats a pin as the tracker prints it: upper-case hex pairs joined by colons. */
export function formatPin(hex: string): string {
  return hex.toUpperCase().match(/../g)?.join(":") ?? "";
}

/** The pin of a PEM certificate (its SHA-256 fingerprint), 64 lower-case hex characters. */
export function certificatePin(certPem: string): string {
  return parsePin(new X509Certificate(certPem).fingerprint256);
}

/**
 * `fetch` for tracker URLs with the chosen trust. Plain `http:` URLs are fetched as they are
 * (no certificate to check). The body is read (up to `maxBodyBytes`) before returning, so the
 * connection is closed when this resolves.
 *
 * @param url the announce URL
 * @param init method, headers, body (string or bytes), signal
 * @param trust CA file or pin; neither: the system roots
 * @param options body size cap
 * @returns the tracker's response
 * @throws {TrackerCertificateError} `tracker https://HOST:PORT/: certificate refused: REASON`
 *   for a certificate that is not trusted, expired, not yet valid, for another host, or not the
 *   pinned one;
 *   {UsageError} for an unreadable CA file or a malformed pin; network errors as `fetch`
 *   throws them
 */
export async function trackerFetch(
  url: string | URL,
  init: RequestInit = {},
  trust: TrackerTrust = {},
  options: TrackerFetchOptions = {},
): Promise<Response> {
  const target = new URL(url);
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (target.protocol !== "https:") return await bounded(await fetch(target, init), maxBodyBytes);
  if (trust.pinSha256 !== undefined) {
    return await pinnedFetch(target, init, parsePin(trust.pinSha256), maxBodyBytes);
  }
  let client: Deno.HttpClient | undefined;
  if (trust.caFile !== undefined) {
    let pem: string;
    try {
      pem = await Deno.readTextFile(trust.caFile);
    } catch (err) {
      throw new UsageError(`cannot read --tracker-ca ${trust.caFile}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
      throw new UsageError(`--tracker-ca ${trust.caFile} holds no PEM certificate`);
    }
    client = Deno.createHttpClient({ caCerts: [pem] });
  }
  try {
    const response = await fetch(target, client ? { ...init, client } : init);
    return await bounded(response, maxBodyBytes);
  } catch (err) {
    throw certificateError(target, err, trust) ?? err;
  } finally {
    client?.close();
  }
}

function origin(url: URL): string {
  return `${url.protocol}//${url.host}/`;
}

/** Turns a rustls certificate failure inside a fetch error into one line; others: undefined. */
function certificateError(
  url: URL,
  err: unknown,
  trust: TrackerTrust,
): TrackerCertificateError | undefined {
  const text = [err, (err as { cause?: unknown })?.cause]
    .map((e) => (e instanceof Error ? e.message : String(e ?? "")))
    .join(" ");
  const match = /invalid peer certificate: (.*)$/m.exec(text);
  if (!match) return undefined;
  const detail = match[1];
  let reason: string;
  if (/UnknownIssuer/.test(detail)) {
    reason = trust.caFile
      ? `it is not signed by a certificate in --tracker-ca ${trust.caFile}`
      : "it is not signed by a trusted authority (a self-signed tracker needs --tracker-ca " +
        "FILE or --tracker-pin SHA256)";
  } else if (/BadSignature/.test(detail)) {
    reason = `it is not signed by a certificate in --tracker-ca ${trust.caFile ?? "(none)"}`;
  } else if (/expired/i.test(detail)) {
    const when = /not valid after (\d+)/.exec(detail);
    reason = `it expired${when ? ` on ${new Date(Number(when[1]) * 1000).toISOString()}` : ""}`;
  } else if (/not valid yet/i.test(detail)) {
    const when = /not valid before (\d+)/.exec(detail);
    reason = `it is not valid yet${
      when ? ` (valid from ${new Date(Number(when[1]) * 1000).toISOString()})` : ""
    }`;
  } else if (/not valid for name/i.test(detail)) {
    const only = /only valid for (.*)$/.exec(detail);
    reason = `it is not valid for ${url.hostname}${only ? ` (it names ${only[1]})` : ""}`;
  } else if (/CaUsedAsEndEntity/.test(detail)) {
    reason = "it is a CA certificate used as a server certificate (make it with " +
      "basicConstraints=critical,CA:FALSE)";
  } else {
    reason = detail;
  }
  return new TrackerCertificateError(`tracker ${origin(url)}: certificate refused: ${reason}`, {
    cause: err,
  });
}

/** Reads a response's body with a cap and returns an equivalent, fully read response. */
async function bounded(response: Response, maxBodyBytes: number): Promise<Response> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (response.body) {
    for await (const chunk of response.body) {
      total += chunk.length;
      if (total > maxBodyBytes) {
        await response.body.cancel().catch(() => {});
        throw new Error(`tracker answer larger than ${maxBodyBytes} bytes`);
      }
      chunks.push(chunk);
    }
  }
  return new Response(concat(chunks, total), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

function concat(chunks: Uint8Array[], total: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Connects with TLS, checks the pinned certificate (fingerprint, dates, host name), and only
 * then sends the request over that same connection: nothing leaves before the check.
 */
async function pinnedFetch(
  url: URL,
  init: RequestInit,
  pin: string,
  maxBodyBytes: number,
): Promise<Response> {
  const signal = init.signal ?? undefined;
  signal?.throwIfAborted();
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port || 443);
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({
      host,
      port,
      servername: isIP(host) ? undefined : host,
      rejectUnauthorized: false, // the pin below replaces the authorities
      ALPNProtocols: ["http/1.1"],
    });
    const done = () => {
      signal?.removeEventListener("abort", onAbort);
      s.off("secureConnect", onSecure);
      s.off("error", onError);
    };
    const onAbort = () => {
      done();
      s.destroy();
      reject(signal?.reason);
    };
    const onError = (err: Error) => {
      done();
      s.destroy();
      reject(err);
    };
    const onSecure = () => {
      done();
      const problem = pinProblem(s.getPeerCertificate(), pin, host);
      if (problem) {
        s.destroy();
        reject(
          new TrackerCertificateError(`tracker ${origin(url)}: certificate refused: ${problem}`),
        );
      } else {
        resolve(s);
      }
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    s.on("secureConnect", onSecure);
    s.on("error", onError);
  });
  try {
    return await requestOver(socket, url, init, maxBodyBytes);
  } finally {
    socket.destroy();
  }
}

/** Why a pinned certificate is refused, or `undefined` when it is the one and valid here. */
function pinProblem(cert: tls.PeerCertificate, pin: string, host: string): string | undefined {
  if (!cert?.raw) return "the tracker presented no certificate";
  const got = parsePin(cert.fingerprint256);
  if (got !== pin) {
    return `its SHA-256 fingerprint ${formatPin(got)} is not the pinned ${formatPin(pin)}`;
  }
  const now = Date.now();
  const from = Date.parse(cert.valid_from);
  const to = Date.parse(cert.valid_to);
  if (!(to >= now)) return `it expired on ${new Date(to).toISOString()}`;
  if (!(from <= now)) return `it is not valid yet (valid from ${new Date(from).toISOString()})`;
  const mismatch = tls.checkServerIdentity(host, cert);
  if (mismatch) {
    return `it is not valid for ${host} (it names ${cert.subjectaltname || "no host"})`;
  }
  return undefined;
}

/** One HTTP/1.1 request over an established socket, with node's HTTP client. */
function requestOver(
  socket: tls.TLSSocket,
  url: URL,
  init: RequestInit,
  maxBodyBytes: number,
): Promise<Response> {
  const body = init.body;
  if (
    body !== undefined && body !== null && typeof body !== "string" && !(body instanceof Uint8Array)
  ) {
    throw new TypeError("trackerFetch with a pin sends string or byte bodies only");
  }
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((value, name) => (headers[name] = value));
  return new Promise<Response>((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: init.method ?? "GET",
        headers,
        signal: init.signal ?? undefined,
        createConnection: () => socket,
      } as https.RequestOptions,
      (res: IncomingMessage) => {
        const chunks: Uint8Array[] = [];
        let total = 0;
        res.on("data", (chunk: Uint8Array) => {
          total += chunk.length;
          if (total > maxBodyBytes) {
            res.destroy();
            reject(new Error(`tracker answer larger than ${maxBodyBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on("end", () => {
          const out = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value === undefined) continue;
            for (const v of Array.isArray(value) ? value : [value]) out.append(name, v);
          }
          resolve(
            new Response(concat(chunks, total), {
              status: res.statusCode ?? 502,
              statusText: res.statusMessage ?? "",
              headers: out,
            }),
          );
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body ?? undefined);
  });
}

/** What `Deno.serve` needs for HTTPS, checked, with the pin clients can use. */
export interface TrackerTlsOptions {
  cert: string;
  key: string;
  /** SHA-256 of the certificate, as {@linkcode formatPin} prints it. */
  pin: string;
  notAfter: Date;
  /** Problems worth a warning line that do not stop the tracker. */
  warnings: string[];
}

/**
 * Reads and checks the tracker's `--tls-cert` and `--tls-key` files for `Deno.serve({ cert, key })`.
 *
 * @param files the two paths
 * @returns PEM texts, the certificate pin, its end date and warnings (a CA certificate, no
 *   subjectAltName, a key file other users may read)
 * @throws {UsageError} when a file cannot be read or parsed, the key does not match the
 *   certificate, or the certificate is expired or not valid yet
 */
export async function loadTrackerTls(
  files: { certFile: string; keyFile: string },
): Promise<TrackerTlsOptions> {
  const read = async (path: string, flag: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (err) {
      throw new UsageError(`cannot read ${flag} ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  };
  const cert = await read(files.certFile, "--tls-cert");
  const key = await read(files.keyFile, "--tls-key");
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new UsageError(`--tls-cert ${files.certFile} is not a PEM certificate`, { cause: err });
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new UsageError(`--tls-key ${files.keyFile} is not a PEM private key`, { cause: err });
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new UsageError(
      `--tls-key ${files.keyFile} is not the key of --tls-cert ${files.certFile}`,
    );
  }
  const now = Date.now();
  const notAfter = new Date(x509.validTo);
  if (notAfter.getTime() < now) {
    throw new UsageError(
      `--tls-cert ${files.certFile} expired on ${notAfter.toISOString()}: clients will refuse it`,
    );
  }
  if (Date.parse(x509.validFrom) > now) {
    throw new UsageError(
      `--tls-cert ${files.certFile} is not valid before ${
        new Date(x509.validFrom).toISOString()
      }: clients will refuse it`,
    );
  }
  const warnings: string[] = [];
  if (x509.ca) {
    warnings.push(
      `--tls-cert ${files.certFile} is a CA certificate: clients refuse it as a server ` +
        `certificate (make it with basicConstraints=critical,CA:FALSE)`,
    );
  }
  if (!x509.subjectAltName) {
    warnings.push(
      `--tls-cert ${files.certFile} has no subjectAltName: clients refuse it for every host ` +
        `(add e.g. subjectAltName=DNS:tracker.example or IP:192.0.2.7)`,
    );
  }
  const mode = (await Deno.stat(files.keyFile)).mode;
  if (mode !== null && (mode & 0o077) !== 0) {
    warnings.push(
      `--tls-key ${files.keyFile} is readable by other users (mode ${
        (mode & 0o777).toString(8)
      }): chmod 600 it`,
    );
  }
  return { cert, key, pin: formatPin(parsePin(x509.fingerprint256)), notAfter, warnings };
}
