/**
 * @module web/auth
 * Who may read the web monitor: the token rule, the cookie that carries the token after the
 * first good request, and the loopback checks. Pure but for {@linkcode generateToken}, which
 * draws random bytes.
 */

/** Shortest token accepted from the command line: a shorter one could be guessed. */
export const MIN_TOKEN_CHARS = 16;
/** Longest token accepted (it travels in URLs and cookies). */
export const MAX_TOKEN_CHARS = 128;
/** Characters a token may hold: those that need no escaping in a URL or a cookie. */
const TOKEN_RE = /^[A-Za-z0-9._~-]+$/;

/**
 * Checks a token given by a person.
 *
 * @returns `undefined` when it is fine, else why not (one line)
 */
export function tokenProblem(token: string): string | undefined {
  if (token.length < MIN_TOKEN_CHARS) {
    return `the token must be at least ${MIN_TOKEN_CHARS} characters long, got ${token.length}`;
  }
  if (token.length > MAX_TOKEN_CHARS) {
    return `the token must be at most ${MAX_TOKEN_CHARS} characters long, got ${token.length}`;
  }
  if (!TOKEN_RE.test(token)) {
    return "the token may hold only letters, digits and . _ ~ -";
  }
  return undefined;
}

/** A random token: 24 random bytes as 32 base64url characters. */
export function generateToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

/**
 * Compares two strings in time that depends only on their lengths, not on where they differ,
 * so that a remote guesser learns nothing from response times.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  const length = Math.max(x.length, y.length);
  for (let i = 0; i < length; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** The values of a `Cookie` header, by name (the first one wins, as browsers send it). */
export function parseCookies(header: string | null): Map<string, string> {
  const cookies = new Map<string, string>();
  if (header === null || header.length > 8192) return cookies;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    if (name !== "" && !cookies.has(name)) cookies.set(name, value);
  }
  return cookies;
}

/** The cookie that carries the token for the monitor on `port` (cookies ignore ports). */
export function tokenCookieName(port: string): string {
  return `p2p_share_web_${/^\d{1,5}$/.test(port) ? port : "0"}`;
}

/** Where a request's token came from, if it had one. */
export type TokenSource = "query" | "cookie" | "header";

/**
 * The token a request offers: `?token=`, then `Authorization: Bearer`, then the cookie.
 */
export function offeredTokens(req: Request, url: URL): { token: string; from: TokenSource }[] {
  const offered: { token: string; from: TokenSource }[] = [];
  const query = url.searchParams.get("token");
  if (query !== null) offered.push({ token: query, from: "query" });
  const auth = req.headers.get("authorization");
  const bearer = auth === null ? null : /^Bearer\s+(\S+)\s*$/i.exec(auth);
  if (bearer) offered.push({ token: bearer[1], from: "header" });
  const cookie = parseCookies(req.headers.get("cookie")).get(tokenCookieName(url.port));
  if (cookie !== undefined) offered.push({ token: cookie, from: "cookie" });
  return offered;
}

/** True for addresses that only this machine can reach: 127.0.0.0/8, ::1, `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const lower = bare.toLowerCase();
  if (lower === "localhost" || lower.endsWith(".localhost")) return true;
  if (lower === "::1" || lower === "0:0:0:0:0:0:0:1") return true;
  if (/^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(lower)) return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(lower);
}

/**
 * True when a `Host` header names this machine's loopback (`127.0.0.1:PORT`, `localhost`,
 * `[::1]:PORT`). A page served without a token checks it, so that a web site whose name is
 * made to resolve to 127.0.0.1 (DNS rebinding) cannot read the monitor from a browser.
 */
export function isLoopbackHostHeader(header: string | null): boolean {
  if (header === null || header.length > 300) return false;
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::\d{1,5})?$/.exec(header.trim());
  return match !== null && isLoopbackHost(match[1]);
}
