import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import { GgufValue, GgufValueType } from "../../src/gguf/types.js";
import { GgufMetadata } from "../../src/gguf/metadata.js";
import { gv } from "../../src/gguf/writer.js";
import { PRESETS } from "../../src/synth/presets.js";
import { buildVocab } from "../../src/synth/vocab.js";
import { TEST_CACHE } from "./models.js";

/**
 * Vocabulary-only GGUF files (metadata, no tensors) for tokenizer tests: llama.cpp loads them with
 * `vocabOnly`, so the oracle needs no weights. They carry exactly the tokenizer metadata that
 * `buildVocab` gives the synthetic models of a preset (`tiny`: 1000 merges; `demo`: the real Qwen2).
 *
 * Written here rather than through src/gguf's writeGguf because that writer cannot yet grow its
 * header buffer past 64 KiB (ByteSink reads `this.view` before `reserve` replaces it).
 */

class HeaderBytes {
  private chunks: Uint8Array[] = [];
  private readonly encoder = new TextEncoder();
  length = 0;

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }
  private scalar(size: number, write: (view: DataView) => void): void {
    const bytes = new Uint8Array(size);
    write(new DataView(bytes.buffer));
    this.push(bytes);
  }
  u32(v: number): void { this.scalar(4, (d) => d.setUint32(0, v, true)); }
  i32(v: number): void { this.scalar(4, (d) => d.setInt32(0, v, true)); }
  u64(v: number): void { this.scalar(8, (d) => d.setBigUint64(0, BigInt(v), true)); }
  f32(v: number): void { this.scalar(4, (d) => d.setFloat32(0, v, true)); }
  u8(v: number): void { this.scalar(1, (d) => d.setUint8(0, v)); }
  string(s: string): void {
    const bytes = this.encoder.encode(s);
    this.u64(bytes.length);
    this.push(bytes);
  }
  zeros(n: number): void { this.push(new Uint8Array(n)); }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }
}

function writeItem(sink: HeaderBytes, type: GgufValueType, value: unknown): void {
  switch (type) {
    case GgufValueType.UINT32: return sink.u32(value as number);
    case GgufValueType.INT32: return sink.i32(value as number);
    case GgufValueType.FLOAT32: return sink.f32(value as number);
    case GgufValueType.BOOL: return sink.u8(value ? 1 : 0);
    case GgufValueType.STRING: return sink.string(value as string);
    default: throw new Error(`tokenizer test GGUF: value type ${GgufValueType[type]} not supported`);
  }
}

function writeValue(sink: HeaderBytes, value: GgufValue): void {
  sink.u32(value.type);
  if (value.type !== GgufValueType.ARRAY) return writeItem(sink, value.type, value.value);
  sink.u32(value.itemType);
  sink.u64(value.value.length);
  for (const item of value.value) writeItem(sink, value.itemType, item);
}

const ALIGNMENT = 32;

export function writeMetadataOnlyGguf(path: string, metadata: ReadonlyArray<readonly [string, GgufValue]>): void {
  const sink = new HeaderBytes();
  sink.u32(0x46554747);
  sink.u32(3);
  sink.u64(0);
  sink.u64(metadata.length);
  for (const [key, value] of metadata) {
    sink.string(key);
    writeValue(sink, value);
  }
  sink.zeros((ALIGNMENT - (sink.length % ALIGNMENT)) % ALIGNMENT);
  const partial = `${path}.partial-${process.pid}`;
  const fd = openSync(partial, "w");
  try {
    const bytes = sink.bytes();
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, done);
  } finally {
    closeSync(fd);
  }
  renameSync(partial, path);
}

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

/**
 * A cached vocabulary-only GGUF. An edited vocabulary is named by a hash of its metadata, so a
 * changed edit never reuses a stale file.
 */
export function vocabGguf(kind: VocabKind, edit?: (entries: Map<string, GgufValue>) => void): string {
  const edited = edit ? vocabMetadataEntries(kind, edit) : undefined;
  const suffix = edited ? `-${createHash("sha256").update(JSON.stringify(edited)).digest("hex").slice(0, 16)}` : "";
  const path = join(TEST_CACHE, `tokenizer-vocab-${kind}${suffix}.gguf`);
  if (!existsSync(path)) {
    mkdirSync(TEST_CACHE, { recursive: true });
    writeMetadataOnlyGguf(path, [...ARCHITECTURE, ...(edited ?? vocabMetadataEntries(kind))]);
  }
  return path;
}
