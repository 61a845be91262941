import { GgufError } from "./errors.js";
import { GgufMetadata, describeValueType } from "./metadata.js";
import { PartOpenError, PartReader, openPartReader } from "./part-reader.js";
import { checkLaterPart, readSplitKeys, splitPartPaths, SPLIT_KEYS } from "./split.js";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GgufArrayValue,
  GgufScalar,
  GgufTensorInfo,
  GgufValue,
  GgufValueType,
  ggmlBlockSize,
  ggmlRowBytes,
  ggmlTypeName,
  isKnownGgmlType,
} from "./types.js";

const MAX_DIMS = 4;
const HEADER_CHUNK = 1 << 20;
/**
 * Limits far above any real header value (chat templates are kilobytes, vocabularies a few
 * hundred thousand entries) that stop a corrupt length inside a large file from asking for
 * more than V8 can give: strings end below 2^29 UTF-16 units (and UTF-8 never decodes to more
 * units than it has bytes); an array of 2^26 values already takes half a gigabyte.
 */
const MAX_STRING_BYTES = 1 << 28;
const MAX_ARRAY_LENGTH = 1 << 26;

/** Reads a GGUF header from one part in chunks, so the header can be of any size. */
class HeaderCursor {
  private buffer = new Uint8Array(0);
  private view = new DataView(this.buffer.buffer);
  private bufferStart = 0;
  position = 0;
  /**
   * Strict: GGUF strings are UTF-8 by specification, and replacing bad bytes with U+FFFD would
   * silently merge distinct vocabulary entries. (llama.cpp does not check.) The BOM is kept, as
   * it is content, not a marker, inside a GGUF string.
   */
  private readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  constructor(
    private readonly reader: PartReader,
    private readonly part: number,
    readonly fileSize: number,
    private readonly path: string,
  ) {}

  /** Bytes of the file after the cursor. */
  get remaining(): number {
    return this.fileSize - this.position;
  }

  private ensure(bytes: number, field: string): number {
    if (this.position + bytes > this.fileSize) {
      throw new GgufError(
        this.path,
        field,
        `the file ends at byte ${this.fileSize}, before the ${bytes} bytes expected here (truncated header)`,
        this.position,
      );
    }
    const local = this.position - this.bufferStart;
    if (local + bytes <= this.buffer.length) return local;
    const size = Math.min(Math.max(bytes, HEADER_CHUNK), this.fileSize - this.position);
    const chunk = new Uint8Array(size);
    let got: number;
    try {
      got = this.reader.read(this.part, this.position, chunk);
    } catch (error) {
      throw new GgufError(this.path, field, `read failed: ${(error as Error).message}`, this.position);
    }
    if (got < bytes) {
      throw new GgufError(this.path, field, `could not read ${bytes} bytes (read ${got})`, this.position);
    }
    this.buffer = chunk;
    this.view = new DataView(chunk.buffer);
    this.bufferStart = this.position;
    return 0;
  }

  u8(field: string): number {
    const at = this.ensure(1, field);
    this.position += 1;
    return this.view.getUint8(at);
  }
  i8(field: string): number {
    const at = this.ensure(1, field);
    this.position += 1;
    return this.view.getInt8(at);
  }
  u16(field: string): number {
    const at = this.ensure(2, field);
    this.position += 2;
    return this.view.getUint16(at, true);
  }
  i16(field: string): number {
    const at = this.ensure(2, field);
    this.position += 2;
    return this.view.getInt16(at, true);
  }
  u32(field: string): number {
    const at = this.ensure(4, field);
    this.position += 4;
    return this.view.getUint32(at, true);
  }
  i32(field: string): number {
    const at = this.ensure(4, field);
    this.position += 4;
    return this.view.getInt32(at, true);
  }
  f32(field: string): number {
    const at = this.ensure(4, field);
    this.position += 4;
    return this.view.getFloat32(at, true);
  }
  f64(field: string): number {
    const at = this.ensure(8, field);
    this.position += 8;
    return this.view.getFloat64(at, true);
  }
  u64(field: string): bigint {
    const at = this.ensure(8, field);
    this.position += 8;
    return this.view.getBigUint64(at, true);
  }
  i64(field: string): bigint {
    const at = this.ensure(8, field);
    this.position += 8;
    return this.view.getBigInt64(at, true);
  }

