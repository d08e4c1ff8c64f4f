/**
 * @module web/piece_map
 * The compact text form of a share's piece states that the web monitor sends to the page
 * (one state per piece: 0 missing, 1 in flight, 2 verified). Pure: no I/O.
 *
 * Three forms, each a prefix and a body, so that the page's cost stays small for a
 * 100,000-piece share:
 *
 * - `r:` run-length, items `S<count>` joined by `,` (a download that goes in order, or a
 *   seeder, is a handful of runs): `r:2rs,15,0ab`
 * - `p:` packed, four pieces per byte (piece `i` in byte `i >> 2`, bits `(i & 3) * 2`), base64:
 *   never more than about 2.7 characters per 8 pieces, whatever the pattern
 * - `d:` delta against the previous map, items `S<start>[.<length>]` joined by `,`: what
 *   changed since the last update, usually a few pieces
 *
 * Counts, starts and lengths are base 36. {@linkcode applyPieceMap} is also the page's decoder:
 * it is embedded into the page's script by its source text, so it must stay self-contained
 * (no reference to anything else in this module).
 */

/** Highest valid state; any other value is sent as missing. */
const MAX_STATE = 2;

/**
 * Encodes `states`, as a delta against `previous` when one is given and that is shorter.
 *
 * @param states one byte per piece (values above 2 are sent as 0)
 * @param previous the states of the last map sent, same length, or `undefined` for a full map
 * @returns the shortest form, or `null` when nothing changed since `previous`
 * @example
 * ```ts
 * encodePieceMap(new Uint8Array(1000).fill(2, 0, 600)); // "r:2go,0b4"
 * ```
 */
export function encodePieceMap(states: Uint8Array, previous?: Uint8Array): string | null {
  const packedLength = 2 + 4 * Math.ceil(Math.ceil(states.length / 4) / 3);
  let best: string | undefined;
  if (previous !== undefined && previous.length === states.length) {
    const delta = encodeDelta(states, previous, packedLength);
    if (delta === "d:") return null;
    if (delta !== undefined) best = delta;
  }
  const limit = Math.min(packedLength, best?.length ?? Infinity);
  const runs = encodeRuns(states, limit);
  if (runs !== undefined && runs.length < (best?.length ?? Infinity)) best = runs;
  if (best === undefined || best.length > packedLength) best = encodePacked(states);
  return best;
}

function clampState(value: number): number {
  return value <= MAX_STATE ? value : 0;
}

/** `r:` form, or `undefined` as soon as it would be longer than `limit` characters. */
function encodeRuns(states: Uint8Array, limit: number): string | undefined {
  const items: string[] = [];
  let length = 2;
  let i = 0;
  while (i < states.length) {
    const state = clampState(states[i]);
    let end = i + 1;
    while (end < states.length && clampState(states[end]) === state) end++;
    const item = `${state}${(end - i).toString(36)}`;
    length += item.length + (items.length > 0 ? 1 : 0);
    if (length > limit) return undefined;
    items.push(item);
    i = end;
  }
  return `r:${items.join(",")}`;
}

/** `d:` form (`"d:"` alone when nothing changed), or `undefined` past `limit` characters. */
function encodeDelta(
  states: Uint8Array,
  previous: Uint8Array,
  limit: number,
): string | undefined {
  const items: string[] = [];
  let length = 2;
  let i = 0;
  while (i < states.length) {
    const state = clampState(states[i]);
    if (state === clampState(previous[i])) {
      i++;
      continue;
    }
    let end = i + 1;
    while (
      end < states.length && clampState(states[end]) === state &&
      clampState(previous[end]) !== state
    ) end++;
    const run = end - i;
    const item = `${state}${i.toString(36)}${run > 1 ? `.${run.toString(36)}` : ""}`;
    length += item.length + (items.length > 0 ? 1 : 0);
    // Past the packed size a delta is pointless: stop early and let the full map win.
    if (length > limit) return undefined;
    items.push(item);
    i = end;
  }
  return `d:${items.join(",")}`;
}

