import { existsSync, mkdirSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { GgmlType, ggmlTypeName } from "../../src/gguf/types.js";
import { PRESETS, RoutingSkew, ModelShape, SynthOptions } from "../../src/synth/presets.js";
import { splitSuffix } from "../../src/gguf/split.js";
import { synthesize } from "../../src/synth/generate.js";
import { GgufFile } from "../../src/gguf/reader.js";
import { quantizeWithLlama } from "../../src/bench/llama-direct.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const TEST_CACHE = join(root, ".cache", "test-models");

export interface TestModelSpec {
  preset: keyof typeof PRESETS | string;
  type?: GgmlType;
  seed?: number;
  shape?: Partial<ModelShape>;
  routing?: RoutingSkew | null;
  sparsity?: number | null;
  /** The generator's file options (layout, predictor, split, header only, name). */
  file?: Pick<SynthOptions, "layout" | "predictor" | "split" | "headerOnly" | "name">;
}

/** A synthetic model for tests, generated once into .cache/test-models and reused. */
export function testModel(spec: TestModelSpec): string {
  const type = spec.type ?? GgmlType.F32;
  const seed = spec.seed ?? 1;
  const overrides = spec.shape ? Object.entries(spec.shape).map(([k, v]) => `${k}=${v}`).join(",") : "";
  const skew = spec.routing ? `skew${spec.routing.hotFraction}-${spec.routing.hotFrequency}` : "";
  const sparsity = spec.sparsity != null ? `sp${spec.sparsity}` : "";
  const file = spec.file ? Object.entries(spec.file).map(([k, v]) => `${k}=${typeof v === "object" ? Object.values(v).join("x") : v}`).join(",") : "";
  const name = [spec.preset, ggmlTypeName(type), `s${seed}`, overrides, skew, sparsity, file].filter(Boolean).join("-");
  const written = join(TEST_CACHE, `${name.replace(/[^A-Za-z0-9_.=,-]/g, "_")}.gguf`);
  const split = spec.file?.split ?? 1;
  // A split model is opened from its first part.
  const path = split > 1 ? written.replace(/\.gguf$/, splitSuffix(0, split)) : written;
  if (!existsSync(path)) {
    mkdirSync(TEST_CACHE, { recursive: true });
    const base = PRESETS[spec.preset];
    if (!base) throw new Error(`unknown preset ${spec.preset}`);
    synthesize(written, {
      shape: { ...base, ...spec.shape },
      type,
      seed,
      routing: spec.routing ?? null,
      sparsity: spec.sparsity ?? null,
      ...spec.file,
    });
  }
  return path;
}

/** Positive pseudo-random importance weights for every matrix of a GGUF (a stand-in for llama-imatrix's output). */
export function syntheticImatrix(path: string, seed = 5): Map<string, Float32Array> {
  const file = GgufFile.open(path);
  try {
    let s = seed >>> 0 || 1;
    const next = () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 2 ** 32;
    };
    const imatrix = new Map<string, Float32Array>();
    for (const t of file.tensors) {
      // One weight per input column of each expert (llama.cpp's layout: row length × experts).
      if (t.dims.length >= 2) imatrix.set(t.name, Float32Array.from({ length: t.dims[0]! * (t.dims[2] ?? 1) }, () => 0.5 + next()));
    }
    return imatrix;
  } finally {
    file.close();
  }
}

/**
 * `spec`'s model quantized by llama.cpp's own quantizer (llama_model_quantize, the default per-tensor
 * mix of the file type unless `pure`), generated once into the cache.
 */
export function llamaQuantizedModel(spec: TestModelSpec, fileType: { name: string; ftype: number; imatrix: boolean }, pure = false): string {
  const source = testModel(spec);
  const path = source.replace(/\.gguf$/, `-llama-${fileType.name}${pure ? "-pure" : ""}.gguf`);
  if (!existsSync(path)) {
    quantizeWithLlama(source, `${path}.partial`, { ftype: fileType.ftype, pure, imatrix: fileType.imatrix ? syntheticImatrix(source) : undefined });
    renameSync(`${path}.partial`, path);
  }
  return path;
}
