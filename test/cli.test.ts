import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, Model } from "../src/engine/model.js";
import { formatActivity, measureActivity } from "../src/engine/activity.js";
import { GgufFile } from "../src/gguf/reader.js";
import { testModel } from "./helpers/models.js";

const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "st-cli-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? "");
  });
}

/** The library on the same file with the CLI's defaults (f16 KV cache, context 4096). */
async function withLibrary<T>(path: string, use: (model: Model) => Promise<T>): Promise<T> {
  const model = await loadModel(path);
  try {
    return await use(model);
  } finally {
    await model.close();
  }
}

test("run streams the library's completion after the prompt and reports speed", async () => {
  const path = testModel({ preset: "demo" });
  const { code, stdout, stderr } = await run(["run", "-m", path, "-p", "Hello", "-n", "6", "--seed", "1"]);
  assert.equal(code, 0, stderr);
  assert.ok(stdout.startsWith("Hello") && stdout.length > "Hello\n".length, stdout);
  const expected = await withLibrary(path, (model) => model.generate("Hello", { maxTokens: 6, seed: 1 }).complete());
  assert.equal(expected.completionTokens, 6);
  assert.equal(stdout, `Hello${expected.text}\n`);
  assert.match(stderr, /RANDOM WEIGHTS/);
  assert.match(stderr, /generated 6 tokens .* tok\/s/);
});

test("logits writes every position's logits, equal to the library's", async () => {
  const model = testModel({ preset: "tiny" });
  const prefix = join(dir, "out");
  const { code, stderr } = await run(["logits", "-m", model, "--tokens", "5,17,300,42", "--out", prefix]);
  assert.equal(code, 0, stderr);
  const meta = JSON.parse(readFileSync(`${prefix}.json`, "utf8")) as { tokens: number[]; vocabulary: number; positions: number };
  assert.deepEqual(meta.tokens, [5, 17, 300, 42]);
  const raw = readFileSync(`${prefix}.f32`);
  assert.equal(raw.length, 4 * meta.positions * meta.vocabulary);
  const written = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
  const library = await loadModel(model, { kvType: "f32" });
  try {
    const rows: Float32Array[] = [];
    await library.logits([5, 17, 300, 42], (_, row) => rows.push(Float32Array.from(row)));
    assert.deepEqual(written, Float32Array.from(rows.flatMap((r) => [...r])));
  } finally {
    await library.close();
  }
});

test("chat answers each line with the library's reply to the conversation so far, /reset forgets it, /exit ends", async () => {
  const path = testModel({ preset: "demo" });
  const { code, stdout, stderr } = await run(["chat", "-m", path, "-n", "4", "--seed", "2", "--stats"], "hello\nand again\n/reset\nhello\n/exit\nnever read\n");
  assert.equal(code, 0, stderr);
  // one speed line per reply: three messages answered, nothing after /exit
  assert.equal(stderr.match(/generated 4 tokens/g)?.length, 3, stderr);
  const options = { maxTokens: 4, seed: 2 };
  const [first, second] = await withLibrary(path, async (model) => {
    const first = (await model.chat([{ role: "user", content: "hello" }], options).complete()).text;
    const history = [{ role: "user" as const, content: "hello" }, { role: "assistant" as const, content: first }, { role: "user" as const, content: "and again" }];
    return [first, (await model.chat(history, options).complete()).text];
  });
  assert.ok(first.length > 0 && second.length > 0);
  // piped input: stdout carries the replies alone, no "> " prompts; notices go to stderr.
  // After /reset the same first line gets the same first reply: nothing of the old turns is left.
  assert.equal(stdout, `${first}\n${second}\n${first}\n`);
  assert.match(stderr, /\(conversation cleared\)/);
});

test("synth writes what it claims and stats measures it: the library's report, within a stated band of the claims", async () => {
  const path = join(dir, "skewed.gguf");
  const shape = ["--layers", "4", "--hidden", "128", "--expert-ffn", "128", "--experts", "16", "--experts-used", "2"];
  const made = await run(["synth", "--preset", "tiny", "--type", "Q8_0", ...shape, "--skew", "0.25,0.4", "--sparsity", "0.7", "--out", path]);
  assert.equal(made.code, 0, made.stderr);
  const { code, stdout, stderr } = await run(["stats", "-m", path, "--tokens", "384"]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /ReGLU sparsity: \d+\.\d% of gate outputs ≤ 0/);
  const report = await withLibrary(path, (model) => measureActivity(model, 384));
  assert.equal(stdout, `${formatActivity(report)}\n`);

  const number = (pattern: RegExp) => Number(pattern.exec(stdout)?.[1]);
  assert.match(stdout, /file claims: 25\.0% hot experts at frequency 0\.40, sparsity 70\.0%/);
  // the bands of test/synth-claims.test.ts, which checks the generator itself: hot experts chosen
  // within 0.1 of the claimed frequency, sparsity within 0.05; a hot expert that falls under the
  // 0.3 threshold (or a cold one over it) moves the hot share by 1/16 per layer (measured 23.4%,
  // mean 0.419, sparsity 71.0%, layers 70.0–72.6%)
  const hotShare = number(/routing: (\d+\.\d)% of experts are hot/) / 100;
  assert.ok(Math.abs(hotShare - 0.25) <= 1 / 16, `hot share ${hotShare}`);
  const hotMean = number(/with mean frequency (\d\.\d+)/);
  assert.ok(Math.abs(hotMean - 0.4) <= 0.1, `hot experts' mean frequency ${hotMean}`);
  const sparsity = number(/ReGLU sparsity: (\d+\.\d)%/) / 100;
  assert.ok(Math.abs(sparsity - 0.7) <= 0.05, `sparsity ${sparsity}`);
  for (const [what, pattern] of [["min", /min (\d+\.\d)%/], ["max", /max (\d+\.\d)%/]] as const) {
    const layer = number(pattern) / 100;
    assert.ok(Math.abs(layer - 0.7) <= 0.05, `per-layer ${what} sparsity ${layer}`);
  }
});

