import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gv } from "../src/gguf/writer.js";
import { COMMANDS } from "../src/cli/commands/index.js";
import { testModel } from "./helpers/models.js";
import { rewriteGguf } from "./helpers/rewrite.js";

const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const root = fileURLToPath(new URL("../../", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "st-habits-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const demo = testModel({ preset: "demo" });

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

const noStack = (stderr: string) => assert.doesNotMatch(stderr, /^\s+at /m, `stack trace: ${stderr}`);

test("--version prints the package's version", async () => {
  const { code, stdout } = await run(["--version"]);
  assert.equal(code, 0);
  assert.equal(stdout.trim(), (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version);
});

test("the prompt comes from -p, -p - (standard input), -f FILE, or piped standard input", async () => {
  const base = ["run", "-m", demo, "-n", "2", "--seed", "1", "--quiet"];
  const dash = await run([...base, "-p", "-"], "From the pipe\n");
  assert.equal(dash.code, 0, dash.stderr);
  assert.ok(dash.stdout.startsWith("From the pipe") && !dash.stdout.startsWith("From the pipe\n"), dash.stdout);
  const piped = await run(base, "Piped prompt\n");
  assert.ok(piped.stdout.startsWith("Piped prompt"), piped.stdout);
  const empty = await run(base, "");
  assert.ok(empty.stdout.startsWith("Once upon a time"), "an empty pipe leaves the default prompt");
  writeFileSync(join(dir, "prompt.txt"), "From a file\n");
  const file = await run([...base, "-f", join(dir, "prompt.txt")]);
  assert.ok(file.stdout.startsWith("From a file") && !file.stdout.startsWith("From a file\n"), file.stdout);
  const both = await run([...base, "-p", "x", "-f", join(dir, "prompt.txt")]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /give -p or -f, not both/);
  const missing = await run([...base, "-f", join(dir, "nope.txt")]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /-f .*nope\.txt: no such file/);
});

test("-n -1 generates until the context is full; --json prints the result as one object", async () => {
  const { code, stdout, stderr } = await run(["run", "-m", demo, "-p", "Hello", "-n", "-1", "--ctx", "24", "--seed", "3", "--json"]);
  assert.equal(code, 0, stderr);
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 1, "one JSON object, nothing else on stdout");
  const result = JSON.parse(lines[0]!) as { text: string; tokens: number[]; promptTokens: number; completionTokens: number; finishReason: string; timings: Record<string, number> };
  assert.equal(result.finishReason, "length");
  // the context holds the prompt and every generated token but the last, which needs no slot
  assert.equal(result.promptTokens + result.completionTokens, 24 + 1, "the context filled up");
  assert.equal(result.tokens.length, result.completionTokens);
  assert.equal(typeof result.text, "string");
  for (const key of ["queuedMs", "promptMs", "firstTokenMs", "generateMs"]) assert.equal(typeof result.timings[key], "number");
});

test("parser errors are the CLI's own, with balanced quotes and a --help hint", async () => {
  const cases: [string[], RegExp][] = [
    [["run", "--bogus"], /^smallthinker run: unknown option --bogus$/m],
    [["run", "-p"], /^smallthinker run: --prompt needs a value$/m],
    [["run", "--chat=yes"], /^smallthinker run: --chat takes no value$/m],
    [["run", "-p", "--chat"], /^smallthinker run: --prompt needs a value \(one that starts with "-" is written --prompt=VALUE\)$/m],
    [["serve", "--temp", "1"], /^smallthinker serve: unknown option --temp$/m],
    [["bench", "--ctx", "512"], /^smallthinker bench: unknown option --ctx$/m],
    [["chat", "extra"], /^smallthinker chat: unexpected argument "extra"$/m],
    [["run", "-n", "-2"], /--max-tokens: expected a whole number from -1 to/],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await run(args);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.match(stderr, message, args.join(" "));
    noStack(stderr);
    if (!/max-tokens/.test(stderr)) assert.match(stderr, new RegExp(`Run "smallthinker ${args[0]} --help" to see its options\\.`));
    for (const quote of ["'", '"']) assert.equal(stderr.split(quote).length % 2, 1, `unbalanced ${quote} in ${stderr}`);
  }
});

test("each command's --help lists exactly the options its parser takes", async () => {
  for (const [name, spec] of Object.entries(COMMANDS)) {
    if (!spec.options) continue;
    const { code, stdout } = await run([name, "--help"]);
    assert.equal(code, 0, name);
    const listed = new Set([...stdout.matchAll(/(?<![\w-])--([a-z][\w-]*)/g)].map((m) => m[1]!));
    const taken = new Set(Object.keys(spec.options));
    assert.deepEqual([...listed].filter((o) => !taken.has(o)), [], `${name} --help lists options it rejects`);
    assert.deepEqual([...taken].filter((o) => !listed.has(o)), [], `${name} --help leaves out options it takes`);
    for (const [option, { short }] of Object.entries(spec.options)) {
      if (short) assert.match(stdout, new RegExp(`-${short}, --${option}\\b`), `${name}: -${short} for --${option}`);
    }
  }
});

test("settings that cannot take effect get a one-line warning each", async () => {
  const { code, stderr } = await run([
    "run", "-m", demo, "-p", "Hi", "-n", "1", "--quiet",
    "--threads", String(availableParallelism() + 1), "--memory", "1000TiB", "--ctx", "100000", "--system", "Be brief.",
  ]);
  assert.equal(code, 0, stderr);
  const warnings = stderr.split("\n").filter((line) => line.startsWith("warning: "));
  assert.equal(warnings.length, 4, stderr);
  assert.match(warnings.join("\n"), new RegExp(`--threads ${availableParallelism() + 1} is more than the ${availableParallelism()} cores`));
  assert.match(warnings.join("\n"), /--memory 1000\.0 TiB is more than the .* this machine has/);
  assert.match(warnings.join("\n"), /--ctx 100000 is more than the model's context of 8192 tokens: using 8192/);
  assert.match(warnings.join("\n"), /--system has no effect without --chat/);
  const quiet = await run(["run", "-m", demo, "-p", "Hi", "-n", "1", "--quiet", "--threads", "1", "--ctx", "64"]);
  assert.doesNotMatch(quiet.stderr, /warning/);
});

test("chat: /help lists the commands, an unknown /command is reported and not sent, //text is sent", async () => {
  const { code, stdout, stderr } = await run(["chat", "-m", demo, "-n", "2", "--seed", "1", "--stats"], "/help\n/frobnicate now\n//slash\nhello\n");
  assert.equal(code, 0, stderr);
  assert.match(stderr, /\/reset .*\n.*\/exit/);
  assert.match(stderr, /unknown command \/frobnicate/);
  // two messages sent (//slash and hello): two replies, two speed lines
  assert.equal(stderr.match(/generated 2 tokens/g)?.length, 2, stderr);
  assert.equal(stdout.split("\n").filter(Boolean).length <= 2, true, stdout);
  assert.doesNotMatch(stdout, /> /);
});

test("chat drops the oldest turns when the conversation outgrows the context, says so once, and goes on", async () => {
  const messages = Array.from({ length: 8 }, (_, i) => `message number ${i} with a few more words in it`);
  const long = "word ".repeat(300);
  const input = [...messages.slice(0, 4), long, ...messages.slice(4)].join("\n") + "\n";
  const { code, stderr } = await run(["chat", "-m", demo, "--ctx", "96", "-n", "8", "--seed", "1", "--stats", "--system", "Be brief."], input);
  assert.equal(code, 0, stderr);
  noStack(stderr);
  assert.equal(stderr.match(/outgrew the 96-token context/g)?.length, 1, stderr);
  assert.match(stderr, /error: the last message is too long for the context: .* takes \d+ tokens; the context holds 96; the message was not sent/);
  // every message but the long one was answered, after it too
  assert.equal(stderr.match(/generated \d+ tokens/g)?.length, messages.length, stderr);
});

test("a chat template that does not parse: plain run works, --chat and chat fail in one line naming the file and key", async () => {
  const broken = join(dir, "broken-template.gguf");
  rewriteGguf(demo, broken, { setKeys: [["tokenizer.chat_template", gv.str("{% for message in messages %}{{ message.content }")]] });
  const plain = await run(["run", "-m", broken, "-p", "Hi", "-n", "2", "--quiet"]);
  assert.equal(plain.code, 0, plain.stderr);
  for (const args of [["run", "-m", broken, "--chat", "-p", "Hi", "-n", "2"], ["chat", "-m", broken, "-n", "2"]]) {
    const { code, stderr } = await run(args, "hello\n");
    assert.equal(code, 1, stderr);
    noStack(stderr);
    const errors = stderr.split("\n").filter((line) => line.startsWith("error: "));
    assert.equal(errors.length, 1, stderr);
    assert.match(errors[0]!, /broken-template\.gguf: the model's chat template \(tokenizer\.chat_template\) could not be parsed: \S/);
  }
});

test("a hostile chat template is stopped with an error, not a heap abort", async () => {
  const hostile = join(dir, "hostile-template.gguf");
  rewriteGguf(demo, hostile, { setKeys: [["tokenizer.chat_template", gv.str("{% for i in range(100000000) %}x{% endfor %}")]] });
  const { code, stderr } = await run(["run", "-m", hostile, "--chat", "-p", "Hi", "-n", "2"]);
  assert.equal(code, 1, stderr);
  noStack(stderr);
  assert.match(stderr, /error: the model's chat template was stopped while rendering: range\(\) of 100000000 items exceeds the limit of 100000/);
});
