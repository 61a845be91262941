import type { GgufMetadata } from "../gguf/metadata.js";
import { mergeWord } from "./bpe.js";
import { toByteLevel } from "./byte-level.js";
import { qwen2PreTokens } from "./pretokenizer.js";
import { splitOnSpecialTokens, type Fragment } from "./special-tokens.js";
import { HIDDEN_UNLESS_RENDERED, MATCHED_BEFORE_BPE } from "./token-attributes.js";
import { detokenizedBytes } from "./token-bytes.js";
import { readVocabulary, type Vocabulary } from "./vocabulary.js";

export interface EncodeOptions {
  /**
   * Recognise CONTROL tokens written in the text, such as "<|im_start|>" (default true). USER_DEFINED
   * tokens ("<think>") are recognised either way, as in llama.cpp. See `plainText` for text in
   * which no special token may be recognised.
   */
  parseSpecial?: boolean;
  /**
   * Recognise no special token at all, not even USER_DEFINED ones: "<think>" becomes "<", "think",
   * ">" (transformers' split_special_tokens). For text that must stay text, such as what a client
   * sent; overrides `parseSpecial`.
   */
  plainText?: boolean;
  /** Prepend BOS; defaults to the metadata's tokenizer.ggml.add_bos_token (false if absent). */
  addBos?: boolean;
  /** Append EOS; defaults to the metadata's tokenizer.ggml.add_eos_token (false if absent). */
  addEos?: boolean;
}

/**
 * A piece of a prompt built from several sources. `special`: whether special-token text in it becomes
 * special tokens (the template's own markup) or stays text (what a user wrote).
 */
export interface TextSegment {
  text: string;
  special: boolean;
}

export type SegmentEncodeOptions = Pick<EncodeOptions, "addBos" | "addEos">;

export interface DecodeOptions {
  /** Write CONTROL tokens as their text (default true); false leaves them out. */
  renderSpecial?: boolean;
}

/** Pre-token pieces repeat (words, indentation); past this many distinct ones the cache starts over. */
const PIECE_CACHE_LIMIT = 65_536;
/** Longer pieces (a paragraph without spaces) rarely repeat and are not worth keeping. */
const CACHED_PIECE_MAX_LENGTH = 256;
const NOTHING = new Uint8Array(0);

/**
 * Byte-level BPE tokenizer for GGUF vocabularies with the Qwen2 pre-tokenizer, producing the same
 * token ids as llama.cpp (`llama_tokenize`) and the same text as its detokenizer.
 */
export class Tokenizer {
  private readonly pieceIds = new Map<string, readonly number[]>();
  private readonly bytesOfToken: (Uint8Array | undefined)[];
  private readonly userDefinedTokens: readonly number[];
  private specialTexts: readonly string[] | undefined;

  private constructor(private readonly vocabulary: Vocabulary) {
    this.bytesOfToken = new Array(vocabulary.texts.length);
    this.userDefinedTokens = vocabulary.specialTokens.filter((id) => !(vocabulary.attributes[id]! & HIDDEN_UNLESS_RENDERED));
  }

  /** Builds the tokenizer from `tokenizer.ggml.*` metadata; throws a GgufError naming the key at fault. */
  static fromGguf(metadata: GgufMetadata): Tokenizer {
    return new Tokenizer(readVocabulary(metadata));
  }

  get vocabSize(): number {
    return this.vocabulary.texts.length;
  }

  /** null when the metadata names none and the vocabulary is too small for llama.cpp's default (11). */
  get bosId(): number | null {
    return this.vocabulary.bosId;
  }

  get eosId(): number | null {
    return this.vocabulary.eosId;
  }

  /**
   * Token ids for `text`. A lone UTF-16 surrogate is tokenized as U+FFFD (UTF-8 encoding replaces
   * it, as it does on the way into llama.cpp). No Unicode normalization (llama.cpp applies none).
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new TypeError(`encode: expected a string, got ${typeof text}`);
    const matched = options.plainText ? [] : (options.parseSpecial ?? true) ? this.vocabulary.specialTokens : this.userDefinedTokens;
    const fragments = splitOnSpecialTokens(text, matched, (id) => this.vocabulary.texts[id]!);
    return this.withBosEos(this.encodeFragments(fragments), options.addBos ?? this.vocabulary.addBos, options.addEos ?? this.vocabulary.addEos);
  }

  /**
   * Token ids for a prompt made of segments: special tokens are recognised only inside `special`
   * segments, and a match must lie wholly inside one (so text of a plain segment can never be part
   * of a special token, even next to markup). The ordinary text is then tokenized as llama.cpp
   * tokenizes the text between special tokens: text running across segment boundaries is one piece,
   * so the ids are exactly those of the joined string whenever the plain segments hold no special
   * token text; only where they do, that text stays text.
   */
  encodeSegments(segments: readonly TextSegment[], options: SegmentEncodeOptions = {}): number[] {
    const fragments: Fragment[] = [];
    let text = "";
    for (const segment of segments) {
      if (typeof segment?.text !== "string") throw new TypeError("encodeSegments: every segment needs a text string");
      if (!segment.special) {
        text += segment.text;
        continue;
      }
      for (const fragment of splitOnSpecialTokens(segment.text, this.vocabulary.specialTokens, (id) => this.vocabulary.texts[id]!)) {
        if (typeof fragment === "string") {
          text += fragment;
          continue;
        }
        if (text) fragments.push(text);
        text = "";
        fragments.push(fragment);
      }
    }
    if (text) fragments.push(text);
    return this.withBosEos(this.encodeFragments(fragments), options.addBos ?? this.vocabulary.addBos, options.addEos ?? this.vocabulary.addEos);
  }

