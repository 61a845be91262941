/** GGUF metadata value types, as numbered in the file format. */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GgufScalar = number | bigint | boolean | string;

/** A metadata value: scalars, or an array of one element type (nested arrays allowed). */
export type GgufValue =
  | { type: Exclude<GgufValueType, GgufValueType.ARRAY>; value: GgufScalar }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType; value: GgufArrayValue };

export type GgufArrayValue = number[] | bigint[] | boolean[] | string[] | GgufValue[];

/**
 * ggml tensor element types, as numbered in ggml.h (every type of the ggml version the oracle is
 * built from; ids 4, 5 and 31..33, 36..38 are retired). A file may hold an id not listed here:
 * the reader keeps it (see GgufTensorInfo), so a value of this type is not always a member.
 */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
}

/** Elements per block and bytes per block of each ggml type (ggml's type_traits). */
const BLOCK_LAYOUT: Record<GgmlType, readonly [blockSize: number, blockBytes: number]> = {
  [GgmlType.F32]: [1, 4],
  [GgmlType.F16]: [1, 2],
  [GgmlType.Q4_0]: [32, 18],
  [GgmlType.Q4_1]: [32, 20],
  [GgmlType.Q5_0]: [32, 22],
  [GgmlType.Q5_1]: [32, 24],
  [GgmlType.Q8_0]: [32, 34],
  [GgmlType.Q8_1]: [32, 36],
  [GgmlType.Q2_K]: [256, 84],
  [GgmlType.Q3_K]: [256, 110],
  [GgmlType.Q4_K]: [256, 144],
  [GgmlType.Q5_K]: [256, 176],
  [GgmlType.Q6_K]: [256, 210],
  [GgmlType.Q8_K]: [256, 292],
  [GgmlType.IQ2_XXS]: [256, 66],
  [GgmlType.IQ2_XS]: [256, 74],
  [GgmlType.IQ3_XXS]: [256, 98],
  [GgmlType.IQ1_S]: [256, 50],
  [GgmlType.IQ4_NL]: [32, 18],
  [GgmlType.IQ3_S]: [256, 110],
  [GgmlType.IQ2_S]: [256, 82],
  [GgmlType.IQ4_XS]: [256, 136],
  [GgmlType.I8]: [1, 1],
  [GgmlType.I16]: [1, 2],
  [GgmlType.I32]: [1, 4],
  [GgmlType.I64]: [1, 8],
  [GgmlType.F64]: [1, 8],
  [GgmlType.IQ1_M]: [256, 56],
  [GgmlType.BF16]: [1, 2],
  [GgmlType.TQ1_0]: [256, 54],
  [GgmlType.TQ2_0]: [256, 66],
  [GgmlType.MXFP4]: [32, 17],
  [GgmlType.NVFP4]: [64, 36],
  [GgmlType.Q1_0]: [128, 18],
  [GgmlType.Q2_0]: [64, 18],
};

export function isKnownGgmlType(type: number): type is GgmlType {
  return Object.prototype.hasOwnProperty.call(BLOCK_LAYOUT, type);
}

/** "Q4_K", or "57 (unknown)" for an id this ggml version does not know. */
export function ggmlTypeName(type: number): string {
  return isKnownGgmlType(type) ? GgmlType[type] : `${type} (unknown)`;
}

function layoutOf(type: GgmlType): readonly [blockSize: number, blockBytes: number] {
  if (!isKnownGgmlType(type)) throw new Error(`tensor type ${ggmlTypeName(type)} has no known block layout`);
  return BLOCK_LAYOUT[type];
}

export function ggmlBlockSize(type: GgmlType): number {
  return layoutOf(type)[0];
}

export function ggmlBlockBytes(type: GgmlType): number {
  return layoutOf(type)[1];
}

/** Bytes of one row of `elements` values; the row length must be a whole number of blocks. */
export function ggmlRowBytes(type: GgmlType, elements: number): number {
  const [blockSize, blockBytes] = layoutOf(type);
  return (elements / blockSize) * blockBytes;
}

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the contiguous (input) dimension. */
  dims: number[];
  /** The file's type id; possibly one this ggml version does not know (isKnownGgmlType). */
  type: GgmlType;
  /** Which file holds the data: 0, or for a split model the index of its part (GgufFile.parts). */
  part: number;
  /** Offset of the data relative to the start of its part's data section. */
  relativeOffset: number;
  /** Absolute position of the data in its part's file. */
  offset: number;
  /** Bytes of data; undefined when the type is unknown, as its block layout then is. */
  byteLength: number | undefined;
  elementCount: number;
}

/** A tensor's byte length, or an error naming the tensor and its unknown type. */
export function tensorByteLength(t: GgufTensorInfo): number {
  if (t.byteLength === undefined) throw new Error(`tensor ${t.name}: type ${ggmlTypeName(t.type)} has no known size`);
  return t.byteLength;
}

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;