test("synth writes a converter's layout, split in parts, and refuses what a layout cannot hold", async () => {
  const out = join(dir, "pi.gguf");
  const { code, stdout, stderr } = await run(["synth", "--preset", "tiny", "--expert-ffn", "96", "--type", "F32", "--layout", "powerinfer", "--profiler", "32", "--split", "2", "--out", out]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^wrote .*pi-00001-of-00002\.gguf and 1 more part: .*, F32, powerinfer layout, random weights \(seed 1\)/);
  const file = GgufFile.open(join(dir, "pi-00001-of-00002.gguf"));
  try {
    assert.equal(file.parts.length, 2);
    assert.deepEqual(file.tensor("blk.0.ffn_down_exps.weight").dims, [64, 96, 8], "transposed by default");
    assert.ok(file.tensorsByName.has("lm_head_profiler.weight") && !file.tensorsByName.has("output.weight"));
    assert.ok(!file.metadata.has("smallthinker.expert_gating_func"));
    assert.equal(file.metadata.getString("general.name"), "tiny");
  } finally {
    file.close();
  }
  const square = await run(["synth", "--preset", "tiny", "--type", "F32", "--layout", "powerinfer", "--header-only", "--out", join(dir, "square.gguf")]);
  assert.equal(square.code, 0, square.stderr);
  assert.match(square.stdout, /header only, no weights/);
  const cases: [string[], RegExp][] = [
    [["--layout", "llama.cpp", "--down-layout", "transposed", "--expert-ffn", "96"], /the llama\.cpp layout: llama\.cpp's converter writes ffn_down_exps as \{ffn, hidden, experts\} only/],
    [["--layout", "llama.cpp", "--profiler", "32"], /llama\.cpp cannot load a file with PowerInfer's lm_head_profiler\.weight/],
    [["--layout", "gguf"], /--layout: expected synthetic, llama\.cpp, powerinfer, got "gguf"/],
    [["--profiler", "3"], /a predictor of rank 3 holds 3 × \(64 \+ 1261\) = 3975 values, not whole Q4_0 blocks of 32/],
    [["--down-layout", "transposed"], /a transposed down matrix of square experts/],
    [["--split", "99"], /cannot split 22 tensors in 99 parts/],
  ];
  for (const [args, message] of cases) {
    const result = await run(["synth", "--preset", "tiny", "--out", join(dir, "bad.gguf"), ...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message, args.join(" "));
  }
});

test("mistakes get a clear message and a non-zero exit, never a stack trace", async () => {
  const cases: [string[], number, RegExp][] = [
    [["frobnicate"], 2, /unknown command "frobnicate"/],
    [["run", "--temp", "hot"], 2, /--temp: expected a number/],
    [["run", "-m", join(dir, "missing.gguf")], 1, /missing\.gguf: file: cannot open/],
    [["run", "-m", cli], 1, /not a GGUF file/],
    [["run", "-m", testModel({ preset: "tiny" }), "--memory", "lots"], 2, /--memory: cannot read "lots" as a size/],
    [["run", "-m", testModel({ preset: "tiny" }), "--memory", "1M"], 1, /too small .* needs at least/],
    [["logits", "-m", testModel({ preset: "tiny" }), "--tokens", "1,x", "--out", join(dir, "bad")], 2, /"x" is not a token id/],
    [["synth", "--out", join(dir, "s.gguf"), "--type", "Q5_K"], 2, /--type: unknown "Q5_K"/],
  ];
  for (const [args, expectedCode, message] of cases) {
    const { code, stderr } = await run(args);
    assert.equal(code, expectedCode, `${args.join(" ")}: ${stderr}`);
    assert.match(stderr, message, args.join(" "));
    assert.doesNotMatch(stderr, /^\s+at /m, `stack trace for ${args.join(" ")}`);
  }
  writeFileSync(join(dir, "empty.gguf"), "");
  const { code, stderr } = await run(["run", "-m", join(dir, "empty.gguf")]);
  assert.equal(code, 1);
  assert.match(stderr, /empty\.gguf: magic/);
});