/** `p:` form: 2 bits per piece, base64. */
function encodePacked(states: Uint8Array): string {
  const bytes = new Uint8Array(Math.ceil(states.length / 4));
  for (let i = 0; i < states.length; i++) {
    bytes[i >> 2] |= clampState(states[i]) << ((i & 3) * 2);
  }
  let binary = "";
  const chunk = 0x8000;
  for (let at = 0; at < bytes.length; at += chunk) {
    binary += String.fromCharCode(...bytes.subarray(at, at + chunk));
  }
  return `p:${btoa(binary)}`;
}

/**
 * Decodes a piece map. A full form (`r:`, `p:`) gives new states; a delta (`d:`) is applied to
 * `options.base` in place. Self-contained: the page embeds this function's source.
 *
 * @param text the encoded map
 * @param count the number of pieces in the share
 * @param options `base`: the current states, which a delta needs (and which a full map
 *   overwrites when its length is `count`)
 * @returns the states after applying `text`
 * @throws {RangeError} when `text` is malformed or does not describe `count` pieces
 * @example
 * ```ts
 * let states = applyPieceMap("r:2go,0b4", 1000); // the first map of a stream
 * states = applyPieceMap("d:2go", 1000, { base: states }); // then what changed
 * ```
 */
export function applyPieceMap(
  text: string,
  count: number,
  options: { base?: Uint8Array } = {},
): Uint8Array {
  const states = options.base;
  const fail = (why: string): never => {
    throw new RangeError(`bad piece map (${why})`);
  };
  if (!Number.isSafeInteger(count) || count < 0) fail(`piece count ${count}`);
  const kind = text.slice(0, 2);
  const body = text.slice(2);
  const readInt = (digits: string): number => {
    const value = /^[0-9a-z]{1,11}$/.test(digits) ? parseInt(digits, 36) : NaN;
    return Number.isSafeInteger(value) ? value : fail(`number "${digits.slice(0, 20)}"`);
  };
  const readState = (c: string): number =>
    (c === "0" || c === "1" || c === "2") ? Number(c) : fail(
      `state "${c}"`,
    );
  if (kind === "d:") {
    if (states === undefined || states.length !== count) fail("delta without a base map");
    const target = states as Uint8Array;
    if (body === "") return target;
    for (const item of body.split(",")) {
      const state = readState(item.charAt(0));
      const [startText, lengthText] = item.slice(1).split(".", 2);
      const start = readInt(startText);
      const length = lengthText === undefined ? 1 : readInt(lengthText);
      if (length < 1 || start + length > count) fail(`range ${start}+${length} of ${count}`);
      target.fill(state, start, start + length);
    }
    return target;
  }
  const out = states !== undefined && states.length === count ? states : new Uint8Array(count);
  if (kind === "r:") {
    let at = 0;
    if (body !== "") {
      for (const item of body.split(",")) {
        const state = readState(item.charAt(0));
        const run = readInt(item.slice(1));
        if (run < 1 || at + run > count) fail(`run of ${run} at ${at} of ${count}`);
        out.fill(state, at, at + run);
        at += run;
      }
    }
    if (at !== count) fail(`runs cover ${at} of ${count} pieces`);
    return out;
  }
  if (kind === "p:") {
    let binary = "";
    try {
      binary = atob(body);
    } catch {
      fail("not base64");
    }
    if (binary.length !== Math.ceil(count / 4)) {
      fail(`${binary.length} bytes for ${count} pieces`);
    }
    for (let i = 0; i < count; i++) {
      const state = (binary.charCodeAt(i >> 2) >> ((i & 3) * 2)) & 3;
      out[i] = state === 3 ? fail(`state 3 at piece ${i}`) : state;
    }
    return out;
  }
  return fail(`unknown form "${kind.slice(0, 2)}"`);
}
