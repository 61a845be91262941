import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChatTemplateError, type ChatMessage } from "../src/chat/index.js";
import { loadModel, type Model } from "../src/engine/model.js";
import { gv } from "../src/gguf/writer.js";
import { testModel } from "./helpers/models.js";
import { rewriteGguf } from "./helpers/rewrite.js";

const dir = mkdtempSync(join(tmpdir(), "st-engine-chat-"));
const models: Model[] = [];
after(async () => {
  for (const model of models) await model.close();
  rmSync(dir, { recursive: true, force: true });
});

async function open(path: string, contextSize: number): Promise<Model> {
  const model = await loadModel(path, { contextSize });
  models.push(model);
  return model;
}

function conversation(turns: number): ChatMessage[] {
  const messages: ChatMessage[] = [{ role: "system", content: "You are terse." }];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: "user", content: `question ${i}: what comes after ${i}?` }, { role: "assistant", content: `the answer is ${i + 1}` });
  }
  messages.push({ role: "user", content: "and now?" });
  return messages;
}

test("contextOverflow drop-oldest keeps the system message and the last one, drops whole turns, and fits half the context", async () => {
  const model = await open(testModel({ preset: "demo" }), 128);
  const messages = conversation(12);
  assert.ok(model.tokenize(model.renderChat(messages)).length > 128, "the conversation does not fit");
  assert.throws(() => model.chat(messages, { maxTokens: 4 }), RangeError, "the default is to refuse");
  const result = await model.chat(messages, { maxTokens: 4, contextOverflow: "drop-oldest", seed: 1 }).complete();
  const dropped = result.droppedMessages!;
  assert.ok(dropped > 0 && dropped % 2 === 0, `whole user+assistant turns: ${dropped}`);
  const kept = [messages[0]!, ...messages.slice(1 + dropped)];
  assert.equal(kept[1]!.role, "user");
  assert.equal(result.promptTokens, model.tokenize(model.renderChat(kept)).length, "the prompt is the kept conversation");
  assert.ok(result.promptTokens + 4 <= 64, `prompt ${result.promptTokens} + reply fit half the context`);
  // one turn fewer would not have fitted: nothing was dropped needlessly
  const oneMore = [messages[0]!, ...messages.slice(1 + dropped - 2)];
  assert.ok(model.tokenize(model.renderChat(oneMore)).length + 4 > 64);
  const fits = await model.chat(messages.slice(-3), { maxTokens: 2, contextOverflow: "drop-oldest" }).complete();
  assert.equal(fits.droppedMessages, 0);
});

test("a last message too long for the context is refused even with drop-oldest, naming the sizes", async () => {
  const model = await open(testModel({ preset: "demo" }), 64);
  const messages: ChatMessage[] = [{ role: "system", content: "x" }, { role: "user", content: "word ".repeat(100) }];
  assert.throws(() => model.chat(messages, { contextOverflow: "drop-oldest" }), /the last message is too long for the context: with the system prompt and the chat template it takes \d+ tokens; the context holds 64/);
  assert.throws(() => model.chat(messages, { contextOverflow: "sometimes" as "error" }), /contextOverflow must be "error" or "drop-oldest"/);
});

test("a model whose chat template does not parse still completes text; chat names the file and key", async () => {
  const broken = join(dir, "broken.gguf");
  rewriteGguf(testModel({ preset: "demo" }), broken, { setKeys: [["tokenizer.chat_template", gv.str("{% if messages %}{{ messages[0].content }")]] });
  const model = await open(broken, 64);
  const result = await model.generate("Hello", { maxTokens: 2 }).complete();
  assert.equal(result.completionTokens, 2);
  assert.throws(
    () => model.chat([{ role: "user", content: "hi" }]),
    (error: Error) => error instanceof ChatTemplateError && error.message.startsWith(`${broken}: the model's chat template (tokenizer.chat_template) could not be parsed: `) && error.cause instanceof Error,
  );
});

test("onProgress reports the weights as they load, ending at the total", async () => {
  const path = testModel({ preset: "demo" });
  const calls: [number, number][] = [];
  const model = await loadModel(path, { contextSize: 64, onProgress: (loaded, total) => calls.push([loaded, total]) });
  models.push(model);
  assert.ok(calls.length > 3, `${calls.length} calls`);
  const total = calls[0]![1];
  assert.ok(calls.every(([, t]) => t === total), "one total");
  assert.ok(calls.every(([loaded], i) => i === 0 || loaded >= calls[i - 1]![0]), "never backwards");
  assert.deepEqual(calls.at(-1), [total, total]);
  // everything but the token embeddings (read per token) is loaded: most of the file
  assert.ok(total > 0.5 * statSync(path).size && total <= statSync(path).size, `${total} of ${statSync(path).size}`);
});
