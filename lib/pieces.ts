/**
 * @module pieces
 * Piece layout: where each piece lies in the share and how it splits into request blocks.
 * Pure: no I/O.
 */

/** Where piece `index` lies in the share. */
export interface PieceSpan {
  index: number;
  /** Byte offset in the share. */
  offset: number;
  /** Length in bytes (the last piece may be shorter). */
  length: number;
}

/** One request: a byte range inside a piece. */
export interface BlockSpan {
  index: number;
  begin: number;
  length: number;
}

/** The piece geometry of a share. */
export class PieceLayout {
  readonly totalLength: number;
  readonly pieceLength: number;
  readonly pieceCount: number;

  constructor(totalLength: number, pieceLength: number) {
    this.totalLength = totalLength;
    this.pieceLength = pieceLength;
    this.pieceCount = Math.ceil(totalLength / pieceLength);
  }

  /** Length of piece `index`. */
  pieceSize(index: number): number {
    if (!(index >= 0 && index < this.pieceCount)) {
      throw new RangeError(`piece index ${index} out of range`);
    }
    if (index === this.pieceCount - 1) return this.totalLength - index * this.pieceLength;
    return this.pieceLength;
  }

  /** Offset and length of piece `index`. */
  span(index: number): PieceSpan {
    return { index, offset: index * this.pieceLength, length: this.pieceSize(index) };
  }

  /** True when a request for `length` bytes at `begin` lies inside piece `index`. */
  validBlock(index: number, begin: number, length: number): boolean {
    return Number.isInteger(index) && index >= 0 && index < this.pieceCount && begin >= 0 &&
      length > 0 && begin + length <= this.pieceSize(index);
  }

  /** Splits piece `index` into request blocks of at most `blockBytes`. */
  blocks(index: number, blockBytes: number): BlockSpan[] {
    if (!(blockBytes >= 1)) throw new RangeError(`invalid block size ${blockBytes}`);
    const size = this.pieceSize(index);
    const out: BlockSpan[] = [];
    for (let begin = 0; begin < size; begin += blockBytes) {
      out.push({ index, begin, length: Math.min(blockBytes, size - begin) });
    }
    return out;
  }
}
