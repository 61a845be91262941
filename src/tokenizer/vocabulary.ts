import { GgufError } from "../gguf/errors.js";
import type { GgufMetadata } from "../gguf/metadata.js";
import type { MergeRanks } from "./bpe.js";
import { resolveSpecialRoles } from "./special-roles.js";
import { MATCHED_BEFORE_BPE, TokenAttribute, attributeOfTokenType } from "./token-attributes.js";

/** Pre-tokenizer names llama.cpp maps to its Qwen2 pre-tokenizer with the same detokenizer settings. */
const QWEN2_PRE_TOKENIZERS: ReadonlySet<string> = new Set(["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2"]);

/** Everything the tokenizer needs from GGUF metadata, checked. */
export interface Vocabulary {
  /** Token texts as stored (byte-level spelling for normal tokens). */
  readonly texts: readonly string[];
  /** TokenAttribute bits per token. */
  readonly attributes: Uint8Array;
  readonly idOfText: ReadonlyMap<string, number>;
  readonly mergeRanks: MergeRanks;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly endOfGeneration: ReadonlySet<number>;
  /** Tokens matched as whole strings before BPE, in llama.cpp's matching order: longest (in bytes) first. */
  readonly specialTokens: readonly number[];
}

function requireSupportedModel(metadata: GgufMetadata): void {
  const model = metadata.getString("tokenizer.ggml.model");
  if (model !== "gpt2") {
    throw new GgufError(metadata.path, "tokenizer.ggml.model", `unsupported tokenizer model "${model}" (supported: gpt2, byte-level BPE)`);
  }
  const pre = metadata.optionalString("tokenizer.ggml.pre");
  if (pre === undefined) {
    throw new GgufError(metadata.path, "tokenizer.ggml.pre", "missing: the pre-tokenizer must be named (supported: qwen2)");
  }
  if (!QWEN2_PRE_TOKENIZERS.has(pre)) {
    throw new GgufError(metadata.path, "tokenizer.ggml.pre", `unsupported pre-tokenizer "${pre}" (supported: ${[...QWEN2_PRE_TOKENIZERS].join(", ")})`);
  }
  // llama.cpp would strip a space from the first decoded token; no byte-level vocabulary asks for it.
  if (metadata.optionalBool("tokenizer.ggml.add_space_prefix")) {
    throw new GgufError(metadata.path, "tokenizer.ggml.add_space_prefix", "true is not supported for gpt2 vocabularies");
  }
}

/** Empty texts are renamed as llama.cpp does, so every token stays addressable by its text. */
function readTexts(metadata: GgufMetadata): { texts: string[]; idOfText: Map<string, number> } {
  const key = "tokenizer.ggml.tokens";
  const texts = metadata.getStringArray(key).map((text, id) => (text === "" ? `[EMPTY_${id}]` : text));
  if (texts.length === 0) throw new GgufError(metadata.path, key, "the vocabulary is empty");
  const idOfText = new Map<string, number>();
  texts.forEach((text, id) => {
    const earlier = idOfText.get(text);
    if (earlier !== undefined) {
      throw new GgufError(metadata.path, key, `tokens ${earlier} and ${id} are both ${JSON.stringify(text)}`);
    }
    idOfText.set(text, id);
  });
  return { texts, idOfText };
}

function readAttributes(metadata: GgufMetadata, size: number): Uint8Array {
  const key = "tokenizer.ggml.token_type";
  const attributes = new Uint8Array(size);
  if (!metadata.has(key)) return attributes.fill(TokenAttribute.NORMAL);
  const types = metadata.getNumberArray(key);
  if (types.length < size) {
    throw new GgufError(metadata.path, key, `has ${types.length} entries for ${size} tokens`);
  }
  for (let id = 0; id < size; id++) {
    const type = types[id]!;
    if (!Number.isInteger(type)) throw new GgufError(metadata.path, key, `entry ${id} is ${type}, not an integer type`);
    attributes[id] = attributeOfTokenType(type);
  }
  return attributes;
}

/**
 * A merge "left right" is split at its first space after the first character, as llama.cpp does,
 * so the whole line is the key a (left, right) lookup builds; the first line for a pair wins.
 */
function readMergeRanks(metadata: GgufMetadata): Map<string, number> {
  const ranks = new Map<string, number>();
  metadata.getStringArray("tokenizer.ggml.merges").forEach((merge, rank) => {
    if (merge.indexOf(" ", 1) > 0 && !ranks.has(merge)) ranks.set(merge, rank);
  });
  return ranks;
}

const utf8 = new TextEncoder();

function specialTokensInMatchingOrder(texts: readonly string[], attributes: Uint8Array): number[] {
  const ids: number[] = [];
  for (let id = 0; id < texts.length; id++) if (attributes[id]! & MATCHED_BEFORE_BPE) ids.push(id);
  const byteLength = new Map(ids.map((id) => [id, utf8.encode(texts[id]!).length]));
  return ids.sort((a, b) => byteLength.get(b)! - byteLength.get(a)! || a - b);
}

export function readVocabulary(metadata: GgufMetadata): Vocabulary {
  requireSupportedModel(metadata);
  const { texts, idOfText } = readTexts(metadata);
  const attributes = readAttributes(metadata, texts.length);
  const mergeRanks = readMergeRanks(metadata);
  const { bosId, eosId, endOfGeneration } = resolveSpecialRoles(metadata, texts, attributes);
  return {
    texts,
    attributes,
    idOfText,
    mergeRanks,
    bosId,
    eosId,
    addBos: metadata.optionalBool("tokenizer.ggml.add_bos_token") ?? false,
    addEos: metadata.optionalBool("tokenizer.ggml.add_eos_token") ?? false,
    endOfGeneration,
    specialTokens: specialTokensInMatchingOrder(texts, attributes),
  };
}
