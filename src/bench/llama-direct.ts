import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import koffi, { type TypeObject } from "koffi";

/**
 * A minimal llama.cpp runner: node-llama-cpp's prebuilt libllama called directly through koffi.
 * It exists for the settings node-llama-cpp does not expose, above all `use_extra_bufts = false`
 * (llama.cpp's `--no-repack`): with repacking, Q4_0 weights are copied out of the mmap into
 * anonymous memory, which a memory cap smaller than the model cannot hold.
 *
 * Everything runs synchronously on the calling thread; the library is loaded once per process.
 */

export interface LlamaDirectOptions {
  modelPath: string;
  threads: number;
  contextSize: number;
  /** Largest number of tokens one llama_decode call evaluates (prefill is split into such chunks). */
  batchSize: number;
  /** llama.cpp's extra buffer types, i.e. weight repacking; false is `--no-repack`. Default false. */
  useExtraBufts?: boolean;
  /** Memory-map the model file (default) rather than read it into allocated buffers. */
  mmap?: boolean;
}

export interface LlamaDirect {
  readonly vocabSize: number;
  /** Evaluates `tokens` after whatever the context already holds. */
  prefill(tokens: readonly number[]): void;
  /** Generates `count` tokens one at a time, each the argmax of the previous position's logits. */
  decodeGreedy(count: number): number[];
  /** A copy of the logits of the last evaluated position. */
  lastLogits(): Float32Array;
  /** Clears the KV cache: the next prefill starts at position 0. */
  reset(): void;
  close(): void;
}

/**
 * Struct layouts as this llama.cpp version's include/llama.h declares them (node-llama-cpp 3.22.1,
 * llama.cpp release v0.5.0), with each field's C offset and the struct's size, measured with
 * g++ against that header. Building the koffi struct checks koffi's layout against them; reading
 * the library's default parameters back through it checks the binary against the header.
 * Enums are C ints; function pointers are plain pointers (never set here).
 */
type Field = readonly [name: string, type: string, offset: number];

const MODEL_PARAMS: { size: number; fields: Field[] } = {
  size: 80,
  fields: [
    ["devices", "void *", 0],
    ["tensor_buft_overrides", "void *", 8],
    ["n_gpu_layers", "int32_t", 16],
    ["split_mode", "int32_t", 20],
    ["load_mode", "int32_t", 24],
    ["lazy_mode", "int32_t", 28],
    ["main_gpu", "int32_t", 32],
    ["tensor_split", "void *", 40],
    ["progress_callback", "void *", 48],
    ["progress_callback_user_data", "void *", 56],
    ["kv_overrides", "void *", 64],
    ["vocab_only", "bool", 72],
    ["check_tensors", "bool", 73],
    ["use_extra_bufts", "bool", 74],
    ["no_host", "bool", 75],
    ["no_alloc", "bool", 76],
    ["load_mtp", "bool", 77],
  ],
};

const CONTEXT_PARAMS: { size: number; fields: Field[] } = {
  size: 160,
  fields: [
    ["n_ctx", "uint32_t", 0],
    ["n_batch", "uint32_t", 4],
    ["n_ubatch", "uint32_t", 8],
    ["n_seq_max", "uint32_t", 12],
    ["n_rs_seq", "uint32_t", 16],
    ["n_outputs_max", "uint32_t", 20],
    ["n_outputs_max_per_seq", "uint32_t", 24],
    ["n_threads", "int32_t", 28],
    ["n_threads_batch", "int32_t", 32],
    ["ctx_type", "int32_t", 36],
    ["rope_scaling_type", "int32_t", 40],
    ["pooling_type", "int32_t", 44],
    ["attention_type", "int32_t", 48],
    ["flash_attn_type", "int32_t", 52],
    ["rope_freq_base", "float", 56],
    ["rope_freq_scale", "float", 60],
    ["yarn_ext_factor", "float", 64],
    ["yarn_attn_factor", "float", 68],
    ["yarn_beta_fast", "float", 72],
    ["yarn_beta_slow", "float", 76],
    ["yarn_orig_ctx", "uint32_t", 80],
    ["defrag_thold", "float", 84],
    ["cb_eval", "void *", 88],
    ["cb_eval_user_data", "void *", 96],
    ["type_k", "int32_t", 104],
    ["type_v", "int32_t", 108],
    ["abort_callback", "void *", 112],
    ["abort_callback_data", "void *", 120],
    ["embeddings", "bool", 128],
    ["offload_kqv", "bool", 129],
    ["no_perf", "bool", 130],
    ["op_offload", "bool", 131],
    ["swa_full", "bool", 132],
    ["kv_unified", "bool", 133],
    ["samplers", "void *", 136],
    ["n_samplers", "size_t", 144],
    ["ctx_other", "void *", 152],
  ],
};

