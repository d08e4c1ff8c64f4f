/**
 * @module swarm_table
 * The tracker's peer table: one swarm per info hash, one entry per announcing peer, expiry by
 * an injected clock and hard limits on how big it may grow. Pure: no Deno namespace, no timers, no
 * I/O. The HTTP edge (`tracker_server`) parses hostile queries into {@linkcode AnnounceRecord}s
 * and hands them here already checked.
 *
 * A peer is keyed by its peer id *and* the address the tracker saw it at, so that somebody who
 * learns a peer id from a peer list cannot remove or move that peer from elsewhere.
 */

/** Default number of swarms (distinct info hashes) the table holds. */
export const DEFAULT_MAX_SWARMS = 1000;
/** Default number of peers one swarm holds. */
export const DEFAULT_MAX_PEERS_PER_SWARM = 5000;
/** Default number of peers across all swarms: bounds memory whatever the mix of swarms. */
export const DEFAULT_MAX_PEERS = 200_000;
/** Default time a peer stays listed without announcing: two 60 s intervals plus slack. */
export const DEFAULT_PEER_TTL_MS = 2 * 60_000 + 30_000;

/** What an announce says happened; `""` is a regular re-announce. */
export type AnnounceEvent = "started" | "completed" | "stopped" | "";

/** One checked, normalised announce, as the HTTP edge hands it to the table. */
export interface AnnounceRecord {
  /** 64 lower-case hex characters (SHA-256 of the metadata's `info`). */
  infoHash: string;
  /** 40 lower-case hex characters (20 bytes). */
  peerId: string;
  /** The address the peer is reached at (canonical form, see {@linkcode normalizeIp}). */
  ip: string;
  /** The port the peer accepts connections on, 1..65535. */
  port: number;
  /** Bytes the peer still needs; 0 makes it a seeder. */
  left: number;
  uploaded: number;
  downloaded: number;
  event: AnnounceEvent;
  /** How many peers the asker wants back; the edge applies its own cap first. */
  numwant: number;
  /** Display name of the shared file, kept for the swarm if it has none yet. */
  name?: string;
}

/** What the table keeps per peer. */
export interface PeerEntry {
  peerId: string;
  ip: string;
  port: number;
  left: number;
  uploaded: number;
  downloaded: number;
  /** Clock reading (the caller's monotonic milliseconds) of the last announce. */
  lastSeenMs: number;
}

/** A peer as handed out to other peers. */
export interface PeerAddress {
  ip: string;
  port: number;
  peerId: string;
}

/** Counts for one swarm. */
export interface SwarmStats {
  infoHash: string;
  /** Name given by an announcer; unverified, for display only. */
  name?: string;
  /** Peers with nothing left to download. */
  seeders: number;
  /** Peers still downloading. */
  leechers: number;
  /** `completed` announces seen since the swarm appeared (once per peer entry). */
  completed: number;
}

/** Counts for the whole table. */
export interface TableStats {
  swarms: SwarmStats[];
  swarmCount: number;
  peerCount: number;
}

/** Why the table refused to add a peer. */
export type Refusal = "too_many_swarms" | "swarm_full" | "tracker_full";

/** The answer to an announce: peers to hand out, or a typed refusal. */
export type AnnounceOutcome =
  | {
    ok: true;
    peers: PeerAddress[];
    seeders: number;
    leechers: number;
    completed: number;
  }
  | { ok: false; refusal: Refusal; message: string };

/** Limits and clock settings for a {@linkcode SwarmTable}. */
export interface SwarmTableOptions {
  maxSwarms?: number;
  maxPeersPerSwarm?: number;
  maxPeers?: number;
  /** A peer that has not announced for this long is dropped (about two intervals). */
  peerTtlMs?: number;
  /** Source of randomness in [0, 1) for picking peer subsets; injectable for tests. */
  random?: () => number;
}

interface StoredPeer extends PeerEntry {
  completedCounted: boolean;
}

