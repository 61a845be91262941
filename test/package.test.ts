import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/*
 * The package as a user gets it: `npm pack` of this checkout (already built by `npm test`),
 * installed into an empty project with npm's --offline (only the tarball and the npm cache, which
 * this checkout's own install filled), then used through npx and an ESM import. One tarball and
 * one install serve every test here.
 */

const root = fileURLToPath(new URL("../../", import.meta.url));
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { name: string; version: string; license: string; bin: Record<string, string>; engines: Record<string, string>; dependencies: Record<string, string> };
const work = mkdtempSync(join(tmpdir(), "st-package-"));
const project = join(work, "project");
/** The demo model's cache, inside the temporary folder: nothing outside it is read or written. */
const cache = join(work, "xdg-cache");
after(() => rmSync(work, { recursive: true, force: true }));

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: { ...process.env, XDG_CACHE_HOME: cache, npm_config_offline: "true", ...env }, maxBuffer: 1 << 26 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let tarball = "";
let packed: { files: { path: string }[]; size: number; unpackedSize: number };
let installed: Outcome;

/**
 * A lockfile for the empty project: the tarball, and for its dependencies the versions and
 * integrity hashes this checkout's lockfile holds, so npm installs them from its cache without
 * asking the registry anything (--offline has no package metadata to resolve ranges with).
 */