  /** A u64 count or length, at most `limit`: what the rest of the file could hold. */
  count(field: string, limit: number, what: string): number {
    const start = this.position;
    const value = this.u64(field);
    if (value > BigInt(Math.max(0, limit))) {
      throw new GgufError(this.path, field, `${what} ${value} is impossible in a file of ${this.fileSize} bytes`, start);
    }
    return Number(value);
  }

  /** A u64 that must be exact as a JS number (a dimension or an offset). */
  safeInteger(field: string, what: string): number {
    const start = this.position;
    const value = this.u64(field);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new GgufError(this.path, field, `${what} ${value} is beyond 2^53`, start);
    }
    return Number(value);
  }

  string(field: string): string {
    const start = this.position;
    const length = this.count(field, this.remaining - 8, "string length");
    if (length > MAX_STRING_BYTES) {
      throw new GgufError(this.path, field, `string length ${length} exceeds the limit of ${MAX_STRING_BYTES} bytes`, start);
    }
    const at = this.ensure(length, field);
    this.position += length;
    try {
      return this.decoder.decode(this.buffer.subarray(at, at + length));
    } catch {
      throw new GgufError(this.path, field, "string is not valid UTF-8", start);
    }
  }
}

function minimumValueBytes(type: GgufValueType): number {
  switch (type) {
    case GgufValueType.UINT8:
    case GgufValueType.INT8:
    case GgufValueType.BOOL:
      return 1;
    case GgufValueType.UINT16:
    case GgufValueType.INT16:
      return 2;
    case GgufValueType.UINT32:
    case GgufValueType.INT32:
    case GgufValueType.FLOAT32:
      return 4;
    case GgufValueType.UINT64:
    case GgufValueType.INT64:
    case GgufValueType.FLOAT64:
    case GgufValueType.STRING:
      return 8;
    case GgufValueType.ARRAY:
      return 12;
  }
}

function isValueType(type: number): type is GgufValueType {
  return Number.isInteger(type) && type >= 0 && type <= 12;
}

type ScalarType = Exclude<GgufValueType, GgufValueType.ARRAY>;

function readScalar(cursor: HeaderCursor, type: ScalarType, field: string, path: string): GgufScalar {
  switch (type) {
    case GgufValueType.UINT8: return cursor.u8(field);
    case GgufValueType.INT8: return cursor.i8(field);
    case GgufValueType.UINT16: return cursor.u16(field);
    case GgufValueType.INT16: return cursor.i16(field);
    case GgufValueType.UINT32: return cursor.u32(field);
    case GgufValueType.INT32: return cursor.i32(field);
    case GgufValueType.FLOAT32: return cursor.f32(field);
    case GgufValueType.FLOAT64: return cursor.f64(field);
    case GgufValueType.UINT64: return cursor.u64(field);
    case GgufValueType.INT64: return cursor.i64(field);
    case GgufValueType.STRING: return cursor.string(field);
    case GgufValueType.BOOL: {
      const start = cursor.position;
      const byte = cursor.u8(field);
      if (byte > 1) throw new GgufError(path, field, `bool must be 0 or 1, got ${byte}`, start);
      return byte === 1;
    }
  }
}

