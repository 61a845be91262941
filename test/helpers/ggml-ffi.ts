import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type Koffi from "koffi";
import { oracleMissing } from "./oracle.js";

/**
 * ggml's own C functions from node-llama-cpp's prebuilt binaries, called through koffi: the
 * oracle for bit-exact quantization, products and the GGUF format. Where the binaries are absent
 * (e.g. on another platform) the tests that need them fail saying how to install them, unless the
 * run is marked oracle-free (see oracle.ts).
 */

/** Where node-llama-cpp keeps its prebuilt libraries: bins/<platform>/ (throws if absent). */
function findBinaryDirectory(): string {
  const require = createRequire(import.meta.url);
  const packageEntry = require.resolve("@node-llama-cpp/linux-x64");
  const bins = join(dirname(packageEntry), "..", "bins");
  const candidates = readdirSync(bins).map((d) => join(bins, d)).filter((d) => existsSync(join(d, "libggml-base.so")));
  if (candidates.length !== 1) throw new Error(`expected one ${bins}/*/libggml-base.so, found ${candidates.length}`);
  return candidates[0]!;
}

type GgufContext = bigint;

export interface GgmlGgufTensor {
  name: string;
  type: number;
  /** Always 4 entries, 1 beyond the tensor's dimensions. */
  ne: number[];
  offset: number;
  size: number;
}

/** What ggml's own GGUF reader makes of a file. Values are raw little-endian bytes, strings text. */
export interface GgmlGgufFile {
  version: number;
  alignment: number;
  dataOffset: number;
  kv: Map<string, { type: number; itemType?: number; bytes?: Uint8Array; strings?: string[] }>;
  tensors: GgmlGgufTensor[];
}

/**
 * Alignment stays the default 32: gguf_set_val_u32("general.alignment") does not change the
 * alignment gguf_add_tensor lays tensors out with, so ggml would write misaligned offsets.
 */
export interface GgmlGgufWriteSpec {
  kv: Array<
    | { key: string; type: number; bytes: Uint8Array }
    | { key: string; itemType: number; bytes: Uint8Array; n: number }
    | { key: string; string: string }
    | { key: string; strings: string[] }
  >;
  tensors: Array<{ name: string; type: number; ne: number[]; data: Uint8Array }>;
}

export interface GgmlBase {
  quantizeRowQ4_0Ref(src: Float32Array): Uint8Array;
  quantizeRowQ8_0Ref(src: Float32Array): Uint8Array;
  dequantizeRowQ4_0(blocks: Uint8Array, n: number): Float32Array;
  dequantizeRowQ8_0(blocks: Uint8Array, n: number): Float32Array;
  fp32ToFp16Row(src: Float32Array): Uint16Array;
  fp16ToFp32Row(src: Uint16Array): Float32Array;
  fp32ToBf16Row(src: Float32Array): Uint16Array;
  fp32ToBf16RowRef(src: Float32Array): Uint16Array;
  bf16ToFp32Row(src: Uint16Array): Float32Array;
  /** ggml_type_size, ggml_blck_size and ggml_type_name of a type id. */
  typeSize(type: number): number;
  blockSize(type: number): number;
  typeName(type: number): string;
  /** The type's to_float (dequantize_row_<type>) on `n` values. */
  dequantizeRow(type: number, blocks: Uint8Array, n: number): Float32Array;
  /** The type's from_float_ref (quantize_row_<type>_ref), or undefined where ggml has none. */
  quantizeRowRef(type: number, src: Float32Array): Uint8Array | undefined;
  /**
   * ggml_quantize_chunk of `rows` rows of `perRow` values (after ggml_quantize_init, which the
   * i-quants need), with an importance matrix of `perRow` weights or none.
   */
  quantizeChunk(type: number, src: Float32Array, rows: number, perRow: number, imatrix?: Float32Array): Uint8Array;
  /** ggml's gguf_init_from_file; undefined when ggml rejects the file. */
  readGguf(path: string): GgmlGgufFile | undefined;
  /** ggml's gguf_write_to_file. */
  writeGguf(path: string, spec: GgmlGgufWriteSpec): void;
}

