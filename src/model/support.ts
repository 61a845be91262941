import { GgufError } from "../gguf/errors.js";
import { GgufFile } from "../gguf/reader.js";
import { GgmlType, ggmlTypeName, isKnownGgmlType } from "../gguf/types.js";
import { Kernels, activationFormatFor } from "../kernels/api.js";
import { WEIGHT_FORMATS } from "../quant/formats/index.js";
import { SmallThinkerConfig } from "./config.js";
import { TensorRole, engineTensors } from "./tensors.js";

/** Tensors the engine would read but cannot, all of one type and for one reason. */
export interface UnsupportedTensors {
  /** The file's type id (possibly one this ggml version does not know). */
  type: number;
  typeName: string;
  reason: string;
  tensors: string[];
}

/** Why the engine cannot use a tensor of `type` in `role` with `kernels`, or undefined if it can. */
function problemWith(type: number, role: TensorRole, kernels: Kernels): string | undefined {
  if (!isKnownGgmlType(type)) return "a type id this version of ggml does not define";
  if (role === "norms") return type === GgmlType.F32 ? undefined : "norms must be F32";
  if (!WEIGHT_FORMATS[type]) return "not a weight type: ggml has no product for it";
  if (!kernels.supports(type)) return `the ${kernels.name} kernels do not implement it, the reference kernels do (--kernels reference, slow)`;
  return undefined;
}

/**
 * Every tensor the engine reads that it cannot use with these kernels, grouped by type and reason,
 * largest group first. What a type needs comes from the format table (src/quant/formats) and the
 * kernels' own `supports`; tensors the engine never reads (a PowerInfer LM-head predictor, others)
 * do not count, whatever their type.
 */
export function unsupportedTensors(file: GgufFile, config: SmallThinkerConfig, kernels: Kernels): UnsupportedTensors[] {
  const groups = new Map<string, UnsupportedTensors>();
  for (const { name, role } of engineTensors(config)) {
    const { type } = file.tensor(name);
    const reason = problemWith(type, role, kernels);
    if (reason === undefined) continue;
    const key = `${type}: ${reason}`;
    const group = groups.get(key) ?? { type, typeName: ggmlTypeName(type), reason, tensors: [] };
    group.tensors.push(name);
    groups.set(key, group);
  }
  return [...groups.values()].sort((a, b) => b.tensors.length - a.tensors.length);
}

const NAMES_SHOWN = 3;

/** "3 tensors of type 57 (unknown) and 2 of NVFP4: 57 (unknown) in names…: why; NVFP4 in names…: why". */
export function describeUnsupported(groups: readonly UnsupportedTensors[]): string {
  const counts = groups.map((g, i) => `${g.tensors.length}${i === 0 ? ` tensor${g.tensors.length === 1 ? "" : "s"} of type` : " of"} ${g.typeName}`);
  const listed = counts.length === 1 ? counts[0]! : `${counts.slice(0, -1).join(", ")} and ${counts.at(-1)}`;
  const details = groups.map((g) => {
    const names = g.tensors.slice(0, NAMES_SHOWN).join(", ");
    const more = g.tensors.length > NAMES_SHOWN ? ` and ${g.tensors.length - NAMES_SHOWN} more` : "";
    return `${g.typeName} in ${names}${more}: ${g.reason}`;
  });
  return `${listed}: ${details.join("; ")}`;
}

/**
 * Refuses a file the engine cannot run with these kernels, naming every unsupported type with its
 * tensor count (not just the first tensor found), or experts whose gate and up matrices cannot
 * share prepared activations.
 */
export function requireSupported(file: GgufFile, config: SmallThinkerConfig, kernels: Kernels): void {
  const unsupported = unsupportedTensors(file, config, kernels);
  if (unsupported.length > 0) throw new GgufError(file.path, "tensor types", `cannot run ${describeUnsupported(unsupported)}`);
  for (let l = 0; l < config.layers; l++) {
    // The kernels prepare a layer's activations once for both the gate and the up products.
    const gateType = file.tensor(`blk.${l}.ffn_gate_exps.weight`).type;
    const upType = file.tensor(`blk.${l}.ffn_up_exps.weight`).type;
    if (activationFormatFor(upType) !== activationFormatFor(gateType)) {
      throw new GgufError(file.path, `tensor blk.${l}.ffn_up_exps.weight`, `type ${ggmlTypeName(upType)} cannot share activations with ffn_gate_exps (${ggmlTypeName(gateType)})`);
    }
  }
}
