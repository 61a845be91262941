import { GgufError } from "./errors.js";
import { GgufValue, GgufValueType } from "./types.js";

const INTEGER_TYPES = new Set([
  GgufValueType.UINT8,
  GgufValueType.INT8,
  GgufValueType.UINT16,
  GgufValueType.INT16,
  GgufValueType.UINT32,
  GgufValueType.INT32,
  GgufValueType.UINT64,
  GgufValueType.INT64,
]);
const FLOAT_TYPES = new Set([GgufValueType.FLOAT32, GgufValueType.FLOAT64]);

/** "UINT32", "array of STRING", ...: for messages. */
export function describeValueType(value: GgufValue): string {
  return value.type === GgufValueType.ARRAY
    ? `array of ${GgufValueType[value.itemType]}`
    : GgufValueType[value.type];
}

/** Typed access to GGUF metadata; every mismatch names the file, the key, and what was expected. */
export class GgufMetadata {
  constructor(
    readonly path: string,
    readonly entries: ReadonlyMap<string, GgufValue>,
  ) {}

  has(key: string): boolean {
    return this.entries.has(key);
  }

  get(key: string): GgufValue | undefined {
    return this.entries.get(key);
  }

  private require(key: string, expected: string): GgufValue {
    const value = this.entries.get(key);
    if (!value) throw new GgufError(this.path, key, `missing metadata key (expected ${expected})`);
    return value;
  }

  private fail(key: string, value: GgufValue, expected: string): never {
    throw new GgufError(this.path, key, `expected ${expected}, got ${describeValueType(value)}`);
  }

  getString(key: string): string {
    const value = this.require(key, "a string");
    if (value.type !== GgufValueType.STRING) this.fail(key, value, "a string");
    return value.value as string;
  }

  optionalString(key: string): string | undefined {
    return this.has(key) ? this.getString(key) : undefined;
  }

  /** An integer of any width, as a safe JS number. */
  getInteger(key: string): number {
    const value = this.require(key, "an integer");
    if (!INTEGER_TYPES.has(value.type)) this.fail(key, value, "an integer");
    return this.safeNumber(key, value.value as number | bigint);
  }

  /** 64-bit integers as JS numbers, refused rather than rounded beyond 2^53. */
  private safeNumber(field: string, n: number | bigint): number {
    if (typeof n !== "bigint") return n;
    if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new GgufError(this.path, field, `integer ${n} is out of range`);
    }
    return Number(n);
  }

  optionalInteger(key: string): number | undefined {
    return this.has(key) ? this.getInteger(key) : undefined;
  }

  /** A float or an integer, as a JS number. */
  getNumber(key: string): number {
    const value = this.require(key, "a number");
    if (FLOAT_TYPES.has(value.type)) return value.value as number;
    if (!INTEGER_TYPES.has(value.type)) this.fail(key, value, "a number");
    return this.getInteger(key);
  }

  optionalNumber(key: string): number | undefined {
    return this.has(key) ? this.getNumber(key) : undefined;
  }

  getBool(key: string): boolean {
    const value = this.require(key, "a bool");
    if (value.type !== GgufValueType.BOOL) this.fail(key, value, "a bool");
    return value.value as boolean;
  }

  optionalBool(key: string): boolean | undefined {
    return this.has(key) ? this.getBool(key) : undefined;
  }

  getStringArray(key: string): string[] {
    const value = this.require(key, "an array of strings");
    if (value.type !== GgufValueType.ARRAY || value.itemType !== GgufValueType.STRING) {
      this.fail(key, value, "an array of strings");
    }
    return value.value as string[];
  }

  /** An array of integers or floats, as JS numbers. */
  getNumberArray(key: string): number[] {
    const value = this.require(key, "an array of numbers");
    if (
      value.type !== GgufValueType.ARRAY ||
      !(INTEGER_TYPES.has(value.itemType) || FLOAT_TYPES.has(value.itemType))
    ) {
      this.fail(key, value, "an array of numbers");
    }
    return (value.value as (number | bigint)[]).map((n, i) => this.safeNumber(`${key}[${i}]`, n));
  }

  /** An integer, or an array of integers (such as eos_token_id in some files). */
  getIntegerOrArray(key: string): number[] {
    const value = this.require(key, "an integer or an array of integers");
    if (value.type !== GgufValueType.ARRAY) return [this.getInteger(key)];
    if (!INTEGER_TYPES.has(value.itemType)) this.fail(key, value, "an integer or an array of integers");
    return this.getNumberArray(key);
  }

  keys(): IterableIterator<string> {
    return this.entries.keys();
  }
}
