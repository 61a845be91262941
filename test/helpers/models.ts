import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { GgmlType, ggmlTypeName } from "../../src/gguf/types.js";
import { PRESETS, RoutingSkew, ModelShape } from "../../src/synth/presets.js";
import { synthesize } from "../../src/synth/generate.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const TEST_CACHE = join(root, ".cache", "test-models");

export interface TestModelSpec {
  preset: keyof typeof PRESETS | string;
  type?: GgmlType;
  seed?: number;
  shape?: Partial<ModelShape>;
  routing?: RoutingSkew | null;
  sparsity?: number | null;
}

/** A synthetic model for tests, generated once into .cache/test-models and reused. */
export function testModel(spec: TestModelSpec): string {
  const type = spec.type ?? GgmlType.F32;
  const seed = spec.seed ?? 1;
  const overrides = spec.shape ? Object.entries(spec.shape).map(([k, v]) => `${k}=${v}`).join(",") : "";
  const skew = spec.routing ? `skew${spec.routing.hotFraction}-${spec.routing.hotFrequency}` : "";
  const sparsity = spec.sparsity != null ? `sp${spec.sparsity}` : "";
  const name = [spec.preset, ggmlTypeName(type), `s${seed}`, overrides, skew, sparsity].filter(Boolean).join("-");
  const path = join(TEST_CACHE, `${name.replace(/[^A-Za-z0-9_.=,-]/g, "_")}.gguf`);
  if (!existsSync(path)) {
    mkdirSync(TEST_CACHE, { recursive: true });
    const base = PRESETS[spec.preset];
    if (!base) throw new Error(`unknown preset ${spec.preset}`);
    synthesize(path, {
      shape: { ...base, ...spec.shape },
      type,
      seed,
      routing: spec.routing ?? null,
      sparsity: spec.sparsity ?? null,
    });
  }
  return path;
}