function readValue(cursor: HeaderCursor, type: number, field: string, path: string, depth: number): GgufValue {
  if (!isValueType(type)) {
    throw new GgufError(path, field, `unknown value type ${type} (expected 0..12)`, cursor.position - 4);
  }
  if (type !== GgufValueType.ARRAY) return { type, value: readScalar(cursor, type, field, path) };
  if (depth > 8) throw new GgufError(path, field, "arrays nested more than 8 deep", cursor.position);
  const typeAt = cursor.position;
  const itemType = cursor.u32(field);
  if (!isValueType(itemType)) {
    throw new GgufError(path, field, `unknown array element type ${itemType} (expected 0..12)`, typeAt);
  }
  const lengthAt = cursor.position;
  const length = cursor.count(field, Math.floor((cursor.remaining - 8) / minimumValueBytes(itemType)), "array length");
  if (length > MAX_ARRAY_LENGTH) {
    throw new GgufError(path, field, `array length ${length} exceeds the limit of ${MAX_ARRAY_LENGTH} elements`, lengthAt);
  }
  if (itemType === GgufValueType.ARRAY) {
    const items: GgufValue[] = [];
    for (let i = 0; i < length; i++) items.push(readValue(cursor, itemType, `${field}[${i}]`, path, depth + 1));
    return { type, itemType, value: items };
  }
  const items: GgufScalar[] = new Array(length);
  for (let i = 0; i < length; i++) items[i] = readScalar(cursor, itemType, `${field}[${i}]`, path);
  return { type, itemType, value: items as GgufArrayValue };
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/** As llama.cpp: general.alignment, when present, must be a u32 power of two. */
function readAlignment(path: string, metadata: GgufMetadata): number {
  const value = metadata.get("general.alignment");
  if (value === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (value.type !== GgufValueType.UINT32) {
    throw new GgufError(path, "general.alignment", `expected a UINT32, got ${describeValueType(value)}`);
  }
  const alignment = value.value as number;
  if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
    throw new GgufError(path, "general.alignment", `expected a power of two, got ${alignment}`);
  }
  return alignment;
}

function readTensorInfo(cursor: HeaderCursor, path: string, index: number, alignment: number): Omit<GgufTensorInfo, "offset" | "part"> {
  const name = cursor.string(`tensor[${index}].name`);
  const field = `tensor ${name}`;
  const dimsAt = cursor.position;
  const nDims = cursor.u32(`${field}.n_dims`);
  if (nDims < 1 || nDims > MAX_DIMS) {
    throw new GgufError(path, `${field}.n_dims`, `expected 1..${MAX_DIMS} dimensions, got ${nDims}`, dimsAt);
  }
  const dims: number[] = [];
  // Exact arithmetic: a corrupt dimension must not wrap or round into a plausible size.
  let elements = 1n;
  for (let d = 0; d < nDims; d++) {
    const dim = cursor.safeInteger(`${field}.dims[${d}]`, "dimension");
    elements *= BigInt(dim);
    dims.push(dim);
  }
  if (elements > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new GgufError(path, `${field}.dims`, `${dims.join(" x ")} is more than 2^53 elements`, dimsAt);
  }
  const type = cursor.u32(`${field}.type`);
  // A type this ggml version does not know is kept, not rejected: the file stays readable and
  // whoever needs the tensor can name its type. Its size is unknown, but GGUF stores every
  // offset, so no other tensor's position depends on it.
  const known = isKnownGgmlType(type);
  if (known && dims[0]! % ggmlBlockSize(type) !== 0) {
    throw new GgufError(
      path,
      `${field}.dims[0]`,
      `${dims[0]} is not a multiple of the ${ggmlTypeName(type)} block size ${ggmlBlockSize(type)}`,
      dimsAt + 4,
    );
  }
  const offsetAt = cursor.position;
  const relativeOffset = cursor.safeInteger(`${field}.offset`, "offset");
  if (relativeOffset % alignment !== 0) {
    throw new GgufError(path, `${field}.offset`, `${relativeOffset} is not a multiple of the alignment ${alignment}`, offsetAt);
  }
  const rows = dims.slice(1).reduce((a, b) => a * b, 1);
  const byteLength = known ? ggmlRowBytes(type, dims[0]!) * rows : undefined;
  return { name, dims, type, relativeOffset, byteLength, elementCount: Number(elements) };
}

/** Where a tensor's data ends in its part (its start, for a tensor of unknown size). */
function dataEnd(t: GgufTensorInfo): number {
  return t.offset + (t.byteLength ?? 0);
}

/**
 * A part's tensors must lie in it (unless told otherwise) and must not share bytes. A tensor of
 * unknown size is checked as far as it can be: its start lies in the part, outside other tensors.
 */
function checkTensorPlacement(path: string, fileSize: number, tensors: GgufTensorInfo[], checkData: boolean): void {
  for (const t of tensors) {
    const end = dataEnd(t);
    if (checkData ? end > fileSize : end > Number.MAX_SAFE_INTEGER) {
      throw new GgufError(
        path,
        `tensor ${t.name}`,
        `data [${t.offset}, ${end}) lies beyond the end of the file (${fileSize} bytes): truncated file or bad offset`,
      );
    }
  }
  // Sorted by start, any overlap shows between neighbours; empty tensors occupy no bytes.
  const byOffset = tensors.filter((t) => t.byteLength !== 0).sort((a, b) => a.offset - b.offset);
  for (let i = 0; i + 1 < byOffset.length; i++) {
    const t = byOffset[i]!;
    const next = byOffset[i + 1]!;
    if (dataEnd(t) > next.offset) {
      throw new GgufError(
        path,
        `tensor ${t.name}`,
        `data [${t.offset}, ${dataEnd(t)}) overlaps tensor ${next.name} starting at ${next.offset}`,
      );
    }
  }
}

export interface OpenGgufOptions {
  /** Check that every tensor lies within its file (default true); off, a header alone can be read. */
  checkData?: boolean;
}

/** One file of a model: the whole model, or one part of a split one. */
export interface GgufPart {
  path: string;
  /** Bytes of the file. */
  size: number;
  version: number;
  alignment: number;
  /** Where its tensor data begins. */
  dataOffset: number;
  tensorCount: number;
}

interface ParsedPart extends GgufPart {
  metadata: GgufMetadata;
  tensors: GgufTensorInfo[];
}

/** The parts opened for reading, or a GgufError naming the one that cannot be (of the model at `first`). */
function openReader(paths: readonly string[], first: string): PartReader {
  try {
    return openPartReader(paths, { direct: false });
  } catch (error) {
    if (!(error instanceof PartOpenError)) throw error;
    const which = error.index === 0 ? "" : ` (part ${error.index + 1} of ${paths.length} of ${first})`;
    throw new GgufError(error.path, "file", `${error.problem}${which}${error.detail ? `: ${error.detail}` : ""}`);
  }
}

/** Parses and validates the header of part `part`; every problem is a GgufError. */
function parsePart(path: string, reader: PartReader, part: number, options: OpenGgufOptions): ParsedPart {
  const fileSize = reader.size(part);
  const cursor = new HeaderCursor(reader, part, fileSize, path);
  const magic = cursor.u32("magic");
  if (magic !== GGUF_MAGIC) {
    const bytes = [magic & 0xff, (magic >> 8) & 0xff, (magic >> 16) & 0xff, magic >>> 24];
    const shown = bytes.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`));
    throw new GgufError(path, "magic", `expected "GGUF", got "${shown.join("")}": not a GGUF file`, 0);
  }
  const version = cursor.u32("version");
  if (version !== 2 && version !== 3) {
    const hint = version > 0xffff ? " (a big-endian file? only little-endian GGUF is supported)" : "";
    throw new GgufError(path, "version", `unsupported GGUF version ${version}, expected 2 or 3${hint}`, 4);
  }
  const tensorCount = cursor.count("tensor_count", Math.floor((cursor.remaining - 16) / 24), "tensor count");
  const kvCount = cursor.count("metadata_kv_count", Math.floor((cursor.remaining - 8) / 13), "metadata count");

  const entries = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const keyAt = cursor.position;
    const key = cursor.string(`metadata[${i}].key`);
    if (entries.has(key)) throw new GgufError(path, key, "duplicate metadata key", keyAt);
    const type = cursor.u32(key);
    entries.set(key, readValue(cursor, type, key, path, 0));
  }
  const metadata = new GgufMetadata(path, entries);
  const alignment = readAlignment(path, metadata);

  const infos: Omit<GgufTensorInfo, "offset" | "part">[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const nameAt = cursor.position;
    const info = readTensorInfo(cursor, path, i, alignment);
    if (names.has(info.name)) throw new GgufError(path, `tensor ${info.name}`, "duplicate tensor name", nameAt);
    names.add(info.name);
    infos.push(info);
  }
  const dataOffset = alignUp(cursor.position, alignment);
  const tensors: GgufTensorInfo[] = infos.map((t) => ({ ...t, part, offset: dataOffset + t.relativeOffset }));
  checkTensorPlacement(path, fileSize, tensors, options.checkData !== false);
  return { path, size: fileSize, version, alignment, dataOffset, tensorCount, metadata, tensors };
}

/**
 * The later parts of a split model whose first part is parsed: found by name, each checked to be
 * the part its name says, with no tensor in two parts and as many tensors in all as the first
 * part's split.tensors.count says.
 */
function parseLaterParts(first: ParsedPart, declared: number, reader: PartReader, paths: readonly string[], options: OpenGgufOptions): ParsedPart[] {
  const parts = [first];
  const owner = new Map(first.tensors.map((t) => [t.name, first.path]));
  for (let i = 1; i < paths.length; i++) {
    const part = parsePart(paths[i]!, reader, i, options);
    checkLaterPart(part.path, readSplitKeys(part.metadata), i, paths.length);
    for (const t of part.tensors) {
      const earlier = owner.get(t.name);
      if (earlier !== undefined) throw new GgufError(part.path, `tensor ${t.name}`, `also in ${earlier}: a tensor may be in one part only`);
      owner.set(t.name, part.path);
    }
    parts.push(part);
  }
  if (owner.size !== declared) {
    throw new GgufError(first.path, SPLIT_KEYS.tensors, `says ${declared} tensors, but the ${paths.length} parts hold ${owner.size}`);
  }
  return parts;
}

/**
 * A GGUF model opened for reading: the header is parsed eagerly, tensor data stays on disk and is
 * read by offset on request, so files larger than memory (and larger than 2 GiB) work. A model
 * split in parts (llama-gguf-split) is opened from its first part and presents one file: the
 * first part's metadata, every part's tensors, each tensor saying which part holds its data.
 */
export class GgufFile {
  readonly tensorsByName: ReadonlyMap<string, GgufTensorInfo>;
  /** The first part's (the one holding the metadata). */
  readonly version: number;
  readonly alignment: number;
  readonly dataOffset: number;
  /** Bytes of the model's files together. */
  readonly fileSize: number;

  private constructor(
    /** The file the model was opened from (its first part). */
    readonly path: string,
    private readonly reader: PartReader,
    readonly parts: readonly GgufPart[],
    readonly metadata: GgufMetadata,
    readonly tensors: readonly GgufTensorInfo[],
  ) {
    this.tensorsByName = new Map(tensors.map((t) => [t.name, t]));
    const first = parts[0]!;
    this.version = first.version;
    this.alignment = first.alignment;
    this.dataOffset = first.dataOffset;
    this.fileSize = parts.reduce((sum, p) => sum + p.size, 0);
  }

  /** Opens and validates a GGUF file (every part of a split one); every problem with it is a GgufError. */
  static open(path: string, options: OpenGgufOptions = {}): GgufFile {
    let reader = openReader([path], path);
    try {
      const first = parsePart(path, reader, 0, options);
      const split = readSplitKeys(first.metadata);
      let parts = [first];
      if (split) {
        const paths = splitPartPaths(path, split);
        reader.close();
        reader = openReader(paths, path);
        parts = parseLaterParts(first, split.tensors, reader, paths, options);
      }
      const stripped = parts.map(({ metadata: _, tensors: __, ...part }) => part);
      return new GgufFile(path, reader, stripped, first.metadata, parts.flatMap((p) => p.tensors));
    } catch (error) {
      reader.close();
      throw error;
    }
  }

  /** The files' paths, the first part's first. */
  get paths(): string[] {
    return this.parts.map((p) => p.path);
  }

  /** The named tensor, or a clear error naming the file and the missing tensor. */
  tensor(name: string): GgufTensorInfo {
    const t = this.tensorsByName.get(name);
    if (!t) throw new GgufError(this.path, `tensor ${name}`, "missing from the file");
    return t;
  }

  /** Tensors whose data does not lie within their file (there are some only in a file opened with checkData off). */
  tensorsBeyondEnd(): GgufTensorInfo[] {
    return this.tensors.filter((t) => dataEnd(t) > this.parts[t.part]!.size);
  }

  /** Reads `target.length` bytes of part `part` starting at absolute `position`. */
  readAt(part: number, position: number, target: Uint8Array): void {
    const path = this.parts[part]?.path ?? this.path;
    let n: number;
    try {
      n = this.reader.read(part, position, target);
    } catch (error) {
      throw new GgufError(path, "data", `read failed: ${(error as Error).message}`, position);
    }
    if (n < target.length) throw new GgufError(path, "data", `file ends before byte ${position + target.length}`, position + n);
  }

  /** Reads bytes [start, start + target.length) of a tensor's data into target. */
  readTensor(tensor: GgufTensorInfo, target: Uint8Array, start = 0): void {
    if (tensor.byteLength === undefined) {
      throw new GgufError(this.path, `tensor ${tensor.name}`, `type ${ggmlTypeName(tensor.type)}: its size is unknown, so its data cannot be read`);
    }
    if (start < 0 || start + target.length > tensor.byteLength) {
      throw new GgufError(this.path, `tensor ${tensor.name}`, `read of [${start}, ${start + target.length}) outside its ${tensor.byteLength} bytes`);
    }
    this.readAt(tensor.part, tensor.offset + start, target);
  }

  close(): void {
    this.reader.close();
  }
}
