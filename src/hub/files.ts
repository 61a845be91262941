import { HubError } from "./errors.js";

/** A GGUF file of a repository, as listed by the hub or found in the cache. */
export interface GgufEntry {
  /** Path inside the repository. */
  path: string;
  size: number;
  /** SHA-256 of the content (Git LFS oid); known for files from the hub's listing. */
  sha256?: string;
  /** Git blob id, for a file stored in Git rather than LFS. */
  gitOid?: string;
}

/** One model in a repository: a single GGUF, or every part of a split one. */
export interface ModelFiles {
  /** The file name, or for a split model the first part's. */
  name: string;
  quant: string | undefined;
  parts: GgufEntry[];
  size: number;
  /** Parts a split model names that the listing lacks. */
  missingParts: number;
}

const SPLIT = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;
/** Quantization names as llama.cpp's tools write them into file names: Q4_0, Q4_K_M, IQ4_XS, F16, BF16… */
const QUANT = /(?:^|[-._])(I?Q\d+(?:_[0-9A-Z]+)*|BF16|F16|F32)(?=$|[-.])/gi;

export function quantOf(fileName: string): string | undefined {
  const base = fileName.slice(fileName.lastIndexOf("/") + 1).replace(/(-\d{5}-of-\d{5})?\.gguf$/i, "");
  const matches = [...base.matchAll(QUANT)];
  return matches.length > 0 ? matches[matches.length - 1]![1]!.toUpperCase() : undefined;
}

/** Model files of a listing: GGUFs other than vision projectors, split parts grouped, ordered by size. */
export function groupModelFiles(entries: readonly GgufEntry[]): ModelFiles[] {
  const groups = new Map<string, { parts: Map<number, GgufEntry>; count: number }>();
  for (const entry of entries) {
    const name = entry.path.slice(entry.path.lastIndexOf("/") + 1);
    if (!/\.gguf$/i.test(name) || /^mmproj/i.test(name)) continue;
    const split = SPLIT.exec(entry.path);
    const key = split ? `${split[1]}-of-${split[3]}` : entry.path;
    const group = groups.get(key) ?? { parts: new Map(), count: split ? Number(split[3]) : 1 };
    group.parts.set(split ? Number(split[2]) : 1, entry);
    groups.set(key, group);
  }
  return [...groups.values()]
    .map(({ parts, count }) => {
      const sorted = [...parts.entries()].sort((a, b) => a[0] - b[0]).map(([, entry]) => entry);
      return {
        name: sorted[0]!.path,
        quant: quantOf(sorted[0]!.path),
        parts: sorted,
        size: sorted.reduce((sum, entry) => sum + entry.size, 0),
        missingParts: count - parts.size,
      };
    })
    .sort((a, b) => a.size - b.size || a.name.localeCompare(b.name));
}

/** The default when none is asked for: the quantizations the engine runs fastest, else the smallest file. */
const PREFERRED = ["Q4_0", "Q4_K_M"];

/**
 * The model `quant` names (matched case-insensitively against the quantization in the file names,
 * then against the names themselves), or the default.
 */
export function chooseModelFiles(groups: readonly ModelFiles[], quant: string | undefined, where: string): ModelFiles {
  if (groups.length === 0) throw new HubError(`${where} has no GGUF files`);
  let chosen: ModelFiles | undefined;
  if (quant === undefined) {
    chosen = PREFERRED.map((q) => groups.find((g) => g.quant === q)).find((g) => g !== undefined) ?? groups[0];
  } else {
    const wanted = quant.toUpperCase();
    const named = new RegExp(`(?:^|[-._/])${wanted.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?=$|[-.])`, "i");
    chosen = groups.find((g) => g.quant === wanted) ?? groups.find((g) => named.test(g.name.replace(/\.gguf$/i, "")));
    if (!chosen) throw new HubError(`${where} has no GGUF for ${quant}; it has: ${describeChoices(groups)}`);
  }
  if (chosen!.missingParts > 0) throw new HubError(`${where}: ${chosen!.name} is split in ${chosen!.parts.length + chosen!.missingParts} parts, of which ${chosen!.missingParts} are missing`);
  return chosen!;
}

export function describeChoices(groups: readonly ModelFiles[]): string {
  return groups.map((g) => `${g.quant ?? "?"} (${g.name}, ${sizeText(g.size)}${g.parts.length > 1 ? ` in ${g.parts.length} parts` : ""})`).join(", ");
}

export function sizeText(bytes: number): string {
  const [unit, scale] = bytes >= 2 ** 30 ? ["GiB", 2 ** 30] : bytes >= 2 ** 20 ? ["MiB", 2 ** 20] : ["KiB", 2 ** 10];
  return `${(bytes / scale).toFixed(scale === 2 ** 10 ? 0 : 1)} ${unit}`;
}