const BATCH: { size: number; fields: Field[] } = {
  size: 56,
  fields: [
    ["n_tokens", "int32_t", 0],
    ["token", "void *", 8],
    ["embd", "void *", 16],
    ["pos", "void *", 24],
    ["n_seq_id", "void *", 32],
    ["seq_id", "void *", 40],
    ["logits", "void *", 48],
  ],
};

const QUANTIZE_PARAMS: { size: number; fields: Field[] } = {
  size: 64,
  fields: [
    ["nthread", "int32_t", 0],
    ["ftype", "int32_t", 4],
    ["output_tensor_type", "int32_t", 8],
    ["token_embedding_type", "int32_t", 12],
    ["allow_requantize", "bool", 16],
    ["quantize_output_tensor", "bool", 17],
    ["only_copy", "bool", 18],
    ["pure", "bool", 19],
    ["keep_split", "bool", 20],
    ["dry_run", "bool", 21],
    ["imatrix", "void *", 24],
    ["kv_overrides", "void *", 32],
    ["tt_overrides", "void *", 40],
    ["prune_layers", "void *", 48],
    ["max_buf_size", "size_t", 56],
  ],
};

const IMATRIX_ENTRY: { size: number; fields: Field[] } = {
  size: 24,
  fields: [
    ["name", "void *", 0],
    ["data", "void *", 8],
    ["size", "size_t", 16],
  ],
};

/** What llama_model_default_params() / llama_context_default_params() return in this version (null: a null pointer). */
const MODEL_DEFAULTS: Record<string, unknown> = {
  devices: null, tensor_buft_overrides: null, n_gpu_layers: -1, split_mode: 1, load_mode: -1, lazy_mode: 1, main_gpu: 0,
  tensor_split: null, progress_callback: null, progress_callback_user_data: null, kv_overrides: null,
  vocab_only: false, check_tensors: false, use_extra_bufts: true, no_host: false, no_alloc: false, load_mtp: false,
};

const CONTEXT_DEFAULTS: Record<string, unknown> = {
  n_ctx: 512, n_batch: 2048, n_ubatch: 512, n_seq_max: 1, n_rs_seq: 0, n_outputs_max: 0, n_outputs_max_per_seq: 1,
  n_threads: 4, n_threads_batch: 4, ctx_type: 0, rope_scaling_type: -1, pooling_type: -1, attention_type: -1, flash_attn_type: -1,
  rope_freq_base: 0, rope_freq_scale: 0, yarn_ext_factor: -1, yarn_attn_factor: -1, yarn_beta_fast: -1, yarn_beta_slow: -1,
  yarn_orig_ctx: 0, defrag_thold: -1, cb_eval: null, cb_eval_user_data: null, type_k: 1, type_v: 1,
  abort_callback: null, abort_callback_data: null, embeddings: false, offload_kqv: true, no_perf: true, op_offload: true,
  swa_full: true, kv_unified: false, samplers: null, n_samplers: 0, ctx_other: null,
};

/** llama_model_quantize_default_params() in this version (GGML_TYPE_COUNT = 43 means "the file type's choice"). */
const QUANTIZE_DEFAULTS: Record<string, unknown> = {
  nthread: 0, ftype: 7, output_tensor_type: 43, token_embedding_type: 43, allow_requantize: false, quantize_output_tensor: true,
  only_copy: false, pure: false, keep_split: false, dry_run: false, imatrix: null, kv_overrides: null, tt_overrides: null,
  prune_layers: null, max_buf_size: 8589934592,
};

