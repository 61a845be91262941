import { createHash } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { GgufValue } from "../../src/gguf/types.js";
import { GgufMetadata } from "../../src/gguf/metadata.js";
import { gv, writeGguf } from "../../src/gguf/writer.js";
import { PRESETS } from "../../src/synth/presets.js";
import { buildVocab } from "../../src/synth/vocab.js";
import { TEST_CACHE } from "./models.js";

/**
 * Tokenizer metadata of the synthetic models, whole or edited, in memory or as vocabulary-only GGUF
 * files (no tensors: llama.cpp loads them with `vocabOnly`) for checking unusual vocabularies
 * against llama.cpp.
 */

/** The architecture keys llama.cpp reads before the vocabulary (values are irrelevant to tokenizing). */
const ARCHITECTURE: [string, GgufValue][] = [
  ["general.architecture", gv.str("smallthinker")],
  ["smallthinker.block_count", gv.u32(1)],
  ["smallthinker.context_length", gv.u32(4096)],
  ["smallthinker.embedding_length", gv.u32(64)],
  ["smallthinker.feed_forward_length", gv.u32(64)],
  ["smallthinker.expert_feed_forward_length", gv.u32(64)],
  ["smallthinker.expert_count", gv.u32(8)],
  ["smallthinker.expert_used_count", gv.u32(2)],
  ["smallthinker.attention.head_count", gv.u32(4)],
  ["smallthinker.attention.head_count_kv", gv.u32(2)],
  ["smallthinker.attention.key_length", gv.u32(16)],
  ["smallthinker.attention.value_length", gv.u32(16)],
  ["smallthinker.attention.layer_norm_rms_epsilon", gv.f32(1e-6)],
  ["smallthinker.rope.freq_base", gv.f32(10000)],
];

export type VocabKind = "qwen2" | number;

export function presetVocab(preset: "tiny" | "demo"): VocabKind {
  return PRESETS[preset]!.vocab;
}

const builtVocabularies = new Map<VocabKind, readonly [string, GgufValue][]>();

/**
 * Tokenizer metadata as the synthetic models carry it, optionally edited. Built once per kind: an
 * edit must replace values (entries.set), never change them in place.
 */
export function vocabMetadataEntries(
  kind: VocabKind,
  edit: (entries: Map<string, GgufValue>) => void = () => {},
): [string, GgufValue][] {
  let built = builtVocabularies.get(kind);
  if (!built) builtVocabularies.set(kind, (built = buildVocab({ kind }).metadata));
  const entries = new Map(built);
  edit(entries);
  return [...entries];
}

export function vocabMetadata(kind: VocabKind, edit?: (entries: Map<string, GgufValue>) => void): GgufMetadata {
  return new GgufMetadata(`synthetic ${kind} vocabulary`, new Map(vocabMetadataEntries(kind, edit)));
}

/** A cached vocabulary-only GGUF of an edited vocabulary, named by a hash of its metadata. */
export function editedVocabGguf(kind: VocabKind, edit: (entries: Map<string, GgufValue>) => void): string {
  const entries = vocabMetadataEntries(kind, edit);
  const hash = createHash("sha256").update(JSON.stringify(entries)).digest("hex").slice(0, 16);
  const path = join(TEST_CACHE, `tokenizer-vocab-${kind}-${hash}.gguf`);
  if (!existsSync(path)) {
    mkdirSync(TEST_CACHE, { recursive: true });
    writeGguf(path, { metadata: [...ARCHITECTURE, ...entries], tensors: [] });
  }
  return path;
}
