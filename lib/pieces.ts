/**
 * @module pieces
 * Piece layout: where each piece lies in the share and how it splits into request blocks; for a
 * directory share, where each file lies and which files each piece touches.
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

/** A file (or empty folder) of a share, placed in the share's byte sequence. */
export interface LaidOutFile {
  /** Position in the share's file list. */
  index: number;
  /** Names from the share's top folder down. */
  path: readonly string[];
  length: number;
  /** Byte offset of the file's first byte in the share. */
  offset: number;
  /** True for an empty folder. */
  dir: boolean;
}

/** The part of a byte range of the share that lies in one file. */
export interface FileSpan {
  /** Index of the file in {@linkcode FileLayout.files}. */
  file: number;
  /** Offset inside that file. */
  fileOffset: number;
  length: number;
  /** Offset of this part inside the range asked for. */
  rangeOffset: number;
}

/**
 * Where each file of a share lies in its byte sequence (the files laid end to end in list
 * order), and so which files each piece touches. Empty files and folders take no bytes and
 * belong to no piece.
 */
export class FileLayout {
  readonly files: readonly LaidOutFile[];
  readonly pieces: PieceLayout;
  /** Indexes of the files holding bytes, in order (their offsets ascend strictly). */
  #withBytes: number[] = [];

  /**
   * @param entries the share's files in order (`length`, and `dir` for empty folders)
   * @param pieceLength the share's piece length
   * @throws {RangeError} for a negative or fractional length, or a folder with bytes
   */
  constructor(
    entries: readonly { path: readonly string[]; length: number; dir?: boolean }[],
    pieceLength: number,
  ) {
    let offset = 0;
    this.files = entries.map((entry, index) => {
      if (!Number.isSafeInteger(entry.length) || entry.length < 0) {
        throw new RangeError(`invalid file length ${entry.length}`);
      }
      if (entry.dir && entry.length !== 0) throw new RangeError("a folder has no bytes");
      const file: LaidOutFile = {
        index,
        path: entry.path,
        length: entry.length,
        offset,
        dir: entry.dir === true,
      };
      if (entry.length > 0) this.#withBytes.push(index);
      offset += entry.length;
      return file;
    });
    this.pieces = new PieceLayout(offset, pieceLength);
  }

  /** Total bytes of the share. */
  get totalLength(): number {
    return this.pieces.totalLength;
  }

  /**
   * Splits the byte range `[offset, offset + length)` of the share into the parts that lie in
   * each file, in order.
   *
   * @throws {RangeError} when the range does not lie inside the share
   */
  spans(offset: number, length: number): FileSpan[] {
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 ||
      length < 0 || offset + length > this.totalLength
    ) {
      throw new RangeError(`range ${offset}+${length} outside a share of ${this.totalLength}`);
    }
    const out: FileSpan[] = [];
    if (length === 0) return out;
    // Binary search: the last file holding bytes that starts at or before `offset`.
    let lo = 0;
    let hi = this.#withBytes.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.files[this.#withBytes[mid]].offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    const end = offset + length;
    for (let k = lo; k < this.#withBytes.length; k++) {
      const file = this.files[this.#withBytes[k]];
      if (file.offset >= end) break;
      const from = Math.max(offset, file.offset);
      const to = Math.min(end, file.offset + file.length);
      if (to > from) {
        out.push({
          file: file.index,
          fileOffset: from - file.offset,
          length: to - from,
          rangeOffset: from - offset,
        });
      }
    }
    return out;
  }

  /** The parts of piece `index` in each file it touches. */
  pieceSpans(index: number): FileSpan[] {
    const span = this.pieces.span(index);
    return this.spans(span.offset, span.length);
  }

  /** First and last piece touching file `file`, or `undefined` for an empty file or folder. */
  piecesOfFile(file: number): { first: number; last: number } | undefined {
    const entry = this.files[file];
    if (!entry) throw new RangeError(`file index ${file} out of range`);
    if (entry.length === 0) return undefined;
    const size = this.pieces.pieceLength;
    return {
      first: Math.floor(entry.offset / size),
      last: Math.floor((entry.offset + entry.length - 1) / size),
    };
  }

  /** Every piece touching any of `files`, ascending, each once. */
  piecesOfFiles(files: Iterable<number>): number[] {
    const set = new Set<number>();
    for (const file of files) {
      const range = this.piecesOfFile(file);
      if (!range) continue;
      for (let i = range.first; i <= range.last; i++) set.add(i);
    }
    return [...set].sort((a, b) => a - b);
  }
}