export interface GgmlCpuVariant {
  /** e.g. "haswell" for libggml-cpu-haswell.so. */
  name: string;
  /** ggml_backend_score(): 0 if this CPU cannot run it; llama.cpp loads the highest. */
  score: number;
  /** The CPU backend's quantize_row_q8_0 (`from_float` of Q8_0: how activations are quantized). */
  quantizeRowQ8_0(src: Float32Array): Uint8Array;
  /** ggml_cpu_fp32_to_fp16: the CPU backend's run-time conversion. */
  fp32ToFp16(src: Float32Array): Uint16Array;
  /** type_traits_cpu[type].vec_dot_type, or undefined when the type has no vec_dot. */
  vecDotType(type: number): number | undefined;
  /** type_traits_cpu[type].from_float on `src`, writing `bytes` bytes (how activations of that type are made). */
  fromFloat(type: number, src: Float32Array, bytes: number): Uint8Array;
  /** type_traits_cpu[type].vec_dot of `n` values: weights x (of `type`) · activations y (of its vec_dot_type). */
  vecDot(type: number, n: number, x: Uint8Array, y: Uint8Array): number;
}

/** Calls a ggml row function `f(src, dst, n)` and hands back dst. */
function into<T>(f: (src: unknown, dst: T, n: number) => void, src: unknown, dst: T, n: number): T {
  f(src, dst, n);
  return dst;
}

/** ggml_type_size for the block types these helpers allocate. */
const Q4_0_BLOCK = 18;
const Q8_0_BLOCK = 34;

