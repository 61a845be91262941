import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { scanCacheDir } from "@huggingface/hub";
import { HubError, listCachedModels, pullModel } from "../src/hub/index.js";
import { startFakeHub, type FakeHub } from "./helpers/fake-hub.js";
import { testModel } from "./helpers/models.js";

const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "st-hub-"));
const REPO = "SmallThinkerTest/Tiny-GGUF";
const PRIVATE = "SmallThinkerTest/Private-GGUF";
const TOKEN = "hf_fake_token_for_tests";
/** A repository listing a path that climbs out of the snapshot folder. */
const EVIL = "SmallThinkerTest/Evil-GGUF";
/** A repository of a real model split in two parts. */
const SPLIT = "SmallThinkerTest/Split-GGUF";

/** Deterministic filler bytes (not a model: pull does not read what it fetches). */
function bytes(length: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length }, () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 24));
}

const tinyModel = new Uint8Array(readFileSync(testModel({ preset: "tiny" })));
const tinySplit = testModel({ preset: "tiny", file: { split: 2 } });
const tinyParts = [tinySplit, tinySplit.replace("-00001-of-00002.gguf", "-00002-of-00002.gguf")].map((path) => new Uint8Array(readFileSync(path)));
let hub: FakeHub;
let caseNumber = 0;
/** A loopback port nothing listens on (one that was free a moment ago). */
let deadEndpoint: string;