interface Swarm {
  name?: string;
  peers: Map<string, StoredPeer>;
  seeders: number;
  completed: number;
}

function peerKey(peerId: string, ip: string): string {
  return `${peerId} ${ip}`;
}

/**
 * The tracker's in-memory peer table.
 *
 * Nothing persists: a restarted tracker starts empty and is repopulated by the peers' next
 * regular announces, which the table accepts without a prior `started`.
 *
 * @example
 * ```ts
 * const table = new SwarmTable({ peerTtlMs: 150_000 });
 * const outcome = table.announce(record, nowMs); // nowMs: the shell's monotonic clock
 * const peers = outcome.ok ? outcome.peers : [];
 * ```
 */
export class SwarmTable {
  readonly maxSwarms: number;
  readonly maxPeersPerSwarm: number;
  readonly maxPeers: number;
  readonly peerTtlMs: number;
  #random: () => number;
  #swarms = new Map<string, Swarm>();
  #peerCount = 0;

  /**
   * @param options limits (each a positive integer), the peer time-to-live and a random source
   * @throws {RangeError} when a limit is not a positive integer
   */
  constructor(options: SwarmTableOptions = {}) {
    this.maxSwarms = positive(options.maxSwarms ?? DEFAULT_MAX_SWARMS, "maxSwarms");
    this.maxPeersPerSwarm = positive(
      options.maxPeersPerSwarm ?? DEFAULT_MAX_PEERS_PER_SWARM,
      "maxPeersPerSwarm",
    );
    this.maxPeers = positive(options.maxPeers ?? DEFAULT_MAX_PEERS, "maxPeers");
    this.peerTtlMs = positive(options.peerTtlMs ?? DEFAULT_PEER_TTL_MS, "peerTtlMs");
    this.#random = options.random ?? Math.random;
  }

  /** Number of swarms currently held. */
  get swarmCount(): number {
    return this.#swarms.size;
  }

  /** Number of peers currently held, across all swarms. */
  get peerCount(): number {
    return this.#peerCount;
  }

  /**
   * Records an announce and picks the peers to hand back.
   *
   * The asker never gets itself back (same peer id, or the same ip and port), nor peers whose
   * time-to-live ran out (they are dropped on the way). A seeder gets only leechers, since it has
   * nothing to fetch from other seeders. When more peers qualify than `numwant`, a uniformly
   * random subset is returned so that load spreads over the swarm. `stopped` removes the peer at
   * once and returns no peers.
   *
   * @param record the checked announce
   * @param nowMs the caller's monotonic clock, in milliseconds
   * @returns the peers and the swarm's counts, or a refusal when a limit would be exceeded
   */
  announce(record: AnnounceRecord, nowMs: number): AnnounceOutcome {
    const key = peerKey(record.peerId, record.ip);
    let swarm = this.#swarms.get(record.infoHash);

    if (record.event === "stopped") {
      if (swarm) {
        this.#removeFromSwarm(record.infoHash, swarm, key);
        return { ok: true, peers: [], ...counts(swarm) };
      }
      return { ok: true, peers: [], seeders: 0, leechers: 0, completed: 0 };
    }

    if (swarm) {
      this.#pruneSwarm(record.infoHash, swarm, nowMs);
      swarm = this.#swarms.get(record.infoHash);
    }
    const existing = swarm?.peers.get(key);
    if (swarm && existing) {
      if (existing.left === 0 && record.left !== 0) swarm.seeders--;
      if (existing.left !== 0 && record.left === 0) swarm.seeders++;
      existing.port = record.port;
      existing.left = record.left;
      existing.uploaded = record.uploaded;
      existing.downloaded = record.downloaded;
      existing.lastSeenMs = nowMs;
      return this.#answer(swarm, existing, record);
    }

    const refusal = this.#refusal(swarm);
    if (refusal) return refusal;
    if (!swarm) {
      swarm = { peers: new Map(), seeders: 0, completed: 0 };
      this.#swarms.set(record.infoHash, swarm);
    }
    const peer: StoredPeer = {
      peerId: record.peerId,
      ip: record.ip,
      port: record.port,
      left: record.left,
      uploaded: record.uploaded,
      downloaded: record.downloaded,
      lastSeenMs: nowMs,
      completedCounted: false,
    };
    swarm.peers.set(key, peer);
    this.#peerCount++;
    if (peer.left === 0) swarm.seeders++;
    return this.#answer(swarm, peer, record);
  }

