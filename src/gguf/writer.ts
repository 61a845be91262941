import { closeSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GgmlType,
  GgufValue,
  GgufValueType,
  ggmlBlockSize,
  ggmlRowBytes,
  ggmlTypeName,
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
  u8(v: number) { this.view.setUint8(this.reserve(1), v); }
  i8(v: number) { this.view.setInt8(this.reserve(1), v); }
  u16(v: number) { this.view.setUint16(this.reserve(2), v, true); }
  i16(v: number) { this.view.setInt16(this.reserve(2), v, true); }
  u32(v: number) { this.view.setUint32(this.reserve(4), v, true); }
  i32(v: number) { this.view.setInt32(this.reserve(4), v, true); }
  f32(v: number) { this.view.setFloat32(this.reserve(4), v, true); }
  f64(v: number) { this.view.setFloat64(this.reserve(8), v, true); }
  u64(v: bigint | number) { this.view.setBigUint64(this.reserve(8), BigInt(v), true); }
  i64(v: bigint | number) { this.view.setBigInt64(this.reserve(8), BigInt(v), true); }
  string(s: string) {
    const bytes = this.encoder.encode(s);
    this.u64(bytes.length);
    this.buffer.set(bytes, this.reserve(bytes.length));
  }
  zeros(n: number) { this.reserve(n); }
  bytes(): Uint8Array { return this.buffer.subarray(0, this.length); }
}

function writeScalar(sink: ByteSink, type: GgufValueType, value: unknown): void {
  switch (type) {
    case GgufValueType.UINT8: return sink.u8(value as number);
    case GgufValueType.INT8: return sink.i8(value as number);
    case GgufValueType.UINT16: return sink.u16(value as number);
    case GgufValueType.INT16: return sink.i16(value as number);
    case GgufValueType.UINT32: return sink.u32(value as number);
    case GgufValueType.INT32: return sink.i32(value as number);
    case GgufValueType.FLOAT32: return sink.f32(value as number);
    case GgufValueType.FLOAT64: return sink.f64(value as number);
    case GgufValueType.UINT64: return sink.u64(value as bigint);
    case GgufValueType.INT64: return sink.i64(value as bigint);
    case GgufValueType.BOOL: return sink.u8(value ? 1 : 0);
    case GgufValueType.STRING: return sink.string(value as string);
    case GgufValueType.ARRAY: {
      const nested = value as GgufValue;
      return writeValue(sink, nested, false);
    }
  }
}

function writeValue(sink: ByteSink, value: GgufValue, withType: boolean): void {
  if (withType) sink.u32(value.type);
  if (value.type !== GgufValueType.ARRAY) return writeScalar(sink, value.type, value.value);
  sink.u32(value.itemType);
  sink.u64(value.value.length);
  for (const item of value.value) writeScalar(sink, value.itemType, item);
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

function tensorBytes(t: GgufTensorSpec): number {
  if (t.dims[0]! % ggmlBlockSize(t.type) !== 0) {
    throw new Error(`tensor ${t.name}: dims[0] = ${t.dims[0]} is not a multiple of the ${ggmlTypeName(t.type)} block size`);
  }
  return ggmlRowBytes(t.type, t.dims[0]!) * t.dims.slice(1).reduce((a, b) => a * b, 1);
}

/**
 * Writes a GGUF file. Tensor data is streamed from each tensor's producer, so files far larger
 * than memory can be written. The file appears under its name only once complete.
 */
export function writeGguf(path: string, spec: GgufWriteSpec): void {
  const alignment = spec.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const version = spec.version ?? 3;
  const metadata = spec.metadata instanceof Map ? [...spec.metadata.entries()] : [...(spec.metadata as ReadonlyArray<readonly [string, GgufValue]>)];
  const header = new ByteSink();
  header.u32(GGUF_MAGIC);
  header.u32(version);
  header.u64(spec.tensors.length);
  header.u64(metadata.length);
  for (const [key, value] of metadata) {
    header.string(key);
    writeValue(header, value, true);
  }
  let relative = 0;
  const sizes: number[] = [];
  for (const t of spec.tensors) {
    header.string(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(d);
    header.u32(t.type);
    header.u64(relative);
    const size = tensorBytes(t);
    sizes.push(size);
    relative = alignUp(relative + size, alignment);
  }
  header.zeros(alignUp(header.length, alignment) - header.length);

  const partial = `${path}.partial-${process.pid}`;
  const fd = openSync(partial, "w");
  try {
    let position = 0;
    const write = (bytes: Uint8Array) => {
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
      position += bytes.length;
    };
    write(header.bytes());
    spec.tensors.forEach((t, i) => {
      const start = position;
      t.produce(write);
      const written = position - start;
      if (written !== sizes[i]) {
        throw new Error(`tensor ${t.name}: producer wrote ${written} bytes, expected ${sizes[i]}`);
      }
      const padding = alignUp(written, alignment) - written;
      if (padding > 0 && i < spec.tensors.length - 1) write(new Uint8Array(padding));
    });
    closeSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(partial);
    throw error;
  }
  renameSync(partial, path);
}

/** A producer that emits one in-memory buffer. */
export function fromBytes(bytes: Uint8Array): (emit: (chunk: Uint8Array) => void) => void {
  return (emit) => emit(bytes);
}