function loadBase(directory: string): GgmlBase {
  const lib = koffi.load(join(directory, "libggml-base.so"));
  const quantizeQ4_0 = lib.func("void quantize_row_q4_0_ref(const float *x, void *y, int64_t k)");
  const quantizeQ8_0 = lib.func("void quantize_row_q8_0_ref(const float *x, void *y, int64_t k)");
  const dequantizeQ4_0 = lib.func("void dequantize_row_q4_0(const void *x, float *y, int64_t k)");
  const dequantizeQ8_0 = lib.func("void dequantize_row_q8_0(const void *x, float *y, int64_t k)");
  const toFp16 = lib.func("void ggml_fp32_to_fp16_row(const float *x, void *y, int64_t n)");
  const fromFp16 = lib.func("void ggml_fp16_to_fp32_row(const void *x, float *y, int64_t n)");
  const toBf16 = lib.func("void ggml_fp32_to_bf16_row(const float *x, void *y, int64_t n)");
  const toBf16Ref = lib.func("void ggml_fp32_to_bf16_row_ref(const float *x, void *y, int64_t n)");
  const fromBf16 = lib.func("void ggml_bf16_to_fp32_row(const void *x, float *y, int64_t n)");
  const typeSize = lib.func("size_t ggml_type_size(int type)");
  const blockSize = lib.func("int64_t ggml_blck_size(int type)");
  const typeName = lib.func("const char *ggml_type_name(int type)");
  const quantizeInit = lib.func("void ggml_quantize_init(int type)");
  const quantizeChunk = lib.func("size_t ggml_quantize_chunk(int type, const float *src, void *dst, int64_t start, int64_t nrows, int64_t n_per_row, const float *imatrix)");
  const Traits = koffi.struct("ggml_type_traits", {
    type_name: "const char *",
    blck_size: "int64_t",
    blck_size_interleave: "int64_t",
    type_size: "size_t",
    is_quantized: "bool",
    to_float: "void *",
    from_float_ref: "void *",
  });
  const getTraits = lib.func("const void *ggml_get_type_traits(int type)");
  const rowProto = koffi.proto("void ggml_row_fn(const void *x, void *y, int64_t k)");
  const traitsOf = (type: number) => koffi.decode(getTraits(type), Traits) as { to_float: unknown; from_float_ref: unknown };
  const sizeOf = (type: number, n: number) => (n / Number(blockSize(type))) * Number(typeSize(type));

  const InitParams = koffi.struct("gguf_init_params", { no_alloc: "bool", ctx: "void *" });
  const GgmlInitParams = koffi.struct("ggml_init_params", { mem_size: "size_t", mem_buffer: "void *", no_alloc: "bool" });
  const g = {
    initFromFile: lib.func("gguf_init_from_file", "void *", ["const char *", InitParams]),
    initEmpty: lib.func("void *gguf_init_empty(void)"),
    free: lib.func("void gguf_free(void *ctx)"),
    version: lib.func("uint32_t gguf_get_version(void *ctx)"),
    alignment: lib.func("size_t gguf_get_alignment(void *ctx)"),
    dataOffset: lib.func("size_t gguf_get_data_offset(void *ctx)"),
    nKv: lib.func("int64_t gguf_get_n_kv(void *ctx)"),
    key: lib.func("const char *gguf_get_key(void *ctx, int64_t id)"),
    kvType: lib.func("int gguf_get_kv_type(void *ctx, int64_t id)"),
    arrType: lib.func("int gguf_get_arr_type(void *ctx, int64_t id)"),
    valData: lib.func("void *gguf_get_val_data(void *ctx, int64_t id)"),
    valStr: lib.func("const char *gguf_get_val_str(void *ctx, int64_t id)"),
    arrN: lib.func("size_t gguf_get_arr_n(void *ctx, int64_t id)"),
    arrData: lib.func("void *gguf_get_arr_data(void *ctx, int64_t id)"),
    arrStr: lib.func("const char *gguf_get_arr_str(void *ctx, int64_t id, size_t i)"),
    nTensors: lib.func("int64_t gguf_get_n_tensors(void *ctx)"),
    tensorName: lib.func("const char *gguf_get_tensor_name(void *ctx, int64_t id)"),
    tensorOffset: lib.func("size_t gguf_get_tensor_offset(void *ctx, int64_t id)"),
    tensorType: lib.func("int gguf_get_tensor_type(void *ctx, int64_t id)"),
    tensorSize: lib.func("size_t gguf_get_tensor_size(void *ctx, int64_t id)"),
    tensorNe: lib.func("void *gguf_get_tensor_ne(void *ctx, int64_t id)"),
    setArrData: lib.func("void gguf_set_arr_data(void *ctx, const char *key, int type, const void *data, size_t n)"),
    setValStr: lib.func("void gguf_set_val_str(void *ctx, const char *key, const char *val)"),
    setArrStr: lib.func("void gguf_set_arr_str(void *ctx, const char *key, const char **data, size_t n)"),
    addTensor: lib.func("void gguf_add_tensor(void *ctx, void *tensor)"),
    writeToFile: lib.func("bool gguf_write_to_file(void *ctx, const char *fname, bool only_meta)"),
    ggmlInit: lib.func("ggml_init", "void *", [GgmlInitParams]),
    ggmlFree: lib.func("void ggml_free(void *ctx)"),
    newTensor: lib.func("void *ggml_new_tensor(void *ctx, int type, int n_dims, const int64_t *ne)"),
    setName: lib.func("void *ggml_set_name(void *tensor, const char *name)"),
    tensorData: lib.func("void *ggml_get_data(void *tensor)"),
    nbytes: lib.func("size_t ggml_nbytes(void *tensor)"),
  };
  // ggml_type_size of each GGUF value type, for copying scalar and array payloads out.
  const valueTypeSize = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];
  const copyOut = (pointer: bigint, bytes: number) => new Uint8Array(bytes === 0 ? new ArrayBuffer(0) : koffi.view(pointer, bytes).slice(0));

  // One typed setter per scalar GGUF value type, fed from the value's little-endian bytes.
  const setter = (cType: string, name: string, read: (view: DataView) => unknown) => {
    const set = lib.func(`void gguf_set_val_${name}(void *ctx, const char *key, ${cType} val)`);
    return (ctx: GgufContext, key: string, bytes: Uint8Array) =>
      set(ctx, key, read(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)));
  };
  const scalarSetters: Record<number, (ctx: GgufContext, key: string, bytes: Uint8Array) => void> = {
    0: setter("uint8_t", "u8", (v) => v.getUint8(0)),
    1: setter("int8_t", "i8", (v) => v.getInt8(0)),
    2: setter("uint16_t", "u16", (v) => v.getUint16(0, true)),
    3: setter("int16_t", "i16", (v) => v.getInt16(0, true)),
    4: setter("uint32_t", "u32", (v) => v.getUint32(0, true)),
    5: setter("int32_t", "i32", (v) => v.getInt32(0, true)),
    6: setter("float", "f32", (v) => v.getFloat32(0, true)),
    7: setter("bool", "bool", (v) => v.getUint8(0) !== 0),
    10: setter("uint64_t", "u64", (v) => v.getBigUint64(0, true)),
    11: setter("int64_t", "i64", (v) => v.getBigInt64(0, true)),
    12: setter("double", "f64", (v) => v.getFloat64(0, true)),
  };

  return {
    quantizeRowQ4_0Ref: (src) => into(quantizeQ4_0, src, new Uint8Array((src.length / 32) * Q4_0_BLOCK), src.length),
    quantizeRowQ8_0Ref: (src) => into(quantizeQ8_0, src, new Uint8Array((src.length / 32) * Q8_0_BLOCK), src.length),
    dequantizeRowQ4_0: (blocks, n) => into(dequantizeQ4_0, blocks, new Float32Array(n), n),
    dequantizeRowQ8_0: (blocks, n) => into(dequantizeQ8_0, blocks, new Float32Array(n), n),
    fp32ToFp16Row: (src) => into(toFp16, src, new Uint16Array(src.length), src.length),
    fp16ToFp32Row: (src) => into(fromFp16, src, new Float32Array(src.length), src.length),
    fp32ToBf16Row: (src) => into(toBf16, src, new Uint16Array(src.length), src.length),
    fp32ToBf16RowRef: (src) => into(toBf16Ref, src, new Uint16Array(src.length), src.length),
    bf16ToFp32Row: (src) => into(fromBf16, src, new Float32Array(src.length), src.length),
    typeSize: (type) => Number(typeSize(type)),
    blockSize: (type) => Number(blockSize(type)),
    typeName: (type) => typeName(type) as string,
    dequantizeRow(type, blocks, n) {
      const f = traitsOf(type).to_float;
      if (!f) throw new Error(`ggml type ${typeName(type)} has no to_float`);
      const out = new Float32Array(n);
      koffi.call(f, rowProto, blocks, out, n);
      return out;
    },
    quantizeRowRef(type, src) {
      const f = traitsOf(type).from_float_ref;
      if (!f) return undefined;
      const out = new Uint8Array(sizeOf(type, src.length));
      koffi.call(f, rowProto, src, out, src.length);
      return out;
    },
    quantizeChunk(type, src, rows, perRow, imatrix) {
      quantizeInit(type);
      const out = new Uint8Array(rows * sizeOf(type, perRow));
      const written = Number(quantizeChunk(type, src, out, 0, rows, perRow, imatrix ?? null));
      if (written !== out.length) throw new Error(`ggml_quantize_chunk(${typeName(type)}) wrote ${written} bytes, expected ${out.length}`);
      return out;
    },

    readGguf(path) {
      const ctx = g.initFromFile(path, { no_alloc: true, ctx: null }) as GgufContext | null;
      if (!ctx) return undefined;
      try {
        const kv: GgmlGgufFile["kv"] = new Map();
        const nKv = Number(g.nKv(ctx));
        for (let id = 0; id < nKv; id++) {
          const key = g.key(ctx, id) as string;
          const type = g.kvType(ctx, id) as number;
          if (type === 8) {
            kv.set(key, { type, strings: [g.valStr(ctx, id) as string] });
          } else if (type !== 9) {
            kv.set(key, { type, bytes: copyOut(g.valData(ctx, id) as bigint, valueTypeSize[type]!) });
          } else {
            const itemType = g.arrType(ctx, id) as number;
            const n = Number(g.arrN(ctx, id));
            if (itemType === 8) {
              const strings: string[] = [];
              for (let i = 0; i < n; i++) strings.push(g.arrStr(ctx, id, i) as string);
              kv.set(key, { type, itemType, strings });
            } else {
              kv.set(key, { type, itemType, bytes: copyOut(g.arrData(ctx, id) as bigint, n * valueTypeSize[itemType]!) });
            }
          }
        }
        const tensors: GgmlGgufTensor[] = [];
        const nTensors = Number(g.nTensors(ctx));
        for (let id = 0; id < nTensors; id++) {
          const ne = new DataView(koffi.view(g.tensorNe(ctx, id) as bigint, 32));
          tensors.push({
            name: g.tensorName(ctx, id) as string,
            type: g.tensorType(ctx, id) as number,
            ne: [0, 1, 2, 3].map((d) => Number(ne.getBigInt64(8 * d, true))),
            offset: Number(g.tensorOffset(ctx, id)),
            size: Number(g.tensorSize(ctx, id)),
          });
        }
        return {
          version: g.version(ctx) as number,
          alignment: Number(g.alignment(ctx)),
          dataOffset: Number(g.dataOffset(ctx)),
          kv,
          tensors,
        };
      } finally {
        g.free(ctx);
      }
    },

    writeGguf(path, spec) {
      const ctx = g.initEmpty() as GgufContext;
      const dataBytes = spec.tensors.reduce((sum, t) => sum + t.data.length, 0);
      const tensorContext = g.ggmlInit({ mem_size: dataBytes + spec.tensors.length * 1024 + 4096, mem_buffer: null, no_alloc: false }) as bigint;
      try {
        for (const entry of spec.kv) {
          if ("string" in entry) g.setValStr(ctx, entry.key, entry.string);
          else if ("strings" in entry) g.setArrStr(ctx, entry.key, entry.strings, entry.strings.length);
          else if ("itemType" in entry) g.setArrData(ctx, entry.key, entry.itemType, entry.bytes, entry.n);
          else scalarSetters[entry.type]!(ctx, entry.key, entry.bytes);
        }
        for (const t of spec.tensors) {
          const tensor = g.newTensor(tensorContext, t.type, t.ne.length, new BigInt64Array(t.ne.map(BigInt))) as bigint;
          g.setName(tensor, t.name);
          const size = Number(g.nbytes(tensor));
          if (size !== t.data.length) throw new Error(`tensor ${t.name}: ggml expects ${size} bytes, got ${t.data.length}`);
          // gguf_write_to_file asserts (aborting the process) that every tensor has data.
          if (size === 0) throw new Error(`tensor ${t.name}: ggml cannot write an empty tensor`);
          new Uint8Array(koffi.view(g.tensorData(tensor) as bigint, size)).set(t.data);
          g.addTensor(ctx, tensor);
        }
        if (!g.writeToFile(ctx, path, false)) throw new Error(`ggml could not write ${path}`);
      } finally {
        g.ggmlFree(tensorContext);
        g.free(ctx);
      }
    },
  };
}