  /**
   * Removes one peer at once (what `stopped` does).
   *
   * @returns whether the peer was listed
   */
  remove(infoHash: string, peerId: string, ip: string): boolean {
    const swarm = this.#swarms.get(infoHash);
    if (!swarm) return false;
    return this.#removeFromSwarm(infoHash, swarm, peerKey(peerId, ip));
  }

  /**
   * Drops every peer not seen within the time-to-live, and swarms left empty.
   *
   * @param nowMs the same clock `announce` was given
   * @returns how many peers were dropped
   */
  expire(nowMs: number): number {
    let dropped = 0;
    for (const [infoHash, swarm] of this.#swarms) {
      dropped += this.#pruneSwarm(infoHash, swarm, nowMs);
    }
    return dropped;
  }

  /** Counts for one swarm; zeros when the info hash is unknown. */
  scrape(infoHash: string): SwarmStats {
    const swarm = this.#swarms.get(infoHash);
    if (!swarm) return { infoHash, seeders: 0, leechers: 0, completed: 0 };
    return swarmStats(infoHash, swarm);
  }

  /** Counts for every swarm, the busiest first (then by info hash, so the order is stable). */
  stats(): TableStats {
    const swarms = [...this.#swarms].map(([infoHash, swarm]) => swarmStats(infoHash, swarm));
    swarms.sort((a, b) =>
      b.seeders + b.leechers - (a.seeders + a.leechers) ||
      (a.infoHash < b.infoHash ? -1 : a.infoHash > b.infoHash ? 1 : 0)
    );
    return { swarms, swarmCount: this.#swarms.size, peerCount: this.#peerCount };
  }

  /** A copy of one swarm's entries (for tests and diagnostics). */
  peersOf(infoHash: string): PeerEntry[] {
    const swarm = this.#swarms.get(infoHash);
    if (!swarm) return [];
    return [...swarm.peers.values()].map(({ completedCounted: _, ...entry }) => entry);
  }

  #answer(swarm: Swarm, peer: StoredPeer, record: AnnounceRecord): AnnounceOutcome {
    // Counted once per peer entry, so re-sending `completed` cannot inflate the figure.
    if (record.event === "completed" && !peer.completedCounted) {
      peer.completedCounted = true;
      swarm.completed++;
    }
    // The first name wins: a later announcer cannot rename a swarm others already see.
    if (swarm.name === undefined && record.name) swarm.name = record.name;
    return { ok: true, peers: this.#pick(swarm, peer, record.numwant), ...counts(swarm) };
  }

  #refusal(swarm: Swarm | undefined): AnnounceOutcome | undefined {
    if (!swarm && this.#swarms.size >= this.maxSwarms) {
      return {
        ok: false,
        refusal: "too_many_swarms",
        message: `tracker holds its maximum of ${this.maxSwarms} swarms`,
      };
    }
    if (swarm && swarm.peers.size >= this.maxPeersPerSwarm) {
      return {
        ok: false,
        refusal: "swarm_full",
        message: `swarm is full (${this.maxPeersPerSwarm} peers)`,
      };
    }
    if (this.#peerCount >= this.maxPeers) {
      return {
        ok: false,
        refusal: "tracker_full",
        message: `tracker holds its maximum of ${this.maxPeers} peers`,
      };
    }
    return undefined;
  }

  #removeFromSwarm(infoHash: string, swarm: Swarm, key: string): boolean {
    const peer = swarm.peers.get(key);
    if (!peer) return false;
    swarm.peers.delete(key);
    this.#peerCount--;
    if (peer.left === 0) swarm.seeders--;
    if (swarm.peers.size === 0) this.#swarms.delete(infoHash);
    return true;
  }

