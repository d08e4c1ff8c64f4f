/**
 * @module glob
 * A small glob matcher for `download --only`, and the choice of a share's files it makes.
 * Pure: no I/O.
 *
 * Patterns are matched against a file's path relative to the share's top folder, with `/`
 * between names (`photos/2024/a.jpg`; for a single-file share, the file's name):
 *
 * - `*` matches any run of characters within one name (never a `/`), including none;
 * - `?` matches exactly one character (not `/`);
 * - `**` as a whole name matches any number of folders, including none (`**` alone: anything);
 *   elsewhere it acts as `*`;
 * - every other character matches itself; matching is case-sensitive and both sides are
 *   compared in Unicode NFC form, so a name typed on one OS matches it as stored by another;
 * - the whole path must match: `*.jpg` matches only at the top, `**\/*.jpg` at any depth;
 *   empty names and `.` are ignored, so `a//b/`, `/a/b` and `./a/b` all mean `a/b`;
 * - a pattern that matches a folder selects everything in it (`photos` = `photos/**`).
 */

/** A compiled pattern: a list of names, `**` kept as a marker. */
export interface Glob {
  /** The pattern as given. */
  source: string;
  /** Names of the pattern, each as code points; `undefined` stands for `**`. */
  names: (string[] | undefined)[];
}

/**
 * Compiles a pattern.
 *
 * @param pattern the pattern, e.g. `photos/**\/*.jpg`
 * @returns the compiled form
 * @throws {RangeError} when the pattern is empty
 * @example
 * ```ts
 * matchGlob(compileGlob("docs/*.md"), ["docs", "a.md"]); // true
 * ```
 */
export function compileGlob(pattern: string): Glob {
  const names = pattern.normalize("NFC").split("/").filter((n) => n !== "" && n !== ".");
  if (names.length === 0) throw new RangeError(`empty pattern "${pattern}"`);
  return {
    source: pattern,
    names: names.map((n) => (n === "**" ? undefined : Array.from(n))),
  };
}

/**
 * True when `glob` matches the whole of `path` (names from the share's top folder).
 *
 * @param glob a compiled pattern
 * @param path the path's names
 */
export function matchGlob(glob: Glob, path: readonly string[]): boolean {
  const names = path.map((n) => Array.from(n.normalize("NFC")));
  const pattern = glob.names;
  // memo[p * (names.length + 1) + s]: pattern from p matches names from s (1 yes, 2 no).
  const memo = new Uint8Array((pattern.length + 1) * (names.length + 1));
  const match = (p: number, s: number): boolean => {
    const key = p * (names.length + 1) + s;
    if (memo[key] !== 0) return memo[key] === 1;
    let result: boolean;
    if (p === pattern.length) result = s === names.length;
    else {
      const name = pattern[p];
      if (name === undefined) {
        // `**`: consume no name, or one and stay on `**`.
        result = match(p + 1, s) || (s < names.length && match(p, s + 1));
      } else {
        result = s < names.length && matchName(name, names[s]) && match(p + 1, s + 1);
      }
    }
    memo[key] = result ? 1 : 2;
    return result;
  };
  return match(0, 0);
}

/**
 * True when `glob` matches `path` or one of the folders it lies in: a pattern naming a folder
 * selects everything inside.
 */
export function matchGlobOrParent(glob: Glob, path: readonly string[]): boolean {
  for (let depth = 1; depth <= path.length; depth++) {
    if (matchGlob(glob, path.slice(0, depth))) return true;
  }
  return false;
}

/** Which entries a set of patterns selects. */
export interface Selection {
  /** Indexes of the selected entries, ascending. */
  files: number[];
  /** Patterns that matched nothing (usually a typing mistake worth reporting). */
  unmatched: string[];
}

/**
 * Selects the entries whose path (or a folder holding it) matches any of `patterns`.
 *
 * @param paths each entry's names, in the share's order
 * @param patterns glob patterns (see the module documentation)
 * @returns the selected indexes and the patterns that matched nothing
 * @throws {RangeError} for an empty pattern
 */
export function selectFiles(paths: readonly (readonly string[])[], patterns: string[]): Selection {
  const globs = patterns.map(compileGlob);
  const used = new Set<number>();
  const files: number[] = [];
  paths.forEach((path, index) => {
    let selected = false;
    globs.forEach((glob, g) => {
      if (matchGlobOrParent(glob, path)) {
        selected = true;
        used.add(g);
      }
    });
    if (selected) files.push(index);
  });
  return { files, unmatched: patterns.filter((_, g) => !used.has(g)) };
}

/** Matches one name (code points) against one pattern name with `*` and `?`. */
function matchName(pattern: string[], name: string[]): boolean {
  let p = 0;
  let n = 0;
  let star = -1; // position in the pattern just after the last `*`
  let resume = 0; // position in the name that `*` would take up to next
  while (n < name.length) {
    if (p < pattern.length && (pattern[p] === "?" || pattern[p] === name[n])) {
      p++;
      n++;
    } else if (p < pattern.length && pattern[p] === "*") {
      star = ++p;
      resume = n;
    } else if (star >= 0) {
      p = star; // let the last `*` take one more character
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}
