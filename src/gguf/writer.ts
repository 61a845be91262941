import { closeSync, openSync, renameSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { GgufError } from "./errors.js";
import { SPLIT_KEYS, splitSuffix } from "./split.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GgmlType,
  GgufArrayValue,
  GgufValue,
  GgufValueType,
  ggmlBlockSize,
  ggmlRowBytes,
  ggmlTypeName,
  isKnownGgmlType,
} from "./types.js";

/** A tensor to write: its data comes from `produce`, which hands over the bytes in any number of chunks. */
export interface GgufTensorSpec {
  name: string;
  /** ggml order: dims[0] is the contiguous dimension. */
  dims: number[];
  type: GgmlType;
  produce(emit: (chunk: Uint8Array) => void): void;
}

export interface GgufWriteSpec {
  version?: 2 | 3;
  /**
   * Defaults to general.alignment from the metadata, else 32. Any other alignment must also be
   * in the metadata as general.alignment (u32), since that is where readers look for it.
   */
  alignment?: number;
  metadata: ReadonlyArray<readonly [string, GgufValue]> | ReadonlyMap<string, GgufValue>;
  tensors: readonly GgufTensorSpec[];
}

/** Convenience constructors for metadata values. */
export const gv = {
  u8: (value: number): GgufValue => ({ type: GgufValueType.UINT8, value }),
  i8: (value: number): GgufValue => ({ type: GgufValueType.INT8, value }),
  u16: (value: number): GgufValue => ({ type: GgufValueType.UINT16, value }),
  i16: (value: number): GgufValue => ({ type: GgufValueType.INT16, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  u64: (value: bigint): GgufValue => ({ type: GgufValueType.UINT64, value }),
  i64: (value: bigint): GgufValue => ({ type: GgufValueType.INT64, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  f64: (value: number): GgufValue => ({ type: GgufValueType.FLOAT64, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  strings: (value: string[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value }),
  i32s: (value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value }),
  u32s: (value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.UINT32, value }),
  f32s: (value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, value }),
  /** An array of any element type; arrays of arrays hold GgufValues of type ARRAY. */
  array: (itemType: GgufValueType, value: GgufArrayValue): GgufValue => ({
    type: GgufValueType.ARRAY,
    itemType,
    value,
  }),
};

/** Grows a byte buffer for the header. */
class ByteSink {
  private buffer = new Uint8Array(1 << 16);
  private view = new DataView(this.buffer.buffer);
  length = 0;
  private readonly encoder = new TextEncoder();

  private reserve(bytes: number): number {
    if (this.length + bytes > this.buffer.length) {
      const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + bytes));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
      this.view = new DataView(grown.buffer);
    }
    const at = this.length;
    this.length += bytes;
    return at;
  }
  // Each writer reserves before it touches this.view: reserve may replace the buffer and view.
  u8(v: number) { const at = this.reserve(1); this.view.setUint8(at, v); }
  i8(v: number) { const at = this.reserve(1); this.view.setInt8(at, v); }
  u16(v: number) { const at = this.reserve(2); this.view.setUint16(at, v, true); }
  i16(v: number) { const at = this.reserve(2); this.view.setInt16(at, v, true); }
  u32(v: number) { const at = this.reserve(4); this.view.setUint32(at, v, true); }
  i32(v: number) { const at = this.reserve(4); this.view.setInt32(at, v, true); }
  f32(v: number) { const at = this.reserve(4); this.view.setFloat32(at, v, true); }
  f64(v: number) { const at = this.reserve(8); this.view.setFloat64(at, v, true); }
  u64(v: bigint | number) { const at = this.reserve(8); this.view.setBigUint64(at, BigInt(v), true); }
  i64(v: bigint | number) { const at = this.reserve(8); this.view.setBigInt64(at, BigInt(v), true); }
  string(s: string) {
    const bytes = this.encoder.encode(s);
    this.u64(bytes.length);
    const at = this.reserve(bytes.length);
    this.buffer.set(bytes, at);
  }
  zeros(n: number) { this.reserve(n); }
  bytes(): Uint8Array { return this.buffer.subarray(0, this.length); }
}

const NUMBER_RANGES: Partial<Record<GgufValueType, readonly [number, number]>> = {
  [GgufValueType.UINT8]: [0, 0xff],
  [GgufValueType.INT8]: [-0x80, 0x7f],
  [GgufValueType.UINT16]: [0, 0xffff],
  [GgufValueType.INT16]: [-0x8000, 0x7fff],
  [GgufValueType.UINT32]: [0, 0xffffffff],
  [GgufValueType.INT32]: [-0x80000000, 0x7fffffff],
};
const BIGINT_RANGES: Partial<Record<GgufValueType, readonly [bigint, bigint]>> = {
  [GgufValueType.UINT64]: [0n, 2n ** 64n - 1n],
  [GgufValueType.INT64]: [-(2n ** 63n), 2n ** 63n - 1n],
};

/** In a `u` regex a surrogate pair is one code point, so only unpaired surrogates match. */
const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * Encodes a header, refusing anything a DataView or TextEncoder would silently change (an
 * out-of-range integer wraps, a lone surrogate becomes U+FFFD) and anything a reader rejects.
 */
class HeaderEncoder {
  readonly sink = new ByteSink();

  constructor(private readonly path: string) {}

  fail(field: string, problem: string): never {
    throw new GgufError(this.path, field, problem);
  }

  string(field: string, s: unknown): void {
    if (typeof s !== "string") this.fail(field, `expected a string, got ${typeof s}`);
    if (LONE_SURROGATE.test(s)) this.fail(field, "string has a lone surrogate, which UTF-8 cannot encode");
    this.sink.string(s);
  }

  private scalar(field: string, type: GgufValueType, v: unknown): void {
    const numberRange = NUMBER_RANGES[type];
    if (numberRange) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < numberRange[0] || v > numberRange[1]) {
        this.fail(field, `${String(v)} is not representable as ${GgufValueType[type]}`);
      }
    }
    const bigintRange = BIGINT_RANGES[type];
    if (bigintRange) {
      const ok = typeof v === "bigint" || (typeof v === "number" && Number.isSafeInteger(v));
      if (!ok || BigInt(v) < bigintRange[0] || BigInt(v) > bigintRange[1]) {
        this.fail(field, `${String(v)} is not representable as ${GgufValueType[type]}`);
      }
    }
    switch (type) {
      case GgufValueType.UINT8: return this.sink.u8(v as number);
      case GgufValueType.INT8: return this.sink.i8(v as number);
      case GgufValueType.UINT16: return this.sink.u16(v as number);
      case GgufValueType.INT16: return this.sink.i16(v as number);
      case GgufValueType.UINT32: return this.sink.u32(v as number);
      case GgufValueType.INT32: return this.sink.i32(v as number);
      case GgufValueType.UINT64: return this.sink.u64(v as bigint | number);
      case GgufValueType.INT64: return this.sink.i64(v as bigint | number);
      case GgufValueType.FLOAT32:
      case GgufValueType.FLOAT64:
        if (typeof v !== "number") this.fail(field, `expected a number, got ${typeof v}`);
        return type === GgufValueType.FLOAT32 ? this.sink.f32(v) : this.sink.f64(v);
      case GgufValueType.BOOL:
        if (typeof v !== "boolean") this.fail(field, `expected a boolean, got ${typeof v}`);
        return this.sink.u8(v ? 1 : 0);
      case GgufValueType.STRING:
        return this.string(field, v);
      default:
        this.fail(field, `unknown value type ${String(type)}`);
    }
  }

  /** A value without its type tag: the tag is written by the caller (key/value pair or array). */
  value(field: string, value: GgufValue): void {
    if (value.type !== GgufValueType.ARRAY) return this.scalar(field, value.type, value.value);
    const itemType = value.itemType;
    const items: readonly unknown[] = value.value;
    if (!Array.isArray(items)) this.fail(field, "array value is not an array");
    if (GgufValueType[itemType] === undefined) this.fail(field, `unknown array element type ${String(itemType)}`);
    this.sink.u32(itemType);
    this.sink.u64(items.length);
    for (let i = 0; i < items.length; i++) {
      const itemField = `${field}[${i}]`;
      if (itemType !== GgufValueType.ARRAY) {
        this.scalar(itemField, itemType, items[i]);
        continue;
      }
      const nested = items[i] as GgufValue | undefined;
      if (nested?.type !== GgufValueType.ARRAY) this.fail(itemField, "an array of arrays must hold array values");
      this.value(itemField, nested);
    }
  }
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

