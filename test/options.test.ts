import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadModel, Model } from "../src/engine/model.js";
import { GenerateOptions, GenerationResult } from "../src/engine/generation.js";
import { startServer, RunningServer } from "../src/server/index.js";
import { testModel } from "./helpers/models.js";
import { BASE, OPTION_CASES, Replayer, ranked } from "./helpers/options.js";

// Every sampling and request option must reach the sampler, in the library, the server (chat and
// text completions) and the CLI (run and chat). The library is held to an independent replay (the
// model's logits step by step through a Sampler of exactly those options); the server and CLI to
// the library; and each option is set where it changes the tokens, so an option dropped anywhere
// gives the base's output instead and fails.

// untied output weights: this tiny model's text varies instead of repeating one token
const PATH = testModel({ preset: "tiny", shape: { tiedOutput: false } });
const PROMPT = "Once upon a time";
const MESSAGES: { role: "user"; content: string }[] = [{ role: "user", content: "Tell me a story about a cat." }];
const MODEL_ID = "tiny-options";

let model: Model;
let replayer: Replayer;
let server: RunningServer;
let promptIds: number[];
let chatIds: number[];

before(async () => {
  model = await loadModel(PATH, { contextSize: 256, kvType: "f32" });
  replayer = await Replayer.open(model, "f32");
  server = await startServer({ model, modelId: MODEL_ID, port: 0 });
  promptIds = model.tokenize(PROMPT);
  chatIds = model.tokenize(model.renderChat(MESSAGES));
});
after(async () => {
  await server.close();
  replayer.close();
  await model.close();
});

const text = (options: GenerateOptions) => model.generate(PROMPT, options).complete();
const chat = (options: GenerateOptions) => model.chat(MESSAGES, options).complete();

describe("library", () => {
  for (const option of OPTION_CASES) {
    test(`${option.name}: generate and chat draw exactly what a Sampler with these options draws, and not the base's tokens`, async () => {
      for (const [run, prompt] of [[text, () => promptIds], [chat, () => chatIds]] as const) {
        const options = { ...option.library, ignoreEos: true };
        const got = await run(options);
        assert.deepEqual(got.tokens, (replayer.replay(prompt(), options)).tokens);
        assert.notDeepEqual(got.tokens, (await run({ ...BASE.library, ignoreEos: true })).tokens, `${option.name} changed nothing`);
      }
    });
  }

  test("top-k keeps each drawn token among the k best of its step; without it the base run goes outside", async () => {
    const options = { ...BASE.library, topK: 3, ignoreEos: true };
    const filtered = replayer.replay(promptIds, options);
    assert.deepEqual((await text(options)).tokens, filtered.tokens);
    filtered.tokens.forEach((token, i) => assert.ok(ranked(filtered.steps[i]!).slice(0, 3).includes(token), `step ${i}`));
    const base = replayer.replay(promptIds, { ...BASE.library, ignoreEos: true });
    assert.ok(base.tokens.some((token, i) => !ranked(base.steps[i]!).slice(0, 3).includes(token)), "the base run stays in the top 3 anyway");
  });

  test("min-p keeps each drawn token at least minP times as likely as its step's best", async () => {
    const minP = 0.2;
    const options = { ...BASE.library, minP, ignoreEos: true };
    const filtered = replayer.replay(promptIds, options);
    assert.deepEqual((await text(options)).tokens, filtered.tokens);
    const likelyEnough = (logits: Float32Array, token: number) => logits[token]! >= Math.max(...logits) + Math.log(minP);
    filtered.tokens.forEach((token, i) => assert.ok(likelyEnough(filtered.steps[i]!, token), `step ${i}`));
    const base = replayer.replay(promptIds, { ...BASE.library, ignoreEos: true });
    assert.ok(base.tokens.some((token, i) => !likelyEnough(base.steps[i]!, token)), "the base run never draws below min-p anyway");
  });

  test("top-p keeps each drawn token inside its step's nucleus", async () => {
    const topP = 0.3;
    const options = { ...BASE.library, topP, ignoreEos: true };
    const filtered = replayer.replay(promptIds, options);
    assert.deepEqual((await text(options)).tokens, filtered.tokens);
    const nucleus = (logits: Float32Array) => {
      const order = ranked(logits);
      const max = logits[order[0]!]!;
      const weights = order.map((id) => Math.exp(logits[id]! - max));
      const total = weights.reduce((a, b) => a + b, 0);
      let cumulative = 0;
      const cut = weights.findIndex((w) => (cumulative += w) >= topP * total);
      return order.slice(0, cut + 1);
    };
    filtered.tokens.forEach((token, i) => assert.ok(nucleus(filtered.steps[i]!).includes(token), `step ${i}`));
    const base = replayer.replay(promptIds, { ...BASE.library, ignoreEos: true });
    assert.ok(base.tokens.some((token, i) => !nucleus(base.steps[i]!).includes(token)), "the base run stays in the nucleus anyway");
  });

  test("top-k = 1 at a high temperature is greedy: the argmax of every step", async () => {
    const options = { ...BASE.library, topK: 1, ignoreEos: true };
    const greedy = replayer.replay(promptIds, { ...options, temperature: 0 });
    greedy.tokens.forEach((token, i) => assert.equal(token, ranked(greedy.steps[i]!)[0], `step ${i}`));
    assert.deepEqual((await text(options)).tokens, greedy.tokens);
    assert.deepEqual((await text({ ...BASE.library, temperature: 0, ignoreEos: true })).tokens, greedy.tokens);
  });

  test("maxTokens cuts the same draws short with finish reason length", async () => {
    const full = await text({ ...BASE.library, ignoreEos: true });
    const cut = await text({ ...BASE.library, maxTokens: 7, ignoreEos: true });
    assert.equal(cut.completionTokens, 7);
    assert.equal(cut.finishReason, "length");
    assert.deepEqual(cut.tokens, full.tokens.slice(0, 7));
  });

  test("ignoreEos draws past an end-of-generation token that otherwise ends the generation", async () => {
    const found = await eosSeed();
    const stopped = await text(found.options);
    assert.equal(stopped.finishReason, "stop");
    assert.deepEqual(stopped.tokens, found.replayed.tokens);
    const past = await text({ ...found.options, ignoreEos: true });
    assert.equal(past.finishReason, "length");
    assert.equal(past.completionTokens, found.options.maxTokens);
    assert.ok(model.tokenizer.isEndOfGeneration(past.tokens[stopped.completionTokens]!), "the end token is drawn where the other run stopped");
    assert.deepEqual(past.tokens.slice(0, stopped.completionTokens), stopped.tokens);
  });
});

