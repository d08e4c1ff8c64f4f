/**
 * @module net_addr
 * Addresses to show people: the LAN address another machine can reach us on. Does I/O
 * (reads the network interfaces, which needs `--allow-sys=networkInterfaces`).
 */

/**
 * The address to print in a hint for a listener bound to `boundHost`: the bound address
 * itself, or for a wildcard bind this machine's first non-internal IPv4 address.
 */
export function reachableAddress(boundHost: string): string {
  if (boundHost !== "0.0.0.0" && boundHost !== "::" && boundHost !== "") return boundHost;
  try {
    for (const nic of Deno.networkInterfaces()) {
      if (nic.family === "IPv4" && !nic.address.startsWith("127.")) return nic.address;
    }
  } catch {
    // No permission to list interfaces: fall back to loopback, which is still correct locally.
  }
  return "127.0.0.1";
}

/**
 * Parses `HOST:PORT` (IPv6 as `[::1]:PORT`).
 *
 * @throws {RangeError} when it is not of that form
 */
export function parseHostPort(text: string): { hostname: string; port: number } {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:\s]+):(\d+)$/.exec(text);
  const port = match ? Number(match[2]) : NaN;
  if (!match || !(port >= 1 && port <= 65535)) {
    throw new RangeError(`invalid address "${text}" (expected HOST:PORT)`);
  }
  return { hostname: match[1], port };
}