const LLAMA_LOAD_MODE_NONE = 0;
const LLAMA_LOAD_MODE_MMAP = 1;
const LLAMA_LAZY_MODE_OFF = 0;
const LLAMA_FLASH_ATTN_TYPE_DISABLED = 0;
const GGML_LOG_LEVEL_WARN = 3;
const GGML_LOG_LEVEL_CONT = 5;

function checkedStruct(name: string, layout: { size: number; fields: Field[] }): TypeObject {
  const type = koffi.struct(name, Object.fromEntries(layout.fields.map(([field, fieldType]) => [field, fieldType])));
  for (const [field, , offset] of layout.fields) {
    const actual = koffi.offsetof(type, field);
    if (actual !== offset) throw new Error(`${name}.${field}: koffi places it at byte ${actual}, llama.h at byte ${offset}`);
  }
  if (koffi.sizeof(type) !== layout.size) throw new Error(`${name}: koffi makes it ${koffi.sizeof(type)} bytes, llama.h ${layout.size}`);
  return type;
}

function checkDefaults(name: string, actual: Record<string, unknown>, expected: Record<string, unknown>): void {
  const mismatches = Object.entries(expected)
    .filter(([field, value]) => {
      const read = typeof actual[field] === "bigint" ? Number(actual[field]) : actual[field];
      return !Object.is(read, value);
    })
    .map(([field, value]) => `${field} = ${String(actual[field])} (expected ${String(value)})`);
  if (mismatches.length > 0) {
    throw new Error(`${name}() does not match the llama.h layout this driver was written for (another llama.cpp version?): ${mismatches.join(", ")}`);
  }
}

/** The directory of node-llama-cpp's prebuilt CPU binaries: the one holding libllama.v*.so. */
function findBinaryDirectory(): { directory: string; library: string } {
  const require = createRequire(import.meta.url);
  const bins = join(dirname(require.resolve("@node-llama-cpp/linux-x64")), "..", "bins");
  const found = readdirSync(bins, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => join(bins, entry.name))
    .flatMap((directory) => readdirSync(directory).filter((file) => /^libllama\.v[\d.]+\.so$/.test(file)).map((file) => ({ directory, library: join(directory, file) })));
  if (found.length !== 1) throw new Error(`expected one ${bins}/*/libllama.v*.so, found ${found.length}`);
  return found[0]!;
}

/** llama.cpp's warnings and errors since the last call into it, quoted when that call fails. */
const recentLog: string[] = [];