/**
 * A seed whose text completion ends at an end-of-generation token before maxTokens: searched for
 * by replay (two such tokens in 1261 at temperature 2, so a few dozen seeds), not written down.
 */
let eosFound: Promise<{ options: GenerateOptions & { maxTokens: number }; replayed: ReturnType<Replayer["replay"]> }> | undefined;
function eosSeed() {
  eosFound ??= (async () => {
    for (let seed = 1; seed <= 400; seed++) {
      const options = { ...BASE.library, seed, temperature: 2, maxTokens: 48 };
      const replayed = replayer.replay(promptIds, options);
      if (replayed.finishReason === "stop" && replayed.tokens.length > 0) return { options, replayed };
    }
    throw new Error("no seed in 1..400 draws an end-of-generation token within 48 tokens");
  })();
  return eosFound;
}

async function post(path: string, body: Record<string, unknown>): Promise<Record<string, any>> {
  const response = await fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const json = (await response.json()) as Record<string, any>;
  assert.equal(response.status, 200, JSON.stringify(json));
  return json;
}

function assertSame(whole: Record<string, any>, content: string, expected: GenerationResult, what: string): void {
  assert.equal(content, expected.text, what);
  assert.equal(whole.choices[0].finish_reason, expected.finishReason, what);
  assert.equal(whole.usage.completion_tokens, expected.completionTokens, what);
}

