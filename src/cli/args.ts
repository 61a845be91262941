import { parseArgs, type ParseArgsConfig } from "node:util";
import { parseSize } from "../engine/size.js";

/** A mistake in how a command was called: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A command that could not do its job for a reason the user can act on: one line, exit code 1. */
export class CommandError extends Error {
  override name = "CommandError";
}

type OptionSpecs = NonNullable<ParseArgsConfig["options"]>;

/**
 * Runs node:util's parseArgs for `smallthinker <command>`, after letting option values that start
 * with a dash through where they cannot be mistaken for options (`-n -1`, `-p -`), and turns its
 * errors into UsageErrors in our own words with a pointer to the command's --help.
 */
export function parseCommand<T extends ParseArgsConfig>(command: string, config: T): ReturnType<typeof parseArgs<T>>;
/** The same for a parseArgs call made by the caller (its dash values are not let through). */
export function parseCommand<R>(command: string, parse: () => R): R;
export function parseCommand(command: string, config: ParseArgsConfig | (() => unknown)): unknown {
  try {
    if (typeof config === "function") return config();
    return parseArgs({ ...config, args: joinDashValues(config.args ?? [], config.options ?? {}) });
  } catch (error) {
    throw new UsageError(`smallthinker ${command}: ${describeParseError(error)}\n${helpHint(command)}`);
  }
}

export function helpHint(command: string): string {
  return `Run "smallthinker ${command} --help" to see its options.`;
}

/** A value parseArgs would call ambiguous but that no option is spelled like: a negative number or "-" (standard input). */
const DASH_VALUE = /^(-|-\d+(\.\d+)?|-\.\d+)$/;

function joinDashValues(args: readonly string[], options: OptionSpecs): string[] {
  const byShort = new Map(Object.entries(options).flatMap(([name, spec]) => (spec.short ? [[spec.short, name] as const] : [])));
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    const name = arg.startsWith("--") ? arg.slice(2) : /^-[^-]$/.test(arg) ? byShort.get(arg[1]!) : undefined;
    const next = args[i + 1];
    if (name !== undefined && !name.includes("=") && options[name]?.type === "string" && next !== undefined && DASH_VALUE.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** node:util's messages quote unevenly and suggest quoting tricks; these say what was wrong. */
function describeParseError(error: unknown): string {
  const { code, message } = error as { code?: string; message: string };
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? "";
  // the long name, wherever node:util's message has it ("Option '-p' argument is ambiguous … '--prompt=-XYZ'")
  const option = /--[\w-]+/.exec(message)?.[0] ?? quoted;
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${quoted}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument "${quoted}"`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/does not take an argument/.test(message)) return `${option} takes no value`;
      if (/ambiguous/.test(message)) return `${option} needs a value (one that starts with "-" is written ${option}=VALUE)`;
      return `${option} needs a value`;
    default:
      return message;
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
  if (text.trim() === "" || !Number.isInteger(value) || value < min || value > max) {
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