function loadLibrary() {
  const { directory, library } = findBinaryDirectory();
  const lib = koffi.load(library);
  const ModelParams = checkedStruct("llama_model_params", MODEL_PARAMS);
  const QuantizeParams = checkedStruct("llama_model_quantize_params", QUANTIZE_PARAMS);
  const ImatrixEntry = checkedStruct("llama_model_imatrix_data", IMATRIX_ENTRY);
  const ContextParams = checkedStruct("llama_context_params", CONTEXT_PARAMS);
  const Batch = checkedStruct("llama_batch", BATCH);
  // Both structs are returned through a caller-provided buffer (they are larger than 16 bytes).
  // Spare room after it means a library whose struct grew writes into that room, not past the
  // buffer, and checkDefaults reports the mismatch.
  const returned = (params: TypeObject) => koffi.struct({ params, spare: koffi.array("uint8_t", 256) });
  const api = {
    regCount: lib.func("size_t ggml_backend_reg_count(void)"),
    devCount: lib.func("size_t ggml_backend_dev_count(void)"),
    loadAllFromPath: lib.func("void ggml_backend_load_all_from_path(const char *dir_path)"),
    backendInit: lib.func("void llama_backend_init(void)"),
    logSet: lib.func("void llama_log_set(void *callback, void *user_data)"),
    modelDefaults: lib.func("llama_model_default_params", returned(ModelParams), []),
    contextDefaults: lib.func("llama_context_default_params", returned(ContextParams), []),
    loadModel: lib.func("llama_model_load_from_file", "void *", ["const char *", ModelParams]),
    freeModel: lib.func("void llama_model_free(void *model)"),
    initContext: lib.func("llama_init_from_model", "void *", ["void *", ContextParams]),
    freeContext: lib.func("void llama_free(void *ctx)"),
    vocab: lib.func("void *llama_model_get_vocab(void *model)"),
    vocabTokens: lib.func("int32_t llama_vocab_n_tokens(void *vocab)"),
    memory: lib.func("void *llama_get_memory(void *ctx)"),
    memoryClear: lib.func("void llama_memory_clear(void *mem, bool data)"),
    decode: lib.func("llama_decode", "int32_t", ["void *", Batch]),
    logitsIth: lib.func("void *llama_get_logits_ith(void *ctx, int32_t i)"),
    quantizeDefaults: lib.func("llama_model_quantize_default_params", returned(QuantizeParams), []),
    quantize: lib.func("llama_model_quantize", "uint32_t", ["const char *", "const char *", koffi.pointer(QuantizeParams)]),
  };

  // Forwards warnings and errors to stderr and drops the verbose rest. llama.cpp logs from the
  // thread that calls into it (this one), so the JS callback never runs on a foreign thread.
  // It stays registered for the life of the process: the logger is global to the library.
  let keepContinuation = false;
  const onLog = (level: number, text: string) => {
    const keep = level === GGML_LOG_LEVEL_CONT ? keepContinuation : level >= GGML_LOG_LEVEL_WARN;
    keepContinuation = keep;
    if (!keep) return;
    process.stderr.write(text);
    recentLog.push(text.trim());
    if (recentLog.length > 5) recentLog.shift();
  };
  const LogCallback = koffi.proto("void llama_direct_log(int level, const char *text, void *user_data)");
  api.logSet(koffi.register(onLog, koffi.pointer(LogCallback)), null);

  // The prebuilt loads its CPU backend (the best variant for this CPU) dynamically, as the
  // node-llama-cpp addon does; a process that already loaded it (node-llama-cpp) keeps its own.
  if (Number(api.regCount()) === 0) api.loadAllFromPath(directory);
  api.backendInit();
  if (Number(api.devCount()) === 0) throw new Error(`no ggml backend device could be loaded from ${directory}`);

  const modelDefaults = (api.modelDefaults() as { params: Record<string, unknown> }).params;
  const contextDefaults = (api.contextDefaults() as { params: Record<string, unknown> }).params;
  checkDefaults("llama_model_default_params", modelDefaults, MODEL_DEFAULTS);
  checkDefaults("llama_context_default_params", contextDefaults, CONTEXT_DEFAULTS);
  const quantizeDefaults = (api.quantizeDefaults() as { params: Record<string, unknown> }).params;
  checkDefaults("llama_model_quantize_default_params", quantizeDefaults, QUANTIZE_DEFAULTS);
  return { api, modelDefaults, contextDefaults, quantizeDefaults, ImatrixEntry };
}

let library: ReturnType<typeof loadLibrary> | undefined;

function failure(what: string): Error {
  const detail = recentLog.splice(0).join(" | ");
  return new Error(detail ? `${what}: ${detail}` : what);
}

