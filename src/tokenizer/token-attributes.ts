/** llama.cpp's token attribute bits (llama_token_attr), the ones tokenizing and detokenizing look at. */
export const TokenAttribute = {
  UNKNOWN: 1,
  UNUSED: 2,
  NORMAL: 4,
  CONTROL: 8,
  USER_DEFINED: 16,
  BYTE: 32,
} as const;

/** `tokenizer.ggml.token_type` values, as the converter writes them. */
const ATTRIBUTE_OF_TOKEN_TYPE: Readonly<Record<number, number>> = {
  1: TokenAttribute.NORMAL,
  2: TokenAttribute.UNKNOWN,
  3: TokenAttribute.CONTROL,
  4: TokenAttribute.USER_DEFINED,
  5: TokenAttribute.UNUSED,
  6: TokenAttribute.BYTE,
};

/** Any other type (0 "undefined" included) gets no attribute: such tokens decode to nothing. */
export function attributeOfTokenType(type: number): number {
  return ATTRIBUTE_OF_TOKEN_TYPE[type] ?? 0;
}

/** Matched as whole strings in the input before BPE (CONTROL and UNKNOWN only when parsing special tokens). */
export const MATCHED_BEFORE_BPE = TokenAttribute.CONTROL | TokenAttribute.USER_DEFINED | TokenAttribute.UNKNOWN;

/** Hidden when detokenizing without rendering special tokens. */
export const HIDDEN_UNLESS_RENDERED = TokenAttribute.CONTROL | TokenAttribute.UNKNOWN;