function resolveAlignment(path: string, spec: Pick<GgufWriteSpec, "alignment">, metadata: ReadonlyMap<string, GgufValue>): number {
  const recorded = metadata.get("general.alignment");
  if (recorded && recorded.type !== GgufValueType.UINT32) {
    throw new GgufError(path, "general.alignment", "must be a UINT32");
  }
  const alignment = spec.alignment ?? (recorded?.value as number | undefined) ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment > 2 ** 31 || (alignment & (alignment - 1)) !== 0) {
    throw new GgufError(path, "general.alignment", `expected a power of two, got ${alignment}`);
  }
  const readersWillUse = (recorded?.value as number | undefined) ?? GGUF_DEFAULT_ALIGNMENT;
  if (alignment !== readersWillUse) {
    throw new GgufError(
      path,
      "general.alignment",
      `alignment ${alignment} must be recorded in the metadata, which says ${recorded ? readersWillUse : "nothing (default 32)"}`,
    );
  }
  return alignment;
}

function tensorBytes(path: string, t: GgufTensorShape): number {
  const field = `tensor ${t.name}`;
  if (!isKnownGgmlType(t.type)) throw new GgufError(path, `${field}.type`, `unknown tensor type ${t.type}`);
  if (t.dims.length < 1 || t.dims.length > 4) {
    throw new GgufError(path, `${field}.n_dims`, `expected 1..4 dimensions, got ${t.dims.length}`);
  }
  if (!t.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new GgufError(path, `${field}.dims`, `${t.dims.join(" x ")} are not all non-negative integers`);
  }
  if (t.dims[0]! % ggmlBlockSize(t.type) !== 0) {
    throw new GgufError(path, `${field}.dims[0]`, `${t.dims[0]} is not a multiple of the ${ggmlTypeName(t.type)} block size`);
  }
  return ggmlRowBytes(t.type, t.dims[0]!) * t.dims.slice(1).reduce((a, b) => a * b, 1);
}

