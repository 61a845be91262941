import { basename } from "node:path";
import { GgufError } from "./errors.js";
import { GgufMetadata } from "./metadata.js";

/**
 * Split GGUFs as llama.cpp's llama-gguf-split writes them: parts named PREFIX-00001-of-0000N.gguf,
 * each a complete GGUF holding some of the tensors (in order), the first also holding all the
 * metadata. Every part carries these keys (u16, u16, i32); llama.cpp loads the model from its
 * first part and finds the others by name.
 */
export const SPLIT_KEYS = { no: "split.no", count: "split.count", tensors: "split.tensors.count" } as const;

/** The most parts the u16 split.count can say. */
export const MAX_SPLIT_PARTS = 0xffff;

/** "-00002-of-00005.gguf": the end of part `index` (0-based) of `count`'s name (llama_split_path). */
export function splitSuffix(index: number, count: number): string {
  const pad = (n: number) => String(n).padStart(5, "0");
  return `-${pad(index + 1)}-of-${pad(count)}.gguf`;
}

/** The split keys of one part. */
export interface SplitKeys {
  /** This part's index, 0 for the first. */
  no: number;
  count: number;
  /** Tensors in all parts together. */
  tensors: number;
}

/**
 * The split keys of a part's metadata; undefined for a file that is not split (no split.count, or
 * a count of 1: such a file holds everything, as llama.cpp treats it).
 */
export function readSplitKeys(metadata: GgufMetadata): SplitKeys | undefined {
  const count = metadata.optionalInteger(SPLIT_KEYS.count);
  if (count === undefined || count === 1) return undefined;
  if (count < 1 || count > MAX_SPLIT_PARTS) {
    throw new GgufError(metadata.path, SPLIT_KEYS.count, `expected 1..${MAX_SPLIT_PARTS} parts, got ${count}`);
  }
  const no = metadata.getInteger(SPLIT_KEYS.no);
  if (no < 0 || no >= count) throw new GgufError(metadata.path, SPLIT_KEYS.no, `expected 0..${count - 1} (of ${SPLIT_KEYS.count} ${count}), got ${no}`);
  const tensors = metadata.getInteger(SPLIT_KEYS.tensors);
  if (tensors < 0) throw new GgufError(metadata.path, SPLIT_KEYS.tensors, `expected a count, got ${tensors}`);
  return { no, count, tensors };
}

/**
 * The paths of every part of the split model whose part `keys.no` is `path`, found by name as
 * llama.cpp finds them; only the first part can be loaded, since it alone holds the metadata.
 */
export function splitPartPaths(path: string, keys: SplitKeys): string[] {
  const suffix = splitSuffix(keys.no, keys.count);
  const named = path.endsWith(suffix);
  if (keys.no !== 0) {
    const first = named ? ` (${basename(path.slice(0, -suffix.length) + splitSuffix(0, keys.count))})` : "";
    throw new GgufError(path, SPLIT_KEYS.no, `this is part ${keys.no + 1} of a model split in ${keys.count}: load it from its first part${first}, which holds the metadata`);
  }
  if (!named) {
    throw new GgufError(path, SPLIT_KEYS.count, `the file says it is part 1 of ${keys.count}, but its name does not end in "${suffix}", so its other parts cannot be found`);
  }
  const prefix = path.slice(0, -suffix.length);
  return Array.from({ length: keys.count }, (_, i) => prefix + splitSuffix(i, keys.count));
}

/** A later part's keys must place it where its name does, in a split of the same size. */
export function checkLaterPart(path: string, keys: SplitKeys | undefined, index: number, count: number): void {
  if (!keys) throw new GgufError(path, SPLIT_KEYS.count, `part ${index + 1} of ${count}: missing or 1, so this file is not part of that split`);
  if (keys.count !== count) throw new GgufError(path, SPLIT_KEYS.count, `part ${index + 1} of ${count} says it is one of ${keys.count}`);
  if (keys.no !== index) throw new GgufError(path, SPLIT_KEYS.no, `expected ${index} (the file is named as part ${index + 1} of ${count}), got ${keys.no}`);
}
