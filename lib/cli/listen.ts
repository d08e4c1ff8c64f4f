/**
 * @module cli/listen
 * Opens TCP listeners with one-line errors people understand (port in use, permission denied).
 */

/**
 * Listens on `host:port` (port 0 lets the OS pick).
 *
 * @throws {Error} `port 5001 on 0.0.0.0 is already in use` and the like
 */
export function listenTcp(host: string, port: number): Deno.TcpListener {
  try {
    return Deno.listen({ hostname: host, port, transport: "tcp" });
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      throw new Error(
        `port ${port} on ${host} is already in use (choose another with --port, or 0 for any)`,
        {
          cause: err,
        },
      );
    }
    if (err instanceof Deno.errors.AddrNotAvailable) {
      throw new Error(`cannot listen on ${host}: no such address on this machine`, { cause: err });
    }
    throw err;
  }
}