describe("server", () => {
  for (const option of OPTION_CASES.filter((c) => !c.serverLacks)) {
    test(`${option.name}: chat and text completions give the library's text for the same options`, async () => {
      const expectedChat = await chat(option.library);
      assert.notEqual(expectedChat.text, (await chat(BASE.library)).text, `${option.name} changed nothing in chat`);
      const whole = await post("/v1/chat/completions", { model: MODEL_ID, messages: MESSAGES, ...option.api });
      assertSame(whole, whole.choices[0].message.content, expectedChat, "chat");

      const expectedText = await text(option.library);
      assert.notEqual(expectedText.text, (await text(BASE.library)).text, `${option.name} changed nothing in text`);
      const completion = await post("/v1/completions", { model: MODEL_ID, prompt: PROMPT, ...option.api });
      assertSame(completion, completion.choices[0].text, expectedText, "text");
    });
  }

  test("max_tokens and max_completion_tokens cut the library's draws; the newer name wins", async () => {
    for (const [path, body, run] of [
      ["/v1/chat/completions", { messages: MESSAGES }, chat],
      ["/v1/completions", { prompt: PROMPT }, text],
    ] as const) {
      const expected = await run({ ...BASE.library, maxTokens: 5, ignoreEos: true });
      for (const limits of [{ max_tokens: 5 }, { max_completion_tokens: 5 }, { max_tokens: 30, max_completion_tokens: 5 }]) {
        const whole = await post(path, { model: MODEL_ID, ...body, ...BASE.api, ...limits, ignore_eos: true });
        assert.equal(whole.usage.completion_tokens, 5, `${path} ${JSON.stringify(limits)}`);
        assert.equal(whole.choices[0].finish_reason, "length");
        assert.equal(whole.choices[0].message?.content ?? whole.choices[0].text, expected.text);
      }
    }
  });

  test("ignore_eos draws past the end-of-generation token, in chat and text completions", async () => {
    const { options } = await eosSeed();
    const api = { ...BASE.api, seed: options.seed, temperature: options.temperature, max_tokens: options.maxTokens };
    const stopped = await post("/v1/completions", { model: MODEL_ID, prompt: PROMPT, ...api });
    assert.equal(stopped.choices[0].finish_reason, "stop");
    assert.equal(stopped.choices[0].text, (await text(options)).text);
    const past = await post("/v1/completions", { model: MODEL_ID, prompt: PROMPT, ...api, ignore_eos: true });
    assert.equal(past.choices[0].finish_reason, "length");
    assert.equal(past.usage.completion_tokens, options.maxTokens);
    assert.equal(past.choices[0].text, (await text({ ...options, ignoreEos: true })).text);
    // chat: the same flag through the other endpoint (whether this seed ends the chat early or not)
    const chatPast = await post("/v1/chat/completions", { model: MODEL_ID, messages: MESSAGES, ...api, ignore_eos: true });
    assert.equal(chatPast.usage.completion_tokens, options.maxTokens);
    assert.equal(chatPast.choices[0].message.content, (await chat({ ...options, ignoreEos: true })).text);
  });

  test("stop ends chat and text completions where the library's stop does", async () => {
    for (const [path, body, run, read] of [
      ["/v1/chat/completions", { messages: MESSAGES }, chat, (j: Record<string, any>) => j.choices[0].message.content],
      ["/v1/completions", { prompt: PROMPT }, text, (j: Record<string, any>) => j.choices[0].text],
    ] as const) {
      const full = await run({ ...BASE.library, ignoreEos: true });
      const stop = full.text.slice(8, 11);
      const expected = await run({ ...BASE.library, ignoreEos: true, stop: [stop] });
      assert.equal(expected.text, full.text.slice(0, full.text.indexOf(stop)));
      const whole = await post(path, { model: MODEL_ID, ...body, ...BASE.api, ignore_eos: true, stop });
      assert.equal(read(whole), expected.text, path);
      assert.equal(whole.choices[0].finish_reason, "stop");
    }
  });
});

const cli = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

function runCli(args: string[], input = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

// One thread per process, several processes side by side: a process mostly waits on its start.
describe("CLI", { concurrency: 4 }, () => {
  const common = ["-m", PATH, "--kv-type", "f32", "-t", "1"];
  for (const option of [{ name: "base", ...BASE, serverLacks: false }, ...OPTION_CASES]) {
    test(`${option.name}: run prints the library's completion; chat prints the library's reply`, async () => {
      const [run, chatRun] = await Promise.all([
        runCli(["run", ...common, "-p", PROMPT, ...option.cli]),
        runCli(["chat", ...common, ...option.cli], `${MESSAGES[0]!.content}\n`),
      ]);
      assert.equal(run.code, 0, run.stderr);
      const expectedText = await text(option.library);
      assert.equal(run.stdout, `${PROMPT}${expectedText.text}\n`);
      assert.equal(chatRun.code, 0, chatRun.stderr);
      const expectedChat = await chat(option.library);
      assert.equal(chatRun.stdout, `${expectedChat.text}\n`);
      if (option.name !== "base") {
        assert.notEqual(expectedText.text, (await text(BASE.library)).text, `${option.name} changed nothing`);
        assert.notEqual(expectedChat.text, (await chat(BASE.library)).text, `${option.name} changed nothing in chat`);
      }
    });
  }

  test("-n and --stop reach run and chat", async () => {
    const full = await text({ ...BASE.library });
    const stop = full.text.slice(6, 9);
    const [cut, stopped, chatStopped] = await Promise.all([
      runCli(["run", ...common, "-p", PROMPT, ...BASE.cli, "-n", "5"]),
      runCli(["run", ...common, "-p", PROMPT, ...BASE.cli, "--stop", "never appears", "--stop", stop]),
      runCli(["chat", ...common, ...BASE.cli, "-n", "4"], `${MESSAGES[0]!.content}\n`),
    ]);
    const expectedCut = await text({ ...BASE.library, maxTokens: 5 });
    assert.equal(expectedCut.completionTokens, 5);
    assert.equal(cut.stdout, `${PROMPT}${expectedCut.text}\n`, cut.stderr);
    const expectedStop = await text({ ...BASE.library, stop: ["never appears", stop] });
    assert.equal(expectedStop.text, full.text.slice(0, full.text.indexOf(stop)));
    assert.equal(stopped.stdout, `${PROMPT}${expectedStop.text}\n`, stopped.stderr);
    const expectedChat = await chat({ ...BASE.library, maxTokens: 4 });
    assert.equal(expectedChat.completionTokens, 4);
    assert.equal(chatStopped.stdout, `${expectedChat.text}\n`, chatStopped.stderr);
  });
});