before(async () => {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  deadEndpoint = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
  await new Promise((resolve) => probe.close(resolve));
  hub = await startFakeHub([
    {
      name: REPO,
      files: [
        { path: "README.md", content: new TextEncoder().encode("# test\n") },
        { path: "tiny-F32.gguf", content: tinyModel },
        { path: "tiny-Q8_0.gguf", content: bytes(300_000, 1) },
        { path: "tiny-Q4_0.gguf", content: bytes(200_000, 2) },
        { path: "tiny-Q4_K_M-00001-of-00002.gguf", content: bytes(120_000, 3) },
        { path: "tiny-Q4_K_M-00002-of-00002.gguf", content: bytes(80_000, 4) },
      ],
    },
    { name: PRIVATE, token: TOKEN, files: [{ path: "private-Q4_0.gguf", content: bytes(50_000, 5) }] },
    { name: EVIL, files: [{ path: "../../../escaped-Q4_0.gguf", content: bytes(1000, 6) }] },
    {
      name: SPLIT,
      files: [
        { path: "tiny-F32-00001-of-00002.gguf", content: tinyParts[0]! },
        { path: "tiny-F32-00002-of-00002.gguf", content: tinyParts[1]! },
      ],
    },
  ]);
});
after(async () => {
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A fresh HF_HOME for each case, pointed at the fake hub; the faults and request log reset. */
function freshCache(extra: Record<string, string | undefined> = {}): { home: string; cache: string; env: Record<string, string | undefined> } {
  const home = join(dir, `home-${++caseNumber}`);
  mkdirSync(home, { recursive: true });
  hub.requests.length = 0;
  for (const key of Object.keys(hub.faults) as (keyof typeof hub.faults)[]) delete hub.faults[key];
  const env = { HF_HOME: home, HF_HUB_CACHE: undefined, HF_ENDPOINT: hub.url, HF_TOKEN: undefined, HF_HUB_OFFLINE: undefined, ...extra };
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  return { home, cache: join(home, "hub"), env };
}

const repoFolder = (cache: string, repo: string) => join(cache, `models--${repo.replace("/", "--")}`);
const storageRequests = () => hub.requests.filter((r) => r.port === "storage");

function runCli(args: string[], env: Record<string, string | undefined>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const childEnv: Record<string, string> = {};
    for (const [key, value] of Object.entries({ ...process.env, ...env })) if (value !== undefined) childEnv[key] = value;
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"], env: childEnv });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

test("pull picks Q4_0 by default and stores it in the Hugging Face cache layout other tools read", async () => {
  const { cache } = freshCache();
  const pulled = await pullModel(REPO);
  assert.equal(pulled.quant, "Q4_0");
  assert.equal(pulled.commit, hub.commit);
  const folder = repoFolder(cache, REPO);
  const sha = hub.sha256("tiny-Q4_0.gguf");
  const pointer = join(folder, "snapshots", hub.commit, "tiny-Q4_0.gguf");
  assert.deepEqual(pulled.paths, [pointer]);
  assert.ok(lstatSync(pointer).isSymbolicLink());
  assert.equal(readlinkSync(pointer), join("..", "..", "blobs", sha));
  assert.deepEqual(new Uint8Array(readFileSync(join(folder, "blobs", sha))), bytes(200_000, 2));
  assert.equal(readFileSync(join(folder, "refs", "main"), "utf8"), hub.commit);
  // @huggingface/hub's own cache scanner (as huggingface_hub's) finds the file where it looks
  const scan = await scanCacheDir(cache);
  assert.deepEqual(scan.warnings, []);
  const revision = scan.repos.find((r) => r.id.name === REPO)!.revisions[0]!;
  assert.deepEqual([revision.commitOid, revision.refs, revision.files.map((f) => f.blob.size)], [hub.commit, ["main"], [200_000]]);
  // a second pull asks the hub for the listing only
  hub.requests.length = 0;
  await pullModel(REPO);
  assert.equal(storageRequests().length, 0);
});

test("QUANT picks the file case-insensitively; an unknown one lists what the repository has", async () => {
  freshCache();
  const pulled = await pullModel(`hf:${REPO}:q8_0`);
  assert.equal(pulled.quant, "Q8_0");
  assert.match(pulled.paths[0]!, /tiny-Q8_0\.gguf$/);
  await assert.rejects(pullModel(`${REPO}:Q5_K_S`), (error: Error) => error instanceof HubError && /no GGUF for Q5_K_S; it has: Q4_0 \(tiny-Q4_0\.gguf, 195 KiB\), Q4_K_M \(tiny-Q4_K_M-00001-of-00002\.gguf, 195 KiB in 2 parts\), Q8_0 .*F32/.test(error.message));
  await assert.rejects(pullModel("not a repo"), /"not a repo" is not a model on the hub: expected OWNER\/NAME/);
});

test("a listed path that would leave the cache is refused before anything is written", async () => {
  const { home } = freshCache();
  await assert.rejects(pullModel(EVIL), /lists a file named "\.\.\/\.\.\/\.\.\/escaped-Q4_0\.gguf", which is not a plain relative path/);
  assert.equal(storageRequests().length, 0);
  assert.ok(!existsSync(join(home, "escaped-Q4_0.gguf")) && !existsSync(join(home, "..", "escaped-Q4_0.gguf")));
});

test("a split model is downloaded whole, its parts in order", async () => {
  const { cache } = freshCache();
  const pulled = await pullModel(`${REPO}:Q4_K_M`);
  assert.deepEqual(
    pulled.paths.map((p) => p.slice(p.lastIndexOf("/") + 1)),
    ["tiny-Q4_K_M-00001-of-00002.gguf", "tiny-Q4_K_M-00002-of-00002.gguf"],
  );
  assert.equal(pulled.size, 200_000);
  assert.equal(readdirSync(join(repoFolder(cache, REPO), "blobs")).length, 2);
});

test("the token goes to the hub, never to the storage it redirects to; without it a private repository is refused clearly", async () => {
  freshCache();
  await assert.rejects(pullModel(PRIVATE), (error: Error) => error instanceof HubError && /not found, or private or gated \(set HF_TOKEN/.test(error.message));
  freshCache({ HF_TOKEN: TOKEN });
  const pulled = await pullModel(PRIVATE);
  assert.equal(pulled.quant, "Q4_0");
  const hubRequests = hub.requests.filter((r) => r.port === "hub");
  assert.ok(hubRequests.length >= 3 && hubRequests.every((r) => r.authorization === `Bearer ${TOKEN}`), JSON.stringify(hubRequests));
  assert.ok(storageRequests().length === 1 && storageRequests().every((r) => r.authorization === undefined), JSON.stringify(storageRequests()));
});

test("a transfer cut off mid-way resumes with a Range request and is verified whole", async () => {
  const { cache } = freshCache();
  hub.faults.cutAfter = 70_000;
  hub.faults.cutTimes = 2;
  const progress: number[] = [];
  const pulled = await pullModel(`${REPO}:Q8_0`, { onProgress: (_, done) => progress.push(done) });
  assert.deepEqual(new Uint8Array(readFileSync(pulled.paths[0]!)), bytes(300_000, 1));
  // each retry asks for the bytes after those already written (how many reach the client before a
  // connection drops varies with timing, so the test asks only that they never go back)
  const starts = storageRequests().map((r) => (r.range === undefined ? 0 : Number(/^bytes=(\d+)-$/.exec(r.range)![1])));
  assert.equal(starts.length, 3, JSON.stringify(starts));
  assert.ok(starts[0] === 0 && starts[2]! > 0 && starts.every((start, i) => i === 0 || start >= starts[i - 1]!), JSON.stringify(starts));
  assert.equal(progress.at(-1), 300_000);
  assert.ok(progress.every((done, i) => i === 0 || done >= progress[i - 1]!), "progress never goes back");
  assert.ok(!existsSync(join(repoFolder(cache, REPO), "blobs", `${hub.sha256("tiny-Q8_0.gguf")}.incomplete`)));
});

test("an interrupted download is kept, and the next pull resumes it from where it stopped", async () => {
  const { cache } = freshCache();
  hub.faults.cutAfter = 50_000;
  hub.faults.cutTimes = 100;
  let stoppedAt = 0;
  await assert.rejects(pullModel(`${REPO}:Q8_0`), (error: Error) => {
    const match = /interrupted at (\d+) of 300000 bytes .*the same command resumes it/.exec(error.message);
    stoppedAt = Number(match?.[1]);
    return error instanceof HubError && stoppedAt > 0;
  });
  const partial = join(repoFolder(cache, REPO), "blobs", `${hub.sha256("tiny-Q8_0.gguf")}.incomplete`);
  assert.equal(readFileSync(partial).length, stoppedAt);
  assert.ok(!existsSync(join(repoFolder(cache, REPO), "snapshots", hub.commit, "tiny-Q8_0.gguf")), "nothing half-done is linked");
  delete hub.faults.cutAfter;
  hub.requests.length = 0;
  const pulled = await pullModel(`${REPO}:Q8_0`);
  assert.deepEqual(storageRequests().map((r) => r.range), [`bytes=${stoppedAt}-`]);
  assert.deepEqual(new Uint8Array(readFileSync(pulled.paths[0]!)), bytes(300_000, 1));
});

test("a server that ignores Range gets the file again from the start, not appended twice", async () => {
  const { cache } = freshCache();
  const sha = hub.sha256("tiny-Q4_0.gguf");
  mkdirSync(join(repoFolder(cache, REPO), "blobs"), { recursive: true });
  writeFileSync(join(repoFolder(cache, REPO), "blobs", `${sha}.incomplete`), bytes(200_000, 2).subarray(0, 1000));
  hub.faults.ignoreRange = true;
  const pulled = await pullModel(REPO);
  assert.deepEqual(storageRequests().map((r) => r.range), ["bytes=1000-"]);
  assert.deepEqual(new Uint8Array(readFileSync(pulled.paths[0]!)), bytes(200_000, 2));
});

test("a corrupted download fails clearly and leaves nothing that could be used", async () => {
  const { cache, env } = freshCache();
  hub.faults.corrupt = new Set(["tiny-Q4_0.gguf"]);
  const sha = hub.sha256("tiny-Q4_0.gguf");
  await assert.rejects(pullModel(REPO), (error: Error) => error instanceof HubError && new RegExp(`tiny-Q4_0\\.gguf is corrupt: its SHA-256 is [0-9a-f]{64}, the hub lists ${sha}; the download was discarded`).test(error.message));
  const folder = repoFolder(cache, REPO);
  assert.deepEqual(readdirSync(join(folder, "blobs")), []);
  assert.ok(!existsSync(join(folder, "snapshots")));
  assert.deepEqual((await listCachedModels()).files, []);
  const { code, stderr } = await runCli(["run", "-m", `hf:${REPO}`, "-n", "2"], env);
  assert.equal(code, 1);
  assert.match(stderr, /is corrupt: .*discarded/);
  assert.doesNotMatch(stderr, /^\s+at /m);
});

test("offline, and when the hub cannot be reached, a cached model is used; an uncached one fails clearly", async () => {
  freshCache();
  const online = await pullModel(`${REPO}:Q8_0`);
  // nothing listens there: a network failure, not an answer
  process.env.HF_ENDPOINT = deadEndpoint;
  const notices: string[] = [];
  const unreachable = await pullModel(`${REPO}:q8_0`, { onNotice: (line) => notices.push(line) });
  assert.deepEqual([unreachable.paths, unreachable.fromCache], [online.paths, true]);
  assert.match(notices.join("\n"), new RegExp(`cannot reach ${deadEndpoint} \\(ECONNREFUSED\\): using the cached SmallThinkerTest/Tiny-GGUF:q8_0`));
  hub.requests.length = 0;
  process.env.HF_ENDPOINT = hub.url;
  process.env.HF_HUB_OFFLINE = "1";
  const offline = await pullModel(`${REPO}:Q8_0`);
  assert.deepEqual(offline.paths, online.paths);
  assert.equal(hub.requests.length, 0, "offline asks nothing of the hub");
  await assert.rejects(pullModel(`${REPO}:Q4_0`), /Tiny-GGUF:Q4_0 is not in the cache \(.*\), and HF_HUB_OFFLINE is set/);
  delete process.env.HF_HUB_OFFLINE;
  process.env.HF_ENDPOINT = deadEndpoint;
  await assert.rejects(pullModel(`${REPO}:Q4_0`), new RegExp(`cannot reach ${deadEndpoint} \\(ECONNREFUSED\\), and SmallThinkerTest/Tiny-GGUF:Q4_0 is not in the cache`));
});

test("the CLI pulls with a progress line per tenth when not on a terminal, lists the cache, and runs hf: models", async () => {
  const { env } = freshCache();
  const pull = await runCli(["pull", `${REPO}:F32`], env);
  assert.equal(pull.code, 0, pull.stderr);
  assert.match(pull.stderr, /downloading SmallThinkerTest\/Tiny-GGUF\/tiny-F32\.gguf/);
  const lines = pull.stderr.split("\n").filter((l) => /^tiny-F32\.gguf: \d+% /.test(l));
  assert.ok(lines.length >= 2 && lines.length <= 11 && /: 100% /.test(lines.at(-1)!), pull.stderr);
  assert.match(pull.stdout.trim(), new RegExp(`snapshots/${hub.commit}/tiny-F32\\.gguf$`));

  const list = await runCli(["pull", REPO, "--list"], env);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(list.stdout.trim().split("\n").map((line) => line.split(/\s+/)[0]), ["Q4_0", "Q4_K_M", "Q8_0", "F32"]);
  assert.match(list.stdout, /Q4_K_M\s+195\.3 KiB\s+tiny-Q4_K_M-00001-of-00002\.gguf and 1 more part$/m);

  const models = await runCli(["models"], env);
  assert.equal(models.code, 0, models.stderr);
  assert.match(models.stdout, /SmallThinkerTest\/Tiny-GGUF\s+tiny-F32\.gguf\s+\d+(\.\d+)? MiB\s+F32\s+[0-9a-f]{8} \(main\)/);

  const run = await runCli(["run", "-m", `hf:${REPO}:f32`, "-p", "Hello", "-n", "3", "--seed", "1"], env);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /generated 3 tokens/);
  assert.doesNotMatch(run.stderr, /downloading/, "the second use comes from the cache");

  // A split model runs from its first part, the other beside it in the snapshot: as the whole file does.
  const split = await runCli(["run", "-m", `hf:${SPLIT}`, "-p", "Hello", "-n", "3", "--seed", "1"], env);
  assert.equal(split.code, 0, split.stderr);
  assert.match(split.stderr, /downloading SmallThinkerTest\/Split-GGUF\/tiny-F32-00001-of-00002\.gguf[\s\S]*downloading SmallThinkerTest\/Split-GGUF\/tiny-F32-00002-of-00002\.gguf/);
  assert.equal(split.stdout, run.stdout);
  const info = await runCli(["info", "-m", `hf:${SPLIT}`], env);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, new RegExp(`snapshots/${hub.commit}/tiny-F32-00001-of-00002\\.gguf: GGUF v3, split in 2 parts`));
  assert.match(info.stdout, /^runs: yes/m);
});
