// Stream a completion and a chat reply through the library API.
// Usage: node dist/examples/library.js MODEL.gguf
import { loadModel } from "../src/index.js";

const path = process.argv[2];
if (!path) throw new Error("usage: node dist/examples/library.js MODEL.gguf");

const model = await loadModel(path, { contextSize: 2048, memory: process.env.MEMORY });
try {
  for await (const piece of model.generate("The capital of France is", { maxTokens: 16, temperature: 0 })) {
    process.stdout.write(piece);
  }
  process.stdout.write("\n");

  const reply = model.chat(
    [
      { role: "system", content: "You are a concise assistant." },
      { role: "user", content: "Name three primary colors." },
    ],
    { maxTokens: 32, seed: 1, stop: ["\n\n"] },
  );
  for await (const piece of reply) process.stdout.write(piece);
  const result = await reply.result;
  console.log(`\n[${result.completionTokens} tokens, finish: ${result.finishReason}]`);
} finally {
  await model.close();
}