  #pruneSwarm(infoHash: string, swarm: Swarm, nowMs: number): number {
    const oldest = nowMs - this.peerTtlMs;
    let dropped = 0;
    for (const [key, peer] of swarm.peers) {
      if (peer.lastSeenMs < oldest) {
        swarm.peers.delete(key);
        this.#peerCount--;
        if (peer.left === 0) swarm.seeders--;
        dropped++;
      }
    }
    if (swarm.peers.size === 0) this.#swarms.delete(infoHash);
    return dropped;
  }

  #pick(swarm: Swarm, asker: StoredPeer, numwant: number): PeerAddress[] {
    const want = Math.max(0, Math.floor(numwant));
    if (want === 0) return [];
    const askerSeeds = asker.left === 0;
    const candidates: StoredPeer[] = [];
    for (const peer of swarm.peers.values()) {
      if (peer === asker || peer.peerId === asker.peerId) continue;
      if (peer.ip === asker.ip && peer.port === asker.port) continue;
      if (askerSeeds && peer.left === 0) continue;
      candidates.push(peer);
    }
    // Partial Fisher-Yates: the first `take` slots end up a uniform random sample.
    const take = Math.min(want, candidates.length);
    if (take < candidates.length) {
      for (let i = 0; i < take; i++) {
        const j = i + Math.min(
          candidates.length - i - 1,
          Math.floor(this.#random() * (candidates.length - i)),
        );
        const tmp = candidates[i];
        candidates[i] = candidates[j];
        candidates[j] = tmp;
      }
    }
    const out: PeerAddress[] = [];
    for (let i = 0; i < take; i++) {
      const { ip, port, peerId } = candidates[i];
      out.push({ ip, port, peerId });
    }
    return out;
  }
}

function counts(swarm: Swarm): { seeders: number; leechers: number; completed: number } {
  return {
    seeders: swarm.seeders,
    leechers: swarm.peers.size - swarm.seeders,
    completed: swarm.completed,
  };
}

function swarmStats(infoHash: string, swarm: Swarm): SwarmStats {
  const stats: SwarmStats = { infoHash, ...counts(swarm) };
  if (swarm.name !== undefined) stats.name = swarm.name;
  return stats;
}

function positive(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * Checks an IP address literal and returns its canonical text, or `undefined`.
 *
 * Canonical forms keep one peer from appearing twice under two spellings, and turn the
 * IPv4-mapped IPv6 addresses a dual-stack listener reports (`::ffff:10.0.0.1`) back into IPv4.
 * Leading zeros in IPv4 are refused (some parsers read them as octal). Host names, zone ids and
 * anything else are refused: the tracker hands out addresses, never names to resolve.
 *
 * @param text an address as received
 * @returns `"10.0.0.1"`, `"::1"`..., or `undefined` when it is not an IP literal
 * @example normalizeIp("::ffff:127.0.0.1") === "127.0.0.1"
 */
export function normalizeIp(text: string): string | undefined {
  if (text.length === 0 || text.length > 45) return undefined;
  const v4 = IPV4.exec(text);
  if (v4) {
    const parts = v4.slice(1);
    if (parts.some((p) => (p.length > 1 && p.startsWith("0")) || Number(p) > 255)) {
      return undefined;
    }
    return parts.map(Number).join(".");
  }
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  if (!bare.includes(":") || !/^[0-9a-fA-F:.]+$/.test(bare)) return undefined;
  let host: string;
  try {
    host = new URL(`http://[${bare}]/`).hostname;
  } catch {
    return undefined;
  }
  const canonical = host.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped) {
    const high = parseInt(mapped[1], 16);
    const low = parseInt(mapped[2], 16);
    return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
  }
  return canonical;
}