export type GgufTensorShape = Omit<GgufTensorSpec, "produce">;

/** Where everything of a GGUF file goes: the header bytes (padded), then each tensor's data. */
export interface GgufLayout {
  header: Uint8Array;
  alignment: number;
  /** Relative to the end of the header, as in the file; each is padded to the alignment. */
  tensors: { relativeOffset: number; byteLength: number }[];
  fileSize: number;
}

/**
 * Encodes the header of a GGUF file and places its tensors, as `writeGguf` writes them. `path`
 * only names the file in errors.
 */
export function layoutGguf(path: string, spec: Omit<GgufWriteSpec, "tensors"> & { tensors: readonly GgufTensorShape[] }): GgufLayout {
  const version = spec.version ?? 3;
  if (version !== 2 && version !== 3) throw new GgufError(path, "version", `expected 2 or 3, got ${String(version)}`);
  const entries = spec.metadata instanceof Map ? [...spec.metadata.entries()] : [...(spec.metadata as ReadonlyArray<readonly [string, GgufValue]>)];
  const metadata = new Map<string, GgufValue>();
  for (const [key, value] of entries) {
    if (metadata.has(key)) throw new GgufError(path, key, "duplicate metadata key");
    metadata.set(key, value);
  }
  const alignment = resolveAlignment(path, spec, metadata);

  const header = new HeaderEncoder(path);
  header.sink.u32(GGUF_MAGIC);
  header.sink.u32(version);
  header.sink.u64(spec.tensors.length);
  header.sink.u64(metadata.size);
  for (const [key, value] of metadata) {
    header.string(key, key);
    header.sink.u32(value.type);
    header.value(key, value);
  }
  let relative = 0;
  const tensors: GgufLayout["tensors"] = [];
  const names = new Set<string>();
  for (const t of spec.tensors) {
    if (names.has(t.name)) throw new GgufError(path, `tensor ${t.name}`, "duplicate tensor name");
    names.add(t.name);
    const byteLength = tensorBytes(path, t);
    header.string(`tensor ${t.name}`, t.name);
    header.sink.u32(t.dims.length);
    for (const d of t.dims) header.sink.u64(d);
    header.sink.u32(t.type);
    header.sink.u64(relative);
    tensors.push({ relativeOffset: relative, byteLength });
    relative = alignUp(relative + byteLength, alignment);
  }
  header.sink.zeros(alignUp(header.sink.length, alignment) - header.sink.length);
  return { header: header.sink.bytes(), alignment, tensors, fileSize: header.sink.length + relative };
}

/**
 * Writes a GGUF file. Tensor data is streamed from each tensor's producer, so files far larger
 * than memory can be written. The file appears under its name only once complete. As ggml's
 * writer does, every tensor (the last one too) is padded to the alignment, so tools that read
 * the whole padded data section find it all there.
 */
