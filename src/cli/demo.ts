import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { GgmlType } from "../gguf/types.js";
import { PRESETS } from "../synth/presets.js";
import { synthesize } from "../synth/generate.js";

/** Bump when the demo model's recipe changes, so stale cached copies are not used. */
const DEMO_VERSION = 1;

function cacheDirectory(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "smallthinker");
}

/**
 * The built-in demo model: a small SmallThinker-architecture GGUF with the real Qwen2 vocabulary and
 * seeded random weights, generated on first use and cached.
 */
export function demoModelPath(log: (line: string) => void): string {
  const dir = cacheDirectory();
  const path = join(dir, `demo-v${DEMO_VERSION}.gguf`);
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    log(`Generating the demo model once at ${path} …`);
    synthesize(path, { shape: PRESETS.demo!, type: GgmlType.Q8_0, seed: 2025, routing: { hotFraction: 0.25, hotFrequency: 0.45 }, sparsity: 0.65, name: "SmallThinker demo (random weights)" });
  }
  return path;
}
