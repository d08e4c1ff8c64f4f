/**
 * @module bitfield
 * Which pieces a peer (or we) hold: one bit per piece, most significant bit first, as sent on
 * the wire. Pure: no I/O.
 */

/** A fixed-size set of piece indexes. */
export class Bitfield {
  readonly size: number;
  readonly bytes: Uint8Array;
  #count = 0;

  /** An empty bitfield for `size` pieces. */
  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new RangeError(`invalid bitfield size ${size}`);
    }
    this.size = size;
    this.bytes = new Uint8Array(Math.ceil(size / 8));
  }

  /**
   * Reads a bitfield received from a peer.
   *
   * @throws {RangeError} when the length is wrong or spare bits are set
   */
  static fromBytes(bytes: Uint8Array, size: number): Bitfield {
    const field = new Bitfield(size);
    if (bytes.length !== field.bytes.length) {
      throw new RangeError(`bitfield of ${bytes.length} bytes, expected ${field.bytes.length}`);
    }
    field.bytes.set(bytes);
    const spare = field.bytes.length * 8 - size;
    if (spare > 0 && (field.bytes[field.bytes.length - 1] & ((1 << spare) - 1)) !== 0) {
      throw new RangeError("bitfield has bits set past the last piece");
    }
    for (const b of field.bytes) field.#count += popcount(b);
    return field;
  }

  /** A bitfield with every piece set. */
  static full(size: number): Bitfield {
    const field = new Bitfield(size);
    for (let i = 0; i < size; i++) field.set(i);
    return field;
  }

  /** Number of pieces held. */
  get count(): number {
    return this.#count;
  }

  /** True when every piece is held. */
  get complete(): boolean {
    return this.#count === this.size;
  }

  /** True when piece `index` is held; false for any index out of range. */
  has(index: number): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) return false;
    return (this.bytes[index >> 3] & (0x80 >> (index & 7))) !== 0;
  }

  /** Marks piece `index` as held. */
  set(index: number): void {
    this.#checkIndex(index);
    if (this.has(index)) return;
    this.bytes[index >> 3] |= 0x80 >> (index & 7);
    this.#count++;
  }

  /** Marks piece `index` as not held. */
  clear(index: number): void {
    this.#checkIndex(index);
    if (!this.has(index)) return;
    this.bytes[index >> 3] &= ~(0x80 >> (index & 7));
    this.#count--;
  }

  /** Indexes of the pieces held, ascending. */
  *indexes(): IterableIterator<number> {
    for (let i = 0; i < this.size; i++) if (this.has(i)) yield i;
  }

  /** Compact text form for state files: `0-99,150,160-200` (empty string when none). */
  toRanges(): string {
    const parts: string[] = [];
    let start = -1;
    for (let i = 0; i <= this.size; i++) {
      const held = i < this.size && this.has(i);
      if (held && start < 0) start = i;
      if (!held && start >= 0) {
        parts.push(start === i - 1 ? `${start}` : `${start}-${i - 1}`);
        start = -1;
      }
    }
    return parts.join(",");
  }

  /**
   * Parses the text form of {@linkcode Bitfield.toRanges}.
   *
   * @throws {RangeError} on malformed text or an index out of range
   */
  static fromRanges(text: string, size: number): Bitfield {
    const field = new Bitfield(size);
    if (text === "") return field;
    for (const part of text.split(",")) {
      const match = /^(\d+)(?:-(\d+))?$/.exec(part);
      if (!match) throw new RangeError(`malformed piece range "${part}"`);
      const first = Number(match[1]);
      const last = match[2] === undefined ? first : Number(match[2]);
      if (last < first || last >= size) throw new RangeError(`piece range "${part}" out of bounds`);
      for (let i = first; i <= last; i++) field.set(i);
    }
    return field;
  }

  #checkIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) {
      throw new RangeError(`piece index ${index} out of range 0..${this.size - 1}`);
    }
  }
}

function popcount(byte: number): number {
  let n = 0;
  for (let b = byte; b; b &= b - 1) n++;
  return n;
}