function loadCpuVariants(directory: string): GgmlCpuVariant[] {
  // struct ggml_type_traits_cpu (ggml-cpu.h) and the function types it points to.
  const CpuTraits = koffi.struct("ggml_type_traits_cpu", { from_float: "void *", vec_dot: "void *", vec_dot_type: "int", nrows: "int64_t" });
  const cpuRowProto = koffi.proto("void ggml_cpu_row_fn(const float *x, void *y, int64_t k)");
  const vecDotProto = koffi.proto("void ggml_vec_dot_fn(int n, float *s, size_t bs, const void *x, size_t bx, const void *y, size_t by, int nrc)");
  const variants: GgmlCpuVariant[] = [];
  for (const file of readdirSync(directory)) {
    const match = /^libggml-cpu-(.+)\.so$/.exec(file);
    if (!match) continue;
    // Loaded RTLD_LOCAL (koffi's default), so each variant's symbols stay its own. llama.cpp
    // itself loads every variant to ask for its score, so this is safe on any CPU.
    const lib = koffi.load(join(directory, file));
    const score = lib.func("int ggml_backend_score(void)")() as number;
    if (score === 0) continue;
    const quantize = lib.func("void quantize_row_q8_0(const float *x, void *y, int64_t k)");
    const toFp16 = lib.func("void ggml_cpu_fp32_to_fp16(const float *x, void *y, int64_t n)");
    // Fills the fp16 → f32 table that the vec_dot functions read scales through.
    lib.func("void ggml_cpu_init(void)")();
    const getTraits = lib.func("const void *ggml_get_type_traits_cpu(int type)");
    const traitsOf = (type: number) =>
      koffi.decode(getTraits(type), CpuTraits) as { from_float: unknown; vec_dot: unknown; vec_dot_type: number };
    variants.push({
      name: match[1]!,
      score,
      quantizeRowQ8_0: (src) => into(quantize, src, new Uint8Array((src.length / 32) * Q8_0_BLOCK), src.length),
      fp32ToFp16: (src) => into(toFp16, src, new Uint16Array(src.length), src.length),
      vecDotType(type) {
        const traits = traitsOf(type);
        return traits.vec_dot ? traits.vec_dot_type : undefined;
      },
      fromFloat(type, src, bytes) {
        const f = traitsOf(type).from_float;
        if (!f) throw new Error(`ggml type ${type} has no CPU from_float`);
        const out = new Uint8Array(bytes);
        koffi.call(f, cpuRowProto, src, out, src.length);
        return out;
      },
      vecDot(type, n, x, y) {
        const f = traitsOf(type).vec_dot;
        if (!f) throw new Error(`ggml type ${type} has no CPU vec_dot`);
        const s = new Float32Array(1);
        koffi.call(f, vecDotProto, n, s, 0, x, 0, y, 0, 1);
        return s[0]!;
      },
    });
  }
  return variants.sort((a, b) => b.score - a.score);
}