export function writeGguf(path: string, spec: GgufWriteSpec): void {
  const layout = layoutGguf(path, spec);
  const partial = `${path}.partial-${process.pid}`;
  const fd = openSync(partial, "w");
  let complete = false;
  try {
    let position = 0;
    const write = (bytes: Uint8Array) => {
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
      position += bytes.length;
    };
    write(layout.header);
    spec.tensors.forEach((t, i) => {
      const start = position;
      t.produce(write);
      const written = position - start;
      const expected = layout.tensors[i]!.byteLength;
      if (written !== expected) {
        throw new GgufError(path, `tensor ${t.name}`, `producer wrote ${written} bytes, expected ${expected}`);
      }
      const padding = alignUp(written, layout.alignment) - written;
      if (padding > 0) write(new Uint8Array(padding));
    });
    complete = true;
  } finally {
    closeSync(fd);
    if (!complete) unlinkSync(partial);
  }
  renameSync(partial, path);
}

/**
 * Writes only the header of the GGUF file `spec` describes (metadata and tensor list, no data):
 * a file that GgufFile opens with checkData off, enough to describe a model and plan its memory
 * without generating its weights.
 */
export function writeGgufHeader(path: string, spec: Omit<GgufWriteSpec, "tensors"> & { tensors: readonly GgufTensorShape[] }): void {
  const layout = layoutGguf(path, spec);
  const partial = `${path}.partial-${process.pid}`;
  writeFileSync(partial, layout.header);
  renameSync(partial, path);
}

export interface GgufSplitOptions {
  /** How many files (each holds at least one tensor). */
  parts: number;
  /** Write only each part's header (see writeGgufHeader). */
  headerOnly?: boolean;
}

/**
 * Writes a model in `parts` files as llama.cpp's llama-gguf-split does: PREFIX-00001-of-0000N.gguf
 * and on, the tensors in their order, the first part holding all the metadata, every part the
 * split keys (split.no u16, split.count u16, split.tensors.count i32). The parts hold about equal
 * bytes (see partOfEach). Returns the paths, first part first.
 */
export function writeGgufSplit(prefix: string, spec: GgufWriteSpec, options: GgufSplitOptions): string[] {
  const { parts } = options;
  const entries = spec.metadata instanceof Map ? [...spec.metadata.entries()] : [...(spec.metadata as ReadonlyArray<readonly [string, GgufValue]>)];
  const path = (i: number) => prefix + splitSuffix(i, parts);
  if (!Number.isInteger(parts) || parts < 2 || parts > 0xffff || parts > spec.tensors.length) {
    throw new GgufError(path(0), SPLIT_KEYS.count, `cannot split ${spec.tensors.length} tensors in ${parts} parts: expected 2 to ${Math.min(0xffff, spec.tensors.length)}`);
  }
  const existing = entries.find(([key]) => Object.values(SPLIT_KEYS).includes(key as never));
  if (existing) throw new GgufError(path(0), existing[0], "the metadata already has split keys");
  const partOf = partOfEach(spec.tensors.map((t) => alignUp(tensorBytes(path(0), t), GGUF_DEFAULT_ALIGNMENT)), parts);
  // The first part last: the file a model is opened from appears only once the others are complete.
  for (let i = parts - 1; i >= 0; i--) {
    const splitKeys: [string, GgufValue][] = [
      [SPLIT_KEYS.no, { type: GgufValueType.UINT16, value: i }],
      [SPLIT_KEYS.count, { type: GgufValueType.UINT16, value: parts }],
      [SPLIT_KEYS.tensors, { type: GgufValueType.INT32, value: spec.tensors.length }],
    ];
    const part: GgufWriteSpec = {
      version: spec.version,
      alignment: i === 0 ? spec.alignment : undefined,
      metadata: i === 0 ? [...entries, ...splitKeys] : splitKeys,
      tensors: spec.tensors.filter((_, t) => partOf[t] === i),
    };
    if (options.headerOnly) writeGgufHeader(path(i), part);
    else writeGguf(path(i), part);
  }
  return Array.from({ length: parts }, (_, i) => path(i));
}

/**
 * The part of each tensor: the one its middle byte falls in when the data is cut in `parts` equal
 * shares, in order, with no part left empty.
 */
function partOfEach(bytes: readonly number[], parts: number): number[] {
  const total = bytes.reduce((a, b) => a + b, 0);
  let before = 0;
  let previous = 0;
  return bytes.map((size, i) => {
    const balanced = total === 0 ? 0 : Math.floor(((before + size / 2) * parts) / total);
    // The tensors left must still give every later part one.
    const latest = parts - (bytes.length - i);
    const part = i === 0 ? 0 : Math.min(previous + 1, Math.max(previous, balanced, latest));
    before += size;
    previous = part;
    return part;
  });
}

/** A producer that emits one in-memory buffer. */
export function fromBytes(bytes: Uint8Array): (emit: (chunk: Uint8Array) => void) => void {
  return (emit) => emit(bytes);
}
