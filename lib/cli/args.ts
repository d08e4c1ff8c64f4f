/**
 * @module cli/args
 * Command-line parsing on top of `node:util` `parseArgs` (standing in for `@std/cli`), turning
 * every mistake into a {@linkcode UsageError} (exit code 2) with one clear line.
 */

import { parseArgs } from "node:util";
import { UsageError } from "../errors.ts";
import { parseDuration, parseSize } from "../units.ts";

/** Option specification, as `node:util` `parseArgs` takes it. */
export type OptionSpec = Record<
  string,
  { type: "string" | "boolean"; short?: string; multiple?: boolean; default?: string | boolean }
>;

/** Options every command accepts. */
export const COMMON_OPTIONS: OptionSpec = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
};

/** Parsed command line: option values by name, and positionals. */
export interface ParsedArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/**
 * Parses `argv` against `spec` plus the common options.
 *
 * @throws {UsageError} on an unknown option or a missing value
 */
export function parseCommandArgs(argv: string[], spec: OptionSpec, command: string): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...COMMON_OPTIONS, ...spec },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as ParsedArgs["values"], positionals };
  } catch (err) {
    const message = (err as Error).message.replace(/\. To specify.*$/s, "");
    throw new UsageError(`${command}: ${message} (see '${command} --help')`, { cause: err });
  }
}

/** A string option's value, or `undefined`. */
export function optString(args: ParsedArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === "string" ? value : undefined;
}

/** A string option's value, or a usage error naming it. */
export function requireString(args: ParsedArgs, name: string, command: string): string {
  const value = optString(args, name);
  if (value === undefined || value === "") {
    throw new UsageError(`${command}: --${name} is required (see '${command} --help')`);
  }
  return value;
}

/** All values of a repeatable string option. */
export function optStrings(args: ParsedArgs, name: string): string[] {
  const value = args.values[name];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string");
  return typeof value === "string" ? [value] : [];
}

/** A boolean option's value. */
export function optFlag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}

/**
 * An integer option within bounds, or its default.
 *
 * @throws {UsageError} when it is not an integer in `[min, max]`
 */
export function optInteger(
  args: ParsedArgs,
  name: string,
  bounds: { min: number; max: number; fallback: number },
): number {
  const text = optString(args, name);
  if (text === undefined) return bounds.fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < bounds.min || value > bounds.max) {
    throw new UsageError(
      `--${name} must be an integer from ${bounds.min} to ${bounds.max}, got "${text}"`,
    );
  }
  return value;
}

/** A port option (0 = let the OS pick). */
export function optPort(args: ParsedArgs, name: string, fallback: number): number {
  return optInteger(args, name, { min: 0, max: 65535, fallback });
}

/**
 * A size option (`256K`, `4M`), or `undefined`.
 *
 * @throws {UsageError} when it is not a size
 */
export function optSize(args: ParsedArgs, name: string): number | undefined {
  const text = optString(args, name);
  if (text === undefined) return undefined;
  try {
    return parseSize(text);
  } catch (err) {
    throw new UsageError(`--${name}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * A duration option (`90s`, `10m`) in milliseconds, or `undefined`.
 *
 * @throws {UsageError} when it is not a duration
 */
export function optDuration(args: ParsedArgs, name: string): number | undefined {
  const text = optString(args, name);
  if (text === undefined) return undefined;
  try {
    return parseDuration(text);
  } catch (err) {
    throw new UsageError(`--${name}: ${(err as Error).message}`, { cause: err });
  }
}

/** Rejects positionals a command does not take. */
export function expectPositionals(args: ParsedArgs, count: number, command: string): void {
  if (args.positionals.length > count) {
    throw new UsageError(
      `${command}: unexpected argument "${args.positionals[count]}" (see '${command} --help')`,
    );
  }
}
