import { relative } from "node:path";
import { quantOf } from "./files.js";
import { hubSettings } from "./settings.js";

export interface CachedModelFile {
  repo: string;
  /** Path inside the repository. */
  file: string;
  size: number;
  quant: string | undefined;
  commit: string;
  /** Refs (such as main) pointing at that commit. */
  refs: string[];
  /** The local path, to pass as -m. */
  path: string;
}

/** The GGUF files in the Hugging Face cache, whichever tool put them there. */
export async function listCachedModels(): Promise<{ cacheDir: string; files: CachedModelFile[] }> {
  const { scanCacheDir } = await import("@huggingface/hub");
  const { cacheDir } = await hubSettings();
  let scan;
  try {
    scan = await scanCacheDir(cacheDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { cacheDir, files: [] };
    throw error;
  }
  const files: CachedModelFile[] = [];
  for (const repo of scan.repos) {
    if (repo.id.type !== "model") continue;
    for (const revision of repo.revisions) {
      for (const file of revision.files) {
        const path = relative(revision.path, file.path);
        if (!/\.gguf$/i.test(path)) continue;
        files.push({ repo: repo.id.name, file: path, size: file.blob.size, quant: quantOf(path), commit: revision.commitOid, refs: revision.refs, path: file.path });
      }
    }
  }
  files.sort((a, b) => a.repo.localeCompare(b.repo) || a.file.localeCompare(b.file));
  return { cacheDir, files };
}
