import { HubError } from "./errors.js";
import { blobPath, cachedFile, cachedSnapshot, linkSnapshot, repoFolder, snapshotPath, writeRef } from "./cache.js";
import { describeNetworkError, downloadVerified } from "./download.js";
import { chooseModelFiles, groupModelFiles, sizeText, type GgufEntry, type ModelFiles } from "./files.js";
import { formatReference, parseModelReference, type ModelReference } from "./reference.js";
import { hubSettings, type HubSettings } from "./settings.js";

export interface PullOptions {
  /** Progress of each file fetched: its name, bytes so far, its size. */
  onProgress?: (file: string, done: number, total: number) => void;
  /** Called when a download starts and when the cache is used instead of the hub. */
  onNotice?: (line: string) => void;
}

export interface PulledModel {
  repo: string;
  /** The commit the files come from. */
  commit: string;
  quant: string | undefined;
  /** Local paths (snapshot entries in the cache), the first part first for a split model. */
  paths: string[];
  size: number;
  /** True when nothing was asked of the hub (offline, or it could not be reached). */
  fromCache: boolean;
}

/** Requests for listings give up after this long, so a dead network falls back to the cache quickly. */
const METADATA_TIMEOUT_MS = 30_000;

/**
 * Makes a model from the hub available locally, as `smallthinker pull` and `-m hf:…` do: lists the
 * repository's GGUF files, picks the one asked (or the default), downloads what the cache lacks
 * (resuming partial files, checking checksums) and returns the paths. Offline, or when the hub
 * cannot be reached, it answers from the cache.
 */
export async function pullModel(text: string, options: PullOptions = {}): Promise<PulledModel> {
  const reference = parseModelReference(text);
  const settings = await hubSettings();
  const notice = options.onNotice ?? (() => {});
  if (settings.offline) {
    const cached = fromCache(reference, settings);
    if (!cached) throw new HubError(`${formatReference(reference)} is not in the cache (${settings.cacheDir}), and HF_HUB_OFFLINE is set`);
    return cached;
  }
  let listing: { commit: string; groups: ModelFiles[] };
  try {
    listing = await listRepository(reference.repo, settings);
  } catch (error) {
    if (!isNetworkFailure(error)) throw hubError(error, reference, settings);
    const cached = fromCache(reference, settings);
    const reason = describeNetworkError(error);
    if (!cached) throw new HubError(`cannot reach ${settings.endpoint} (${reason}), and ${formatReference(reference)} is not in the cache (${settings.cacheDir})`);
    notice(`cannot reach ${settings.endpoint} (${reason}): using the cached ${formatReference(reference)} (commit ${cached.commit.slice(0, 8)})`);
    return cached;
  }
  const chosen = chooseModelFiles(listing.groups, reference.quant, reference.repo);
  const folder = repoFolder(settings.cacheDir, reference.repo);
  const paths: string[] = [];
  for (const part of chosen.parts) paths.push(await fetchPart(reference.repo, listing.commit, part, folder, settings, options, notice));
  writeRef(folder, "main", listing.commit);
  return { repo: reference.repo, commit: listing.commit, quant: chosen.quant, paths, size: chosen.size, fromCache: false };
}

/** The models (GGUF files, split ones grouped) a repository offers, without downloading any. */
export async function listRepositoryModels(text: string): Promise<{ repo: string; commit: string; models: ModelFiles[] }> {
  const reference = parseModelReference(text);
  const settings = await hubSettings();
  if (settings.offline) throw new HubError(`listing ${reference.repo} needs the hub, and HF_HUB_OFFLINE is set`);
  try {
    const { commit, groups } = await listRepository(reference.repo, settings);
    return { repo: reference.repo, commit, models: groups };
  } catch (error) {
    if (isNetworkFailure(error)) throw new HubError(`cannot reach ${settings.endpoint} (${describeNetworkError(error)}) to list ${reference.repo}`);
    throw hubError(error, reference, settings);
  }
}

