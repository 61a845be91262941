import { GgmlType, ggmlTypeName } from "../../gguf/types.js";
import { ACTIVATION_FORMATS, activationRowBytes } from "./activations.js";
import { WeightFormat, blockCount, checkRoom } from "./common.js";
import { BF16, F16, F32 } from "./float.js";
import { IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ3_S, IQ3_XXS, IQ4_NL, IQ4_XS } from "./iquants.js";
import { Q2_K, Q3_K, Q4_K, Q5_K, Q6_K } from "./kquants.js";
import { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 } from "./legacy.js";
import { MXFP4, NVFP4 } from "./fp4.js";
import { Q1_0, Q2_0 } from "./q1q2.js";
import { TQ1_0, TQ2_0 } from "./ternary.js";

/**
 * The format table: every weight type ggml can multiply on the CPU (each type with a vec_dot in
 * ggml-cpu's type_traits_cpu), keyed by type. Adding a format is one entry here. Entries check
 * their arguments (whole blocks, bytes within the buffers) before computing.
 * Not here: Q8_1 and Q8_K (activation formats only: ggml has no product for them as weights) and
 * the integer types.
 */

function checked(format: WeightFormat): WeightFormat {
  const { name, blockValues, blockBytes } = format;
  const activation = ACTIVATION_FORMATS[format.activation];
  const entry: WeightFormat = {
    ...format,
    dequantize(bytes, offset, out) {
      checkRoom(bytes, offset, blockCount(out.length, blockValues, name) * blockBytes, name);
      format.dequantize(bytes, offset, out);
    },
    dot(w, wOffset, x, xOffset, cols) {
      checkRoom(w, wOffset, blockCount(cols, blockValues, name) * blockBytes, `${name} weights`);
      checkRoom(x, xOffset, blockCount(cols, activation.blockValues, `${name}'s ${activation.format} activations`) * activation.blockBytes, `${name}'s ${activation.format} activations`);
      return format.dot(w, wOffset, x, xOffset, cols);
    },
  };
  return Object.freeze(entry);
}

const ENTRIES: readonly WeightFormat[] = [
  F32, F16, BF16,
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
  Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
  IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, IQ4_NL, IQ4_XS,
  TQ1_0, TQ2_0,
  MXFP4, NVFP4,
  Q1_0, Q2_0,
];

export const WEIGHT_FORMATS: Readonly<Partial<Record<GgmlType, WeightFormat>>> = Object.freeze(
  Object.fromEntries(ENTRIES.map((f) => [f.type, checked(f)])),
);

/** The table entry of `type`, or an error naming the type. */
export function weightFormat(type: GgmlType): WeightFormat {
  const format = WEIGHT_FORMATS[type];
  if (!format) throw new Error(`no weight format for tensor type ${ggmlTypeName(type)}`);
  return format;
}

/** Encodes `src` (a whole number of blocks) as `type` into dst at dstOffset. */
export function quantize(type: GgmlType, src: Float32Array, dst: Uint8Array, dstOffset = 0): void {
  const format = weightFormat(type);
  if (!format.quantize) throw new Error(`cannot quantize to ${format.name}`);
  format.quantize(src, dst, dstOffset);
}

/** Decodes `out.length` values of `type` starting at byte `offset` of `bytes`. */
export function dequantize(type: GgmlType, bytes: Uint8Array, offset: number, out: Float32Array): void {
  weightFormat(type).dequantize(bytes, offset, out);
}

export { ACTIVATION_FORMATS, activationRowBytes };
export type { ActivationFormat, ActivationFormatSpec, WeightFormat } from "./common.js";
export { quantizeQ8_0Activations } from "./activations.js";
export { quantizeQ4_0, quantizeQ5_0, quantizeQ8_0 } from "./legacy.js";
