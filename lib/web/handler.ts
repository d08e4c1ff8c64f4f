/**
 * @module web/handler
 * The web monitor's HTTP edge: a `Request -> Response` handler that checks the token (or, with
 * no token, that the page is asked for by a loopback name), serves the embedded page and its
 * assets, the event stream and a JSON snapshot. Read-only: GET only. It never calls
 * `Deno.serve` itself, so tests call it directly. No I/O of its own.
 *
 * Routes: `GET /` (page), `/app.js`, `/app.css`, `/events` (server-sent events, see `hub`),
 * `/snapshot` (the current state as JSON, with the full piece map).
 */

import { constantTimeEqual, isLoopbackHostHeader, offeredTokens, tokenCookieName } from "./auth.ts";
import type { MonitorHub } from "./hub.ts";
import { PAGE_CSS, PAGE_HTML } from "./page.ts";
import { PAGE_SCRIPT } from "./page_script.ts";

/** Longest request target (path and query) accepted, in bytes. */
export const MAX_URL_BYTES = 2048;

/** Settings for {@linkcode createWebHandler}. */
export interface WebHandlerOptions {
  /**
   * The token every request must carry (`?token=`, `Authorization: Bearer`, or the cookie set
   * after the first good request). Without one, only requests that name a loopback host are
   * served: the monitor is then bound to loopback.
   */
  token?: string;
}

/** The monitor's request handler. */
export type WebHandler = (req: Request) => Response;

const COMMON_HEADERS: Record<string, string> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

/** Everything the page needs is served from here: forbid any other load. */
const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/**
 * Makes the monitor's request handler.
 *
 * @param hub the monitor's state and event streams
 * @param options the token, when one is required
 * @returns a handler that never throws and never reads a request body
 * @example
 * ```ts
 * const handler = createWebHandler(hub, { token });
 * Deno.serve({ hostname: "0.0.0.0", port: 0 }, handler);
 * ```
 */
export function createWebHandler(hub: MonitorHub, options: WebHandlerOptions = {}): WebHandler {
  const token = options.token;
  const routes: Record<string, () => Response> = {
    "/": () =>
      asset(PAGE_HTML, "text/html; charset=utf-8", { "content-security-policy": PAGE_CSP }),
    "/app.js": () => asset(PAGE_SCRIPT, "text/javascript; charset=utf-8"),
    "/app.css": () => asset(PAGE_CSS, "text/css; charset=utf-8"),
    "/events": () =>
      new Response(hub.connect(), {
        status: 200,
        headers: {
          ...COMMON_HEADERS,
          "content-type": "text/event-stream; charset=utf-8",
          "x-accel-buffering": "no",
        },
      }),
    "/snapshot": () => {
      const view = hub.current();
      return view === undefined
        ? text(503, "no snapshot available yet")
        : new Response(JSON.stringify(view), {
          status: 200,
          headers: { ...COMMON_HEADERS, "content-type": "application/json; charset=utf-8" },
        });
    },
  };

  return (req) => {
    try {
      let url: URL;
      try {
        url = new URL(req.url);
      } catch {
        return text(400, "malformed request URL");
      }
      const targetBytes = new TextEncoder().encode(url.pathname + url.search).length;
      if (targetBytes > MAX_URL_BYTES) return text(414, "request URL too long");

      let setCookie: string | undefined;
      if (token !== undefined) {
        const good = offeredTokens(req, url).find((o) => constantTimeEqual(o.token, token));
        if (good === undefined) {
          const res = text(
            401,
            "401 Unauthorized: this p2p-share monitor needs its token. Open the URL that " +
              "p2p-share printed (it ends with ?token=...).",
          );
          res.headers.set("www-authenticate", 'Bearer realm="p2p-share web monitor"');
          return res;
        }
        if (good.from === "query") {
          // The page's own requests (script, style, event stream) then carry it by themselves.
          setCookie = `${tokenCookieName(url.port)}=${token}; Path=/; HttpOnly; SameSite=Strict`;
        }
      } else if (!isLoopbackHostHeader(req.headers.get("host") ?? url.host)) {
        return text(403, "403 Forbidden: this monitor answers only to 127.0.0.1 or localhost");
      }

      const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
      if (route === undefined) return text(404, "404 Not Found");
      if (req.method !== "GET") {
        const res = text(405, `405 Method Not Allowed: the monitor is read-only (use GET)`);
        res.headers.set("allow", "GET");
        return res;
      }
      const res = route();
      if (setCookie !== undefined) res.headers.append("set-cookie", setCookie);
      return res;
    } catch {
      return text(500, "500 Internal Server Error");
    }
  };
}

function asset(body: string, type: string, extra: Record<string, string> = {}): Response {
  return new Response(body, {
    status: 200,
    headers: { ...COMMON_HEADERS, "content-type": type, ...extra },
  });
}

function text(status: number, body: string): Response {
  return new Response(`${body}\n`, {
    status,
    headers: { ...COMMON_HEADERS, "content-type": "text/plain; charset=utf-8" },
  });
}
