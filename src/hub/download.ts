import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rename, rm, stat, truncate } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { HubError } from "./errors.js";

/*
 * Why by hand: @huggingface/hub's downloadFileToCacheDir streams a file into the cache, but it
 * neither resumes a partial file, nor reports progress, nor checks the content against the
 * checksum the hub lists. This does those three, and leaves listing and the cache layout to it.
 */

export interface DownloadTarget {
  /** The hub's resolve URL of the file at a fixed commit. */
  url: string;
  /** For messages. */
  name: string;
  size: number;
  /** What the content must hash to: the LFS SHA-256, else the Git blob id (SHA-1 of "blob <size>\0" + content). */
  checksum: { sha256: string } | { gitOid: string };
  /** Where the verified file goes; it is written as `${destination}.incomplete` until then. */
  destination: string;
  token: string | undefined;
  onProgress?: (done: number, total: number) => void;
}

export interface DownloadOptions {
  /** Attempts after a connection fails or stalls, each resuming where the last stopped (default 4). */
  attempts?: number;
  /** A transfer that sends nothing for this long is given up and resumed (default 60 s). */
  stallMs?: number;
}

/** A failure worth another attempt: the connection, not the request. */
class TransferInterrupted extends Error {}

/** Downloads `target` with HTTP Range resumption, then verifies its checksum before it is used. */
export async function downloadVerified(target: DownloadTarget, options: DownloadOptions = {}): Promise<void> {
  const attempts = options.attempts ?? 4;
  const partial = `${target.destination}.incomplete`;
  await mkdir(dirname(partial), { recursive: true });
  let have = await sizeOf(partial);
  if (have > target.size) {
    await truncate(partial, 0);
    have = 0;
  }
  // what reached the file so far, and its running hash; a transfer advances both together
  const state = { have, hash: await hashOf(partial, target) };
  target.onProgress?.(have, target.size);
  for (let attempt = 1; state.have < target.size; attempt++) {
    try {
      await transfer(target, partial, state, options.stallMs ?? 60_000);
    } catch (error) {
      if (!(error instanceof TransferInterrupted)) throw error;
      if (attempt >= attempts) {
        throw new HubError(
          `download of ${target.name} interrupted at ${state.have} of ${target.size} bytes (${error.message}); the same command resumes it`,
        );
      }
      await sleep(Math.min(8000, 250 * 2 ** (attempt - 1)));
    }
  }
  const digest = state.hash.digest("hex");
  const expected = "sha256" in target.checksum ? target.checksum.sha256 : target.checksum.gitOid;
  if (digest !== expected.toLowerCase()) {
    await rm(partial, { force: true });
    throw new HubError(
      `${target.name} is corrupt: its ${"sha256" in target.checksum ? "SHA-256" : "Git blob id"} is ${digest}, the hub lists ${expected}; the download was discarded`,
    );
  }
  await rename(partial, target.destination);
}

function newHash(target: DownloadTarget): Hash {
  const hash = createHash("sha256" in target.checksum ? "sha256" : "sha1");
  if ("gitOid" in target.checksum) hash.update(`blob ${target.size}\0`);
  return hash;
}

/** The hash of what a partial file already holds, so a resumed download is verified whole. */
async function hashOf(path: string, target: DownloadTarget): Promise<Hash> {
  const hash = newHash(target);
  if ((await sizeOf(path)) > 0) {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  }
  return hash;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/**
 * One request for bytes `have`… of the file, following the hub's redirect to its storage (the
 * token goes to the hub only, never to another origin), appended to `partial` as they arrive.
 */
async function transfer(target: DownloadTarget, partial: string, state: { have: number; hash: Hash }, stallMs: number): Promise<void> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const watchdog = () => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new TransferInterrupted(`no data for ${stallMs / 1000} s`)), stallMs);
  };
  watchdog();
  try {
    const response = await follow(target, state.have, controller.signal);
    if (response.status === 200 && state.have > 0) {
      // the server ignored the Range: start over rather than append the beginning again
      await truncate(partial, 0);
      state.have = 0;
      state.hash = newHash(target);
    } else if (response.status === 206) {
      const start = Number(/^bytes (\d+)-/.exec(response.headers.get("content-range") ?? "")?.[1]);
      if (start !== state.have) throw new HubError(`download of ${target.name}: asked for bytes from ${state.have}, the server sent them from ${start}`);
    } else if (response.status !== 200) {
      const retry = response.status >= 500 || response.status === 429;
      const message = `download of ${target.name} failed: HTTP ${response.status} ${response.statusText}`;
      throw retry ? new TransferInterrupted(message) : new HubError(message);
    }
    const file = await open(partial, "a");
    try {
      for await (const chunk of response.body ?? []) {
        watchdog();
        const bytes = chunk as Uint8Array;
        if (state.have + bytes.length > target.size) throw new HubError(`download of ${target.name}: the server sent more than the listed ${target.size} bytes`);
        await file.write(bytes);
        state.hash.update(bytes);
        state.have += bytes.length;
        target.onProgress?.(state.have, target.size);
      }
    } finally {
      await file.close();
    }
    if (state.have < target.size) throw new TransferInterrupted("the connection closed early");
  } catch (error) {
    if (error instanceof HubError || error instanceof TransferInterrupted) throw error;
    const reason = controller.signal.aborted ? controller.signal.reason : error;
    throw new TransferInterrupted(describeNetworkError(reason));
  } finally {
    clearTimeout(timer);
  }
}

async function follow(target: DownloadTarget, have: number, signal: AbortSignal): Promise<Response> {
  const hubOrigin = new URL(target.url).origin;
  let url = new URL(target.url);
  for (let hop = 0; hop < 10; hop++) {
    const headers: Record<string, string> = { "user-agent": "smallthinker" };
    if (have > 0) headers.range = `bytes=${have}-`;
    if (target.token && url.origin === hubOrigin) headers.authorization = `Bearer ${target.token}`;
    const response = await fetch(url, { headers, redirect: "manual", signal });
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      url = new URL(location, url);
      continue;
    }
    return response;
  }
  throw new HubError(`download of ${target.name}: too many redirects`);
}

/** fetch's "fetch failed" hides the reason in `cause`: ECONNREFUSED, ENOTFOUND, a reset… */
export function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code) return cause.code;
  if (cause?.message) return cause.message;
  return error instanceof Error ? error.message : String(error);
}
