import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import type { GgufEntry } from "./files.js";

/*
 * The Hugging Face cache layout, shared with huggingface_hub, transformers and llama.cpp:
 *   <cache>/models--OWNER--NAME/blobs/<sha256>              the content, once
 *   <cache>/models--OWNER--NAME/snapshots/<commit>/<path>   a relative symlink to the blob
 *   <cache>/models--OWNER--NAME/refs/main                   the commit main pointed to
 * A download in progress is blobs/<sha256>.incomplete, as huggingface_hub names it, so either
 * tool resumes the other's.
 */

export function repoFolder(cacheDir: string, repo: string): string {
  // getRepoFolderName in @huggingface/hub spells it the same way: models--OWNER--NAME
  return join(cacheDir, `models--${repo.split("/").join("--")}`);
}

export function blobPath(folder: string, id: string): string {
  return join(folder, "blobs", id);
}

export function snapshotPath(folder: string, commit: string, path: string): string {
  return join(folder, "snapshots", commit, path);
}

/** Points the snapshot's entry at the blob (a copy where symlinks are not allowed) and records the ref. */
export function linkSnapshot(folder: string, commit: string, path: string, blob: string): string {
  const pointer = snapshotPath(folder, commit, path);
  mkdirSync(dirname(pointer), { recursive: true });
  rmSync(pointer, { force: true });
  try {
    symlinkSync(relative(dirname(pointer), blob), pointer);
  } catch {
    copyFileSync(blob, pointer);
  }
  return pointer;
}

export function writeRef(folder: string, ref: string, commit: string): void {
  mkdirSync(join(folder, "refs"), { recursive: true });
  // no newline: huggingface_hub writes and compares the bare hash
  writeFileSync(join(folder, "refs", ref), commit);
}

/** A snapshot entry whose blob is there, with the blob's size; undefined if dangling or absent. */
export function cachedFile(pointer: string): number | undefined {
  try {
    return statSync(pointer).size;
  } catch {
    return undefined;
  }
}

/** The GGUF files of the snapshot `refs/main` names (else the newest snapshot), for working offline. */
export function cachedSnapshot(cacheDir: string, repo: string): { commit: string; entries: GgufEntry[]; folder: string } | undefined {
  const folder = repoFolder(cacheDir, repo);
  const snapshots = join(folder, "snapshots");
  if (!existsSync(snapshots)) return undefined;
  let commit: string | undefined;
  try {
    commit = readFileSync(join(folder, "refs", "main"), "utf8").trim();
  } catch {
    commit = readdirSync(snapshots)
      .map((name) => ({ name, time: lstatSync(join(snapshots, name)).mtimeMs }))
      .sort((a, b) => b.time - a.time)[0]?.name;
  }
  if (!commit || !existsSync(join(snapshots, commit))) return undefined;
  const root = join(snapshots, commit);
  const entries: GgufEntry[] = [];
  const walk = (dir: string) => {
    for (const item of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, item.name);
      if (item.isDirectory()) walk(path);
      else if (/\.gguf$/i.test(item.name)) {
        const size = cachedFile(path);
        if (size !== undefined) entries.push({ path: relative(root, path), size });
      }
    }
  };
  walk(root);
  return { commit, entries, folder };
}