let loaded: { base: GgmlBase; cpuVariants: GgmlCpuVariant[] } | { reason: string } | undefined;

// loaded on first use, so that a missing koffi fails the tests that need it with the install hint
let koffi: typeof Koffi;

function load() {
  if (!loaded) {
    try {
      koffi = createRequire(import.meta.url)("koffi") as typeof Koffi;
      const directory = findBinaryDirectory();
      loaded = { base: loadBase(directory), cpuVariants: loadCpuVariants(directory) };
    } catch (error) {
      loaded = { reason: `ggml binaries unavailable: ${(error as Error).message}` };
    }
  }
  return loaded;
}

/** libggml-base; throws, saying how to install it, where it cannot be loaded. */
export function ggmlBase(): GgmlBase {
  const l = load();
  if ("reason" in l) throw oracleMissing("ggml (node-llama-cpp's prebuilt libggml-base)", l.reason);
  return l.base;
}

/** The CPU backend variants this machine can run, the one llama.cpp would load first (at least one). */
export function ggmlCpuVariants(): GgmlCpuVariant[] {
  const l = load();
  if ("reason" in l) throw oracleMissing("ggml (node-llama-cpp's prebuilt libggml-cpu-*)", l.reason);
  if (l.cpuVariants.length === 0) throw new Error("no CPU backend variant of node-llama-cpp's prebuilt runs on this machine: llama.cpp cannot run here");
  return l.cpuVariants;
}