function projectLockfile(integrity: string): unknown {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as { packages: Record<string, Record<string, unknown>> };
  const relativeTarball = `file:../${tarball.slice(tarball.lastIndexOf("/") + 1)}`;
  const packages: Record<string, unknown> = {
    "": { name: "consumer", dependencies: { [manifest.name]: relativeTarball } },
    // npm links the bin from what the lockfile says of the package, so it says all of it
    [`node_modules/${manifest.name}`]: { version: manifest.version, resolved: relativeTarball, integrity, license: manifest.license, dependencies: manifest.dependencies, bin: manifest.bin, engines: manifest.engines },
  };
  // Node's lookup: a dependency of the package at `from` is in its node_modules, else an ancestor's
  const locate = (from: string, name: string): string => {
    for (let dir = from; ; dir = dir.includes("/node_modules/") ? dir.slice(0, dir.lastIndexOf("/node_modules/")) : "") {
      const candidate = dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`;
      if (lock.packages[candidate]) return candidate;
      if (!dir) throw new Error(`package-lock.json has no ${name} for ${from || "the root"}`);
    }
  };
  const queue: [string, string][] = Object.keys(manifest.dependencies).map((name) => ["", name]);
  while (queue.length > 0) {
    const [from, name] = queue.shift()!;
    const path = locate(from, name);
    if (packages[path]) continue;
    const { dev, devOptional, optional, peer, ...entry } = lock.packages[path]!;
    void dev, void peer;
    const pkg = path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
    entry.resolved ??= `https://registry.npmjs.org/${pkg}/-/${pkg.split("/").pop()}-${String(entry.version)}.tgz`;
    // optional dependencies (a progress bar for @huggingface/hub's own CLI) may be missing from the cache
    if (optional || devOptional) entry.optional = true;
    packages[path] = entry;
    for (const dependency of Object.keys({ ...(entry.dependencies as object), ...(entry.optionalDependencies as object) })) queue.push([path, dependency]);
  }
  return { name: "consumer", lockfileVersion: 3, requires: true, packages };
}

before(async () => {
  const pack = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", work], root);
  assert.equal(pack.code, 0, pack.stderr);
  packed = (JSON.parse(pack.stdout) as (typeof packed & { filename: string })[])[0]!;
  tarball = join(work, (packed as unknown as { filename: string }).filename);
  mkdirSync(project);
  const integrity = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module", dependencies: { [manifest.name]: `file:../${tarball.slice(tarball.lastIndexOf("/") + 1)}` } }));
  writeFileSync(join(project, "package-lock.json"), JSON.stringify(projectLockfile(integrity)));
  installed = await run("npm", ["install", "--offline", "--no-audit", "--no-fund"], project);
  // independent work, started together: the machine has more than one core
  version = run("npx", ["smallthinker", "--version"], project);
  completion = run("npx", ["smallthinker", "run", "-p", "Hello", "-n", "4", "--seed", "1"], project);
  writeFileSync(join(project, "generate.ts"), SCRIPT);
  // the project's own TypeScript, from this checkout: the package must not need one of its own
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  const typeRoots = join(root, "node_modules", "@types");
  typeCheck = run(process.execPath, [tsc, "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext", "--typeRoots", typeRoots, "--types", "node", "--outDir", "out", "generate.ts"], project);
});

let version: Promise<Outcome>;
let completion: Promise<Outcome>;
let typeCheck: Promise<Outcome>;

const SCRIPT = `import { loadModel, type GenerationResult } from "smallthinker";

const progress: number[] = [];
const model = await loadModel(process.argv[2]!, { contextSize: 128, onProgress: (loaded, total) => progress.push(loaded / total) });
let text = "";
const generation = model.generate("Once upon a time", { maxTokens: 6, temperature: 0 });
for await (const piece of generation) text += piece;
const result: GenerationResult = await generation.result;
const reply = await model.chat([{ role: "user", content: "Hi" }], { maxTokens: 2, contextOverflow: "drop-oldest" }).complete();
await model.close();
console.log(JSON.stringify({ text, tokens: result.completionTokens, finish: result.finishReason, progress: progress.at(-1), dropped: reply.droppedMessages }));
`;

test("the tarball holds the compiled code, the kernels, README and LICENSE, and nothing else", () => {
  const files = packed.files.map((f) => f.path).sort();
  const allowed = [/^package\.json$/, /^README\.md$/, /^LICENSE$/, /^dist\/src\/.+\.(js|d\.ts)$/, /^build\/kernels\/[a-z0-9]+\.wasm$/];
  const stray = files.filter((path) => !allowed.some((pattern) => pattern.test(path)));
  assert.deepEqual(stray, [], "files a user does not need");
  for (const needed of ["build/kernels/relaxed.wasm", "build/kernels/simd128.wasm", "dist/src/index.js", "dist/src/index.d.ts", "dist/src/cli/main.js", "dist/src/kernels/wasm/worker.js", "LICENSE", "README.md"]) {
    assert.ok(files.includes(needed), `the tarball lacks ${needed}`);
  }
  // the llama.cpp driver for the memory benchmark needs koffi, a development dependency
  assert.ok(!files.some((path) => path.includes("llama-direct")));
  assert.match(readFileSync(join(root, "LICENSE"), "utf8"), /^MIT License/);
  assert.ok(packed.size < 1 << 20, `tarball of ${packed.size} bytes`);
});

test("it installs offline into an empty project, without the build tools or llama.cpp", () => {
  assert.equal(installed.code, 0, installed.stderr);
  assert.doesNotMatch(installed.stderr, /npm warn/i, installed.stderr);
  for (const absent of ["typescript", "assemblyscript", "node-llama-cpp", "koffi"]) {
    assert.ok(!existsSync(join(project, "node_modules", absent)), `${absent} was installed`);
  }
  assert.ok(existsSync(join(project, "node_modules", manifest.name, "build", "kernels", "relaxed.wasm")));
});

test("npx smallthinker --version and run work from the installed package", async () => {
  const printed = await version;
  assert.equal(printed.code, 0, printed.stderr);
  assert.equal(printed.stdout.trim(), manifest.version);
  const { code, stdout, stderr } = await completion;
  assert.equal(code, 0, stderr);
  assert.ok(stdout.startsWith("Hello") && stdout.trim().length > "Hello".length, stdout);
  assert.match(stderr, /RANDOM WEIGHTS/);
  assert.match(stderr, /generated 4 tokens/);
  assert.ok(existsSync(join(cache, "smallthinker")), "the demo model went to XDG_CACHE_HOME");
});

test("an ESM script imports loadModel from the package, streams text, and type-checks under tsc --strict", async () => {
  const check = await typeCheck;
  assert.equal(check.code, 0, check.stdout + check.stderr);
  await completion;
  const demo = join(cache, "smallthinker", "demo-v1.gguf");
  assert.ok(existsSync(demo), "the run test generated the demo model");
  const script = await run(process.execPath, [join("out", "generate.js"), demo], project);
  assert.equal(script.code, 0, script.stderr);
  const output = JSON.parse(script.stdout) as { text: string; tokens: number; finish: string; progress: number; dropped: number };
  assert.ok(output.text.length > 0 && output.tokens === 6 && output.finish === "length", script.stdout);
  assert.equal(output.progress, 1);
  assert.equal(output.dropped, 0);
});

test("bench without node-llama-cpp says how to get it in one line, and measures smallthinker alone when asked", async () => {
  await completion;
  // the installed bin itself (npx resolves to it, as the tests above show)
  const bin = join(project, "node_modules", ".bin", "smallthinker");
  const both = await run(bin, ["bench", "--reps", "1"], project);
  assert.equal(both.code, 1);
  assert.equal(both.stderr.trim().split("\n").length, 1, both.stderr);
  assert.match(both.stderr, /node-llama-cpp, which is not installed here; install it \(npm install node-llama-cpp\) or .*--engines smallthinker/);
  const alone = await run(bin, ["bench", "--engines", "smallthinker", "--reps", "1", "--threads", "1", "--prompt-tokens", "8", "--gen-tokens", "4", "--stats-tokens", "0"], project);
  assert.equal(alone.code, 0, alone.stderr);
  assert.match(alone.stdout, /\| smallthinker \| 1 \| \d/);
});