export function openLlamaDirect(options: LlamaDirectOptions): LlamaDirect {
  library ??= loadLibrary();
  const { api, modelDefaults, contextDefaults } = library;
  recentLog.length = 0;
  const model = api.loadModel(options.modelPath, {
    ...modelDefaults,
    // CPU only, as node-llama-cpp with `gpu: false` (the prebuilt has no GPU backend anyway).
    n_gpu_layers: 0,
    load_mode: options.mmap === false ? LLAMA_LOAD_MODE_NONE : LLAMA_LOAD_MODE_MMAP,
    // node-llama-cpp's default too: every tensor is read up front (or mapped), none on demand.
    lazy_mode: LLAMA_LAZY_MODE_OFF,
    use_extra_bufts: options.useExtraBufts ?? false,
  }) as bigint | null;
  if (!model) throw failure(`llama.cpp could not load ${options.modelPath}`);
  const ctx = api.initContext(model, {
    ...contextDefaults,
    n_ctx: options.contextSize,
    n_batch: options.batchSize,
    // One physical batch per llama_decode call, as node-llama-cpp sets it.
    n_ubatch: options.batchSize,
    n_threads: options.threads,
    n_threads_batch: options.threads,
    // node-llama-cpp's context defaults, so both drivers compute the same thing.
    flash_attn_type: LLAMA_FLASH_ATTN_TYPE_DISABLED,
    swa_full: false,
  }) as bigint | null;
  if (!ctx) {
    api.freeModel(model);
    throw failure(`llama.cpp could not create a context of ${options.contextSize} tokens`);
  }
  const vocabSize = api.vocabTokens(api.vocab(model)) as number;
  // llama_decode reads the tokens through the batch's pointer: native memory that stays put.
  const tokenBuffer = koffi.alloc("int32_t", options.batchSize) as bigint;
  const tokenView = new Int32Array(koffi.view(tokenBuffer, options.batchSize * 4));
  let closed = false;

  const evaluate = (tokens: readonly number[]) => {
    for (let start = 0; start < tokens.length; start += options.batchSize) {
      const chunk = tokens.slice(start, start + options.batchSize);
      tokenView.set(chunk);
      recentLog.length = 0;
      // No positions, sequence ids or output flags: llama.cpp continues sequence 0 and outputs
      // only the chunk's last position, as with llama_batch_get_one.
      const status = api.decode(ctx, { n_tokens: chunk.length, token: tokenBuffer, embd: null, pos: null, n_seq_id: null, seq_id: null, logits: null }) as number;
      if (status !== 0) throw failure(`llama_decode returned ${status}${status === 1 ? " (context full)" : ""}`);
    }
  };
  const logitsView = () => {
    const pointer = api.logitsIth(ctx, -1) as bigint | null;
    if (!pointer) throw failure("llama.cpp has no logits (nothing evaluated yet)");
    return new Float32Array(koffi.view(pointer, vocabSize * 4));
  };
  const argmax = (logits: Float32Array) => {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  };

  return {
    vocabSize,
    prefill(tokens) {
      evaluate(tokens);
    },
    decodeGreedy(count) {
      const generated: number[] = [];
      for (let i = 0; i < count; i++) {
        const token = argmax(logitsView());
        generated.push(token);
        evaluate([token]);
      }
      return generated;
    },
    lastLogits() {
      return Float32Array.from(logitsView());
    },
    reset() {
      api.memoryClear(api.memory(ctx), true);
    },
    close() {
      if (closed) return;
      closed = true;
      koffi.free(tokenBuffer);
      api.freeContext(ctx);
      api.freeModel(model);
    },
  };
}

export interface LlamaQuantizeOptions {
  /** llama_ftype, e.g. 15 for Q4_K_M (include/llama.h's LLAMA_FTYPE_MOSTLY_*). */
  ftype: number;
  /** Importance weights per tensor name (length: the tensor's row length × its expert count). */
  imatrix?: ReadonlyMap<string, Float32Array>;
  /** llama-quantize's --pure: every tensor of the file type's default type. */
  pure?: boolean;
  threads?: number;
}

/**
 * llama.cpp's own quantizer (`llama_model_quantize`, what llama-quantize runs) on a GGUF file, with
 * llama.cpp's default per-tensor mix for the file type unless `pure`.
 */
