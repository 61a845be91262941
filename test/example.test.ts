import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { loadModel } from "../src/engine/model.js";
import { testModel } from "./helpers/models.js";

test("the README's library example prints the library's completion and chat reply", async () => {
  const script = fileURLToPath(new URL("../examples/library.js", import.meta.url));
  const path = testModel({ preset: "demo" });
  // a timeout so a hung example fails instead of stalling the suite, not a speed check
  const { stdout } = await promisify(execFile)(process.execPath, [script, path], { timeout: 60_000 });
  const lines = stdout.split("\n");
  assert.ok(lines[0]!.length > 0, "the completion streamed some text");
  assert.match(stdout, /\[\d+ tokens, finish: (stop|length)\]\n$/);

  // the same calls as examples/library.ts, in this process
  const model = await loadModel(path, { contextSize: 2048 });
  try {
    const completion = await model.generate("The capital of France is", { maxTokens: 16, temperature: 0 }).complete();
    const reply = await model
      .chat(
        [
          { role: "system", content: "You are a concise assistant." },
          { role: "user", content: "Name three primary colors." },
        ],
        { maxTokens: 32, seed: 1, stop: ["\n\n"] },
      )
      .complete();
    assert.ok(completion.text.length > 0 && reply.text.length > 0);
    assert.equal(stdout, `${completion.text}\n${reply.text}\n[${reply.completionTokens} tokens, finish: ${reply.finishReason}]\n`);
  } finally {
    await model.close();
  }
});
