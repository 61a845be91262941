import { ApiError, invalidRequest } from "./errors.js";

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export interface NumberRange {
  min?: number;
  max?: number;
  /** The minimum itself is not allowed (top_p must be above 0). */
  aboveMin?: boolean;
}

export function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `a ${typeof value}`;
}

/** Cut short, so that a huge value quoted in an error cannot make a huge response. */
export function shorten(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Objects and arrays are named by kind only: stringifying a deeply nested one would overflow the stack. */
export function quote(value: unknown): string {
  return typeof value === "object" && value !== null ? kindOf(value) : shorten(JSON.stringify(value) ?? String(value));
}

export function invalidType(param: string, expected: string, value: unknown): ApiError {
  return invalidRequest(`Invalid type for '${param}': expected ${expected}, but got ${kindOf(value)} instead.`, param, "invalid_type");
}

export function invalidValue(param: string, expected: string, value: unknown): ApiError {
  return invalidRequest(`Invalid value for '${param}': expected ${expected}, but got ${quote(value)} instead.`, param, "invalid_value");
}

export function unsupported(param: string, message: string): ApiError {
  return invalidRequest(`Unsupported value for '${param}': ${message}`, param, "unsupported_value");
}

export type FieldKind = "string" | "boolean" | "number" | "integer" | "object" | "array" | "string or array";

const KIND_NAMES: Readonly<Record<FieldKind, string>> = {
  string: "a string",
  boolean: "a boolean",
  number: "a number",
  integer: "an integer",
  object: "an object",
  array: "an array",
  "string or array": "a string or an array",
};

function isOfKind(value: unknown, kind: FieldKind): boolean {
  switch (kind) {
    case "integer":
      return Number.isSafeInteger(value);
    case "object":
      return isObject(value);
    case "array":
      return Array.isArray(value);
    case "string or array":
      return typeof value === "string" || Array.isArray(value);
    default:
      return typeof value === kind;
  }
}

function describeRange({ min, max, aboveMin }: NumberRange): string {
  if (min !== undefined && max !== undefined) return aboveMin ? `above ${min} and at most ${max}` : `from ${min} to ${max}`;
  if (min !== undefined) return aboveMin ? `above ${min}` : `at least ${min}`;
  return max !== undefined ? `at most ${max}` : "";
}

function inRange(value: number, { min, max, aboveMin }: NumberRange): boolean {
  if (min !== undefined && (aboveMin ? value <= min : value < min)) return false;
  return max === undefined || value <= max;
}

/**
 * Reads the fields of one JSON object with OpenAI-style errors that name the parameter, and
 * remembers what was read so that anything else can be refused as an unrecognized argument.
 * A null field counts as absent, as in OpenAI's API.
 */
export class FieldReader {
  private readonly read = new Set<string>();

  constructor(
    private readonly object: Record<string, unknown>,
    private readonly path = "",
  ) {}

  param(name: string): string {
    return this.path ? `${this.path}.${name}` : name;
  }

  optional(name: string): unknown {
    this.read.add(name);
    const value = Object.hasOwn(this.object, name) ? this.object[name] : undefined;
    return value === null ? undefined : value;
  }

  required(name: string): unknown {
    const value = this.optional(name);
    if (value === undefined) {
      throw invalidRequest(`Missing required parameter: '${this.param(name)}'.`, this.param(name), "missing_required_parameter");
    }
    return value;
  }

  requiredString(name: string): string {
    const value = this.required(name);
    if (typeof value !== "string") throw invalidType(this.param(name), "a string", value);
    return value;
  }

  boolean(name: string): boolean | undefined {
    const value = this.optional(name);
    if (value !== undefined && typeof value !== "boolean") throw invalidType(this.param(name), "a boolean", value);
    return value;
  }

  number(name: string, range: NumberRange): number | undefined {
    const value = this.optional(name);
    if (value === undefined) return undefined;
    if (typeof value !== "number") throw invalidType(this.param(name), "a number", value);
    if (!inRange(value, range)) throw invalidValue(this.param(name), `a number ${describeRange(range)}`, value);
    return value;
  }

  integer(name: string, range: NumberRange): number | undefined {
    const value = this.optional(name);
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isInteger(value)) throw invalidType(this.param(name), "an integer", value);
    if (!Number.isSafeInteger(value) || !inRange(value, range)) {
      throw invalidValue(this.param(name), `an integer ${describeRange(range)}`, value);
    }
    return value;
  }

  /** Fields the server accepts and deliberately does nothing with. */
  ignore(...names: string[]): void {
    for (const name of names) this.read.add(name);
  }

  /** A field that is accepted and not used, still refused when it is not of its documented kind. */
  ignoreOfKind(name: string, kind: FieldKind): void {
    const value = this.optional(name);
    if (value !== undefined && !isOfKind(value, kind)) throw invalidType(this.param(name), KIND_NAMES[kind], value);
  }

  objectField(name: string): Record<string, unknown> | undefined {
    const value = this.optional(name);
    if (value !== undefined && !isObject(value)) throw invalidType(this.param(name), "an object", value);
    return value;
  }

  /**
   * Fields the server can honour only at their default: any other value is refused rather than
   * silently ignored, since the client would get something other than what it asked for.
   */
  onlyDefault(name: string, isDefault: (value: unknown) => boolean, reason: string): void {
    const value = this.optional(name);
    if (value !== undefined && !isDefault(value)) throw unsupported(this.param(name), reason);
  }

  /** Refuses fields nobody read, so that a misspelt parameter is not silently dropped. */
  rejectUnread(): void {
    for (const [name, value] of Object.entries(this.object)) {
      if (!this.read.has(name) && value !== null) {
        const param = shorten(this.param(name));
        throw invalidRequest(`Unrecognized request argument supplied: ${param}`, param, "unknown_parameter");
      }
    }
  }
}
