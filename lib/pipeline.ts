/**
 * @module pipeline
 * How many bytes a connection keeps requested ahead. Pure: no I/O.
 *
 * Enough for the link: its delivery rate times twice its round trip (the bandwidth-delay
 * product with room for jitter), which grows as the measured rate does, like TCP's slow start.
 * At least a floor shared by all connections, so the peer always has the next block to send.
 * Not more: bytes asked ahead wait in socket buffers, where they go cold. 1 GiB over loopback
 * took 1.50 s with 4 MiB asked ahead on each of 4 connections, 1.35 s with 1 MiB each and
 * 1.25 s with 512 KiB each; `--parallel 8` took 1.64 s and 1.27 s (4 rounds taking turns).
 */

/** Bytes requested ahead on one connection at most. */
export const PIPELINE_MAX_BYTES = 4 * 1024 * 1024;
/** The least requested ahead, split between all connections (each keeps two blocks at least). */
export const PIPELINE_FLOOR_BYTES = 1024 * 1024;

/** What the pipeline size depends on. */
export interface PipelineInput {
  /** What this connection delivered lately, bytes per second (0 before anything came). */
  rateBytesPerSec: number;
  /** The connection's round trip, ms (its handshake's). */
  roundTripMs: number;
  /** Bytes per request. */
  blockBytes: number;
  /** Connections downloading now, this one included. */
  connections: number;
  /** Requests in flight per connection at most. */
  maxRequests: number;
}

/** Bytes to keep requested ahead on one connection (see the module doc). */
export function pipelineBytes(input: PipelineInput): number {
  const floor = Math.max(
    2 * input.blockBytes,
    PIPELINE_FLOOR_BYTES / Math.max(1, input.connections),
  );
  const link = input.rateBytesPerSec * 2 * input.roundTripMs / 1000;
  return Math.min(PIPELINE_MAX_BYTES, input.maxRequests * input.blockBytes, Math.max(floor, link));
}