async function listRepository(repo: string, settings: HubSettings): Promise<{ commit: string; groups: ModelFiles[] }> {
  const { listFiles, modelInfo } = await import("@huggingface/hub");
  const common = { hubUrl: settings.endpoint, fetch: hubFetch(settings.token) };
  // the commit first, and every file at that commit: parts of one model never come from two commits
  const info = await modelInfo({ ...common, name: repo, additionalFields: ["sha"] });
  const commit = info.sha;
  // the commit, file paths and checksums name folders and files in the cache: only safe ones
  if (!commit || !/^[0-9a-f]{40}$/.test(commit)) throw new HubError(`${repo}: ${settings.endpoint} did not say which commit main is at`);
  const entries: GgufEntry[] = [];
  for await (const file of listFiles({ ...common, repo: { type: "model", name: repo }, revision: commit, recursive: true })) {
    if (file.type !== "file" || !/\.gguf$/i.test(file.path)) continue;
    if (!isSafeRelativePath(file.path)) throw new HubError(`${repo}: the hub lists a file named ${JSON.stringify(file.path)}, which is not a plain relative path`);
    const sha256 = file.lfs?.oid;
    const gitOid = file.lfs ? undefined : file.oid;
    if ((sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256)) || (gitOid !== undefined && !/^[0-9a-f]{40}$/.test(gitOid))) {
      throw new HubError(`${repo}: the hub lists a malformed checksum for ${file.path}`);
    }
    entries.push({ path: file.path, size: file.lfs?.size ?? file.size, sha256, gitOid });
  }
  return { commit, groups: groupModelFiles(entries) };
}

async function fetchPart(repo: string, commit: string, part: GgufEntry, folder: string, settings: HubSettings, options: PullOptions, notice: (line: string) => void): Promise<string> {
  const pointer = snapshotPath(folder, commit, part.path);
  if (cachedFile(pointer) === part.size) return pointer;
  const id = part.sha256 ?? part.gitOid;
  if (!id) throw new HubError(`${repo}: the hub lists no checksum for ${part.path}`);
  const blob = blobPath(folder, id);
  if (cachedFile(blob) !== part.size) {
    notice(`downloading ${repo}/${part.path} (${sizeText(part.size)}) into ${settings.cacheDir}`);
    await downloadVerified({
      url: `${settings.endpoint}/${repo}/resolve/${commit}/${part.path.split("/").map(encodeURIComponent).join("/")}`,
      name: part.path,
      size: part.size,
      checksum: part.sha256 ? { sha256: part.sha256 } : { gitOid: part.gitOid! },
      destination: blob,
      token: settings.token,
      onProgress: options.onProgress && ((done, total) => options.onProgress!(part.path, done, total)),
    });
  }
  return linkSnapshot(folder, commit, part.path, blob);
}

function fromCache(reference: ModelReference, settings: HubSettings): PulledModel | undefined {
  const snapshot = cachedSnapshot(settings.cacheDir, reference.repo);
  if (!snapshot || snapshot.entries.length === 0) return undefined;
  let chosen: ModelFiles;
  try {
    chosen = chooseModelFiles(groupModelFiles(snapshot.entries), reference.quant, `the cached ${reference.repo}`);
  } catch (error) {
    // the cache has the repository but not this quantization: as good as not cached, said precisely
    if (error instanceof HubError) return undefined;
    throw error;
  }
  return {
    repo: reference.repo,
    commit: snapshot.commit,
    quant: chosen.quant,
    paths: chosen.parts.map((part) => snapshotPath(snapshot.folder, snapshot.commit, part.path)),
    size: chosen.size,
    fromCache: true,
  };
}

/** No "..", no absolute path, no backslash or empty segment: a path that stays inside the snapshot. */
function isSafeRelativePath(path: string): boolean {
  return path.length > 0 && !path.startsWith("/") && !path.includes("\\") && path.split("/").every((segment) => segment !== "" && segment !== "." && segment !== "..");
}

/**
 * fetch for the listing requests, with a time limit and the token. The token goes in here rather
 * than as @huggingface/hub's accessToken, which refuses tokens not shaped like huggingface.co's
 * (a mirror's, under HF_ENDPOINT, may differ).
 */
function hubFetch(token: string | undefined): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers);
    if (token) headers.set("authorization", `Bearer ${token}`);
    return fetch(input, { ...init, headers, signal: AbortSignal.timeout(METADATA_TIMEOUT_MS) });
  };
}

/** The hub could not be reached at all (as opposed to answering with an error). */
function isNetworkFailure(error: unknown): boolean {
  const name = (error as Error)?.name;
  return (error instanceof TypeError && error.message === "fetch failed") || name === "TimeoutError" || name === "AbortError";
}

function hubError(error: unknown, reference: ModelReference, settings: HubSettings): Error {
  if (error instanceof HubError) return error;
  const status = (error as { statusCode?: number }).statusCode;
  const where = `${formatReference(reference)} on ${settings.endpoint}`;
  if (status === 401 || status === 403 || status === 404) {
    return new HubError(`${where}: not found, or private or gated (${settings.token ? "the token in HF_TOKEN cannot read it" : "set HF_TOKEN to a token that can read it"})`);
  }
  return new HubError(`${where}: ${(error as Error).message}`);
}