  /** The special tokens llama.cpp would recognise in `text` (parsing them all), in order. */
  specialTokensIn(text: string): number[] {
    return splitOnSpecialTokens(text, this.vocabulary.specialTokens, (id) => this.vocabulary.texts[id]!).filter((fragment) => typeof fragment === "number");
  }

  /** The texts of every token that is matched as a whole before BPE (CONTROL, USER_DEFINED, UNKNOWN). */
  get specialTokenTexts(): readonly string[] {
    return (this.specialTexts ??= this.vocabulary.specialTokens.map((id) => this.vocabulary.texts[id]!));
  }

  /** Whether `id` is one of those tokens. */
  isSpecial(id: number): boolean {
    this.checkId(id);
    return (this.vocabulary.attributes[id]! & MATCHED_BEFORE_BPE) !== 0;
  }

  private encodeFragments(fragments: readonly Fragment[]): number[] {
    const ids: number[] = [];
    for (const fragment of fragments) {
      if (typeof fragment === "number") {
        ids.push(fragment);
        continue;
      }
      for (const piece of qwen2PreTokens(fragment)) {
        for (const id of this.pieceTokens(piece)) ids.push(id);
      }
    }
    return ids;
  }

  private withBosEos(ids: number[], addBos: boolean, addEos: boolean): number[] {
    if (addBos) ids.unshift(this.idToAdd(this.vocabulary.bosId, "BOS"));
    if (addEos) ids.push(this.idToAdd(this.vocabulary.eosId, "EOS"));
    return ids;
  }

  /** The text of `ids`; bytes that do not form valid UTF-8 become U+FFFD. */
  decode(ids: Iterable<number>, options: DecodeOptions = {}): string {
    const pieces: Uint8Array[] = [];
    let length = 0;
    for (const id of ids) {
      const bytes = this.sharedTokenBytes(id, options.renderSpecial ?? true);
      pieces.push(bytes);
      length += bytes.length;
    }
    const joined = new Uint8Array(length);
    let at = 0;
    for (const bytes of pieces) {
      joined.set(bytes, at);
      at += bytes.length;
    }
    // A leading U+FEFF is part of the text, not a byte order mark to drop.
    return new TextDecoder("utf-8", { ignoreBOM: true }).decode(joined);
  }

  /**
   * The bytes a token stands for: for byte-level tokens possibly part of a UTF-8 character. Special
   * tokens stand for their text, or for nothing (CONTROL tokens) when `renderSpecial` is false.
   */
  tokenBytes(id: number, options: DecodeOptions = {}): Uint8Array {
    return this.sharedTokenBytes(id, options.renderSpecial ?? true).slice();
  }

  /** The token's text as the vocabulary stores it (byte-level spelling for normal tokens, e.g. "Ġthe"). */
  tokenText(id: number): string {
    this.checkId(id);
    return this.vocabulary.texts[id]!;
  }

  /**
   * Whether generating this token ends generation, by llama.cpp's rule: EOS, metadata's EOT/EOM, the
   * FIM pad/repo/file-separator tokens, and tokens with a known end text ("<|im_end|>",
   * "<|endoftext|>", "<|eot_id|>", "</s>", …).
   */
  isEndOfGeneration(id: number): boolean {
    return this.vocabulary.endOfGeneration.has(id);
  }

  /** Cached: callers must not modify the array. */
  private sharedTokenBytes(id: number, renderSpecial: boolean): Uint8Array {
    this.checkId(id);
    const { attributes, texts } = this.vocabulary;
    if (!renderSpecial && attributes[id]! & HIDDEN_UNLESS_RENDERED) return NOTHING;
    return (this.bytesOfToken[id] ??= detokenizedBytes(texts[id]!, attributes[id]!));
  }

  /**
   * BPE of one pre-token. A merge result missing from the vocabulary falls back, as in llama.cpp, to
   * single-character tokens for its ASCII bytes; its other bytes are dropped.
   */
  private pieceTokens(piece: string): readonly number[] {
    const cached = this.pieceIds.get(piece);
    if (cached) return cached;
    const { idOfText, mergeRanks } = this.vocabulary;
    const ids: number[] = [];
    for (const merged of mergeWord(toByteLevel(piece), mergeRanks)) {
      const id = idOfText.get(merged);
      if (id !== undefined) {
        ids.push(id);
        continue;
      }
      for (const char of merged) {
        const single = char.charCodeAt(0) < 0x80 ? idOfText.get(char) : undefined;
        if (single !== undefined) ids.push(single);
      }
    }
    if (piece.length <= CACHED_PIECE_MAX_LENGTH) {
      if (this.pieceIds.size >= PIECE_CACHE_LIMIT) this.pieceIds.clear();
      this.pieceIds.set(piece, ids);
    }
    return ids;
  }

  private idToAdd(id: number | null, role: string): number {
    if (id === null) throw new Error(`the vocabulary has no ${role} token to add`);
    return id;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabulary.texts.length) {
      throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabulary.texts.length - 1})`);
    }
  }
}
