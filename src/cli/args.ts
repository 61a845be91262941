import { parseSize } from "../engine/size.js";

/** A mistake in how a command was called: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Runs a node:util parseArgs call, turning its errors into UsageErrors naming the command. */
export function parseCommand<T>(command: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError(`smallthinker ${command}: ${(error as Error).message}`);
  }
}

/** "1GiB", "512M", "1.5g", "800000000" → bytes; a usage error otherwise. */
export function parseSizeOption(text: string, what: string): number {
  try {
    return parseSize(text);
  } catch (error) {
    throw new UsageError(`${what}: ${(error as Error).message}`);
  }
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function parseInteger(text: string | undefined, what: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`${what}: expected a whole number from ${min} to ${max}, got "${text}"`);
  }
  return value;
}

export function parseNumber(text: string | undefined, what: string, min = -Infinity, max = Infinity): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value < min || value > max) {
    throw new UsageError(`${what}: expected a number from ${min} to ${max}, got "${text}"`);
  }
  return value;
}
