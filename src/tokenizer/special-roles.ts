import { GgufError } from "../gguf/errors.js";
import type { GgufMetadata } from "../gguf/metadata.js";
import { TokenAttribute } from "./token-attributes.js";

/**
 * Which tokens are BOS, EOS and end-of-generation, decided the way llama.cpp's vocabulary loader
 * does: ids from metadata, then tokens recognised by their text (which are also forced to CONTROL,
 * so they become matchable special tokens and are hidden when not rendering special tokens).
 */

const ROLES = ["eot", "eom", "fimPre", "fimSuf", "fimMid", "fimPad", "fimRep", "fimSep"] as const;
type Role = (typeof ROLES)[number];

/** Metadata keys per role; a later key overrides an earlier one, as llama.cpp reads them in this order. */
const ROLE_KEYS: Readonly<Record<Role, readonly string[]>> = {
  eot: ["tokenizer.ggml.eot_token_id"],
  eom: ["tokenizer.ggml.eom_token_id"],
  fimPre: ["tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"],
  fimSuf: ["tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"],
  fimMid: ["tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"],
  fimPad: ["tokenizer.ggml.fim_pad_token_id"],
  fimRep: ["tokenizer.ggml.fim_rep_token_id"],
  fimSep: ["tokenizer.ggml.fim_sep_token_id"],
};

/** Texts that give a token a role when metadata names none. */
const ROLE_TEXTS: Readonly<Record<Role, ReadonlySet<string>>> = {
  eot: new Set([
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
  ]),
  eom: new Set(["<|eom_id|>"]),
  fimPre: new Set(["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"]),
  fimSuf: new Set(["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"]),
  fimMid: new Set(["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"]),
  fimPad: new Set(["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
  fimRep: new Set(["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
  fimSep: new Set(["<|file_sep|>"]),
};

/** Tokens that end generation because of their text (llama.cpp issue 9606). */
const END_OF_GENERATION_TEXTS: ReadonlySet<string> = new Set([
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
  "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
  "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
]);

/** gpt-oss tokens llama.cpp always renders, whatever their type. */
const ALWAYS_RENDERED_TEXTS: ReadonlySet<string> = new Set(["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]);

/** Every text the rules above look for: most tokens are none of them and need no further look. */
const NAMED_TEXTS: ReadonlySet<string> = new Set([
  ...ROLES.flatMap((role) => [...ROLE_TEXTS[role]]),
  ...END_OF_GENERATION_TEXTS,
  ...ALWAYS_RENDERED_TEXTS,
]);

/** llama.cpp's defaults for gpt2-style vocabularies when the metadata names no BOS/EOS. */
const DEFAULT_BOS_EOS_ID = 11;

export interface SpecialRoles {
  bosId: number | null;
  eosId: number | null;
  endOfGeneration: Set<number>;
}

function tokenIdFromMetadata(metadata: GgufMetadata, key: string, vocabSize: number): number | undefined {
  const id = metadata.optionalInteger(key);
  if (id !== undefined && (id < 0 || id >= vocabSize)) {
    throw new GgufError(metadata.path, key, `token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
  }
  return id;
}

function forceControl(attributes: Uint8Array, id: number): void {
  attributes[id] = attributes[id]! | TokenAttribute.CONTROL;
}

/**
 * Resolves the roles and updates `attributes` in place. Where llama.cpp takes "the first match" in
 * its hash map's order (several texts naming one role), this takes the lowest id.
 */
export function resolveSpecialRoles(metadata: GgufMetadata, texts: readonly string[], attributes: Uint8Array): SpecialRoles {
  const size = texts.length;
  const fallback = DEFAULT_BOS_EOS_ID < size ? DEFAULT_BOS_EOS_ID : null;
  const bosId = tokenIdFromMetadata(metadata, "tokenizer.ggml.bos_token_id", size) ?? fallback;
  const eosId = tokenIdFromMetadata(metadata, "tokenizer.ggml.eos_token_id", size) ?? fallback;

  const roles = new Map<Role, number>();
  for (const role of ROLES) {
    for (const key of ROLE_KEYS[role]) {
      const id = tokenIdFromMetadata(metadata, key, size);
      if (id !== undefined) roles.set(role, id);
    }
  }
  const named = texts.flatMap((text, id) => (NAMED_TEXTS.has(text) ? [id] : []));
  for (const id of named) {
    for (const role of ROLES) {
      if (!roles.has(role) && ROLE_TEXTS[role].has(texts[id]!)) {
        roles.set(role, id);
        forceControl(attributes, id);
      }
    }
  }

  const endOfGeneration = new Set<number>();
  for (const role of ["fimPad", "fimRep", "fimSep"] as const) {
    const id = roles.get(role);
    if (id !== undefined) endOfGeneration.add(id);
  }
  for (const id of named) {
    if (END_OF_GENERATION_TEXTS.has(texts[id]!)) {
      endOfGeneration.add(id);
      forceControl(attributes, id);
    }
    if (ALWAYS_RENDERED_TEXTS.has(texts[id]!)) attributes[id] = TokenAttribute.USER_DEFINED;
  }
  for (const id of [eosId, roles.get("eot"), roles.get("eom")]) {
    if (id !== undefined && id !== null) endOfGeneration.add(id);
  }
  dropConversationalEnds(texts, attributes, endOfGeneration);
  return { bosId, eosId, endOfGeneration };
}

/**
 * llama.cpp's workarounds for vocabularies where a text above is not a real end: "<|end|>" ends a
 * message, not generation, next to gpt-oss's "<|return|>"/"<|call|>" or solar-open's
 * "<|calls|>"/"<|flush|>"; "</s>" is ordinary next to gemma4's "<|tool_response>".
 */
function dropConversationalEnds(texts: readonly string[], attributes: Uint8Array, endOfGeneration: Set<number>): void {
  const idOf = new Map([...endOfGeneration].map((id) => [texts[id]!, id]));
  const endId = idOf.get("<|end|>");
  const hasCall = idOf.has("<|call|>") || idOf.has("<|calls|>");
  if (endId !== undefined && hasCall && (idOf.has("<|return|>") || idOf.has("<|flush|>"))) {
    endOfGeneration.delete(endId);
    attributes[endId] = TokenAttribute.USER_DEFINED;
  }
  const closingId = idOf.get("</s>");
  if (closingId !== undefined && idOf.has("<|tool_response>")) {
    endOfGeneration.delete(closingId);
    attributes[closingId] = TokenAttribute.NORMAL;
  }
}