export function quantizeWithLlama(input: string, output: string, options: LlamaQuantizeOptions): void {
  library ??= loadLibrary();
  const { api, quantizeDefaults, ImatrixEntry } = library;
  const entries = [...(options.imatrix ?? new Map<string, Float32Array>())];
  // A null-terminated array of {name, data, size}; the names and data must outlive the call.
  const table = entries.length > 0 ? koffi.alloc(ImatrixEntry, entries.length + 1) as bigint : null;
  const buffers: bigint[] = [];
  try {
    if (table) {
      const rows = entries.map(([name, data]) => {
        const text = new TextEncoder().encode(`${name}\0`);
        const nameBuffer = koffi.alloc("uint8_t", text.length) as bigint;
        const buffer = koffi.alloc("float", data.length) as bigint;
        buffers.push(nameBuffer, buffer);
        new Uint8Array(koffi.view(nameBuffer, text.length)).set(text);
        new Float32Array(koffi.view(buffer, data.length * 4)).set(data);
        return { name: nameBuffer, data: buffer, size: data.length };
      });
      koffi.encode(table, koffi.array(ImatrixEntry, rows.length + 1), [...rows, { name: null, data: null, size: 0 }]);
    }
    recentLog.length = 0;
    const status = api.quantize(input, output, {
      ...quantizeDefaults,
      ftype: options.ftype,
      pure: options.pure ?? false,
      nthread: options.threads ?? 2,
      imatrix: table,
    }) as number;
    if (status !== 0) throw failure(`llama_model_quantize(${input} → ${output}, ftype ${options.ftype}) failed`);
  } finally {
    for (const buffer of buffers) koffi.free(buffer);
    if (table) koffi.free(table);
  }
}

/**
 * llama.cpp's file types (include/llama.h LLAMA_FTYPE_MOSTLY_*) that its quantizer writes, and
 * whether it refuses them without an importance matrix (tensor_requires_imatrix in llama-quant.cpp).
 */
export const LLAMA_FTYPES: readonly { name: string; ftype: number; imatrix: boolean }[] = [
  { name: "F16", ftype: 1, imatrix: false },
  { name: "Q4_0", ftype: 2, imatrix: false },
  { name: "Q4_1", ftype: 3, imatrix: false },
  { name: "Q8_0", ftype: 7, imatrix: false },
  { name: "Q5_0", ftype: 8, imatrix: false },
  { name: "Q5_1", ftype: 9, imatrix: false },
  { name: "Q2_K", ftype: 10, imatrix: false },
  { name: "Q3_K_S", ftype: 11, imatrix: false },
  { name: "Q3_K_M", ftype: 12, imatrix: false },
  { name: "Q3_K_L", ftype: 13, imatrix: false },
  { name: "Q4_K_S", ftype: 14, imatrix: false },
  { name: "Q4_K_M", ftype: 15, imatrix: false },
  { name: "Q5_K_S", ftype: 16, imatrix: false },
  { name: "Q5_K_M", ftype: 17, imatrix: false },
  { name: "Q6_K", ftype: 18, imatrix: false },
  { name: "IQ2_XXS", ftype: 19, imatrix: true },
  { name: "IQ2_XS", ftype: 20, imatrix: true },
  { name: "Q2_K_S", ftype: 21, imatrix: true },
  { name: "IQ3_XS", ftype: 22, imatrix: true },
  { name: "IQ3_XXS", ftype: 23, imatrix: true },
  { name: "IQ1_S", ftype: 24, imatrix: true },
  { name: "IQ4_NL", ftype: 25, imatrix: false },
  { name: "IQ3_S", ftype: 26, imatrix: false },
  { name: "IQ3_M", ftype: 27, imatrix: false },
  { name: "IQ2_S", ftype: 28, imatrix: true },
  { name: "IQ2_M", ftype: 29, imatrix: true },
  { name: "IQ4_XS", ftype: 30, imatrix: false },
  { name: "IQ1_M", ftype: 31, imatrix: true },
  { name: "BF16", ftype: 32, imatrix: false },
  { name: "TQ1_0", ftype: 36, imatrix: false },
  { name: "TQ2_0", ftype: 37, imatrix: false },
  { name: "MXFP4_MOE", ftype: 38, imatrix: false },
  { name: "Q1_0", ftype: 40, imatrix: false },
  { name: "Q2_0", ftype: 41, imatrix: false },
];
