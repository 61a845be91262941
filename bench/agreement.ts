import type { Token } from "node-llama-cpp";
import { GgmlType } from "../src/gguf/types.js";
import { openLlamaDirect } from "../src/bench/llama-direct.js";
import { testModel } from "../test/helpers/models.js";
import { Agreement, agreement, compareWithOracle, engineLogits, randomTokens } from "../test/helpers/compare.js";

// The real error of every agreement test against llama.cpp (and of the engine against itself where
// a test compares two layouts), to set and re-check the tests' bounds.
//   node dist/bench/agreement.js [name filter]

const FILTER = process.argv[2] ?? "";

function show(name: string, r: Agreement): void {
  console.log(
    `${name.padEnd(44)} maxRelative ${r.maxRelative.toExponential(2)}  medianRelative ${r.medianRelative.toExponential(2)}  ` +
      `meanKl ${r.meanKl.toExponential(2)}  maxKl ${r.maxKl.toExponential(2)}  top1 ${r.top1.toFixed(4)} of ${r.positions}`,
  );
}

const oracleCases: [string, () => string, number][] = [
  ["F32 tiny", () => testModel({ preset: "tiny" }), 96],
  ["F32 softmax, separate output", () => testModel({ preset: "tiny", shape: { gating: "softmax", tiedOutput: false } }), 96],
  ["F32 tiny-21b", () => testModel({ preset: "tiny-21b" }), 96],
  ["F32 tiny-swa, 4400 positions", () => testModel({ preset: "tiny-swa" }), 4400],
  ["Q8_0 tiny, separate output", () => testModel({ preset: "tiny", type: GgmlType.Q8_0, shape: { tiedOutput: false } }), 300],
  ["Q4_0 tiny, separate output", () => testModel({ preset: "tiny", type: GgmlType.Q4_0, shape: { tiedOutput: false } }), 300],
];
for (const [name, model, positions] of oracleCases) {
  if (name.includes(FILTER)) show(name, await compareWithOracle(model(), positions));
}

if ("down layouts".includes(FILTER) || FILTER === "") {
  const tokens = randomTokens(48, 1000);
  const upstream = await engineLogits(testModel({ preset: "tiny", shape: { downLayout: "upstream", expertFfn: 96 } }), tokens);
  const transposed = await engineLogits(testModel({ preset: "tiny", shape: { downLayout: "transposed", expertFfn: 96 } }), tokens);
  show("engine: down layouts (upstream vs transposed)", agreement(upstream, transposed));
}

if ("llama-direct".includes(FILTER) || FILTER === "") {
  // as test/llama-direct.test.ts: libllama one token per decode against node-llama-cpp's batch
  const path = testModel({ preset: "tiny", type: GgmlType.Q4_0, shape: { tiedOutput: false } });
  const { getOracle } = await import("../test/helpers/oracle.js");
  const llama = await getOracle();
  const model = await llama.loadModel({ modelPath: path, useMmap: true });
  const context = await model.createContext({ contextSize: 256, batchSize: 64, threads: 2, flashAttention: false });
  const sequence = context.getSequence();
  const prompt = randomTokens(16, 1000, 3);
  const greedy: number[] = [];
  for await (const token of sequence.evaluate(prompt as Token[], { temperature: 0 })) {
    greedy.push(token);
    if (greedy.length === 24) break;
  }
  await sequence.clearHistory();
  const forced = [...prompt, ...greedy] as Token[];
  const results = await sequence.controlledEvaluate(forced.map((t) => [t, { generateNext: { logits: true } }]));
  const direct = openLlamaDirect({ modelPath: path, contextSize: 256, batchSize: 64, threads: 2 });
  const theirs = results.map((r) => {
    const row = new Float32Array(direct.vocabSize);
    for (const [token, value] of r?.next.logits ?? []) row[token] = value;
    return row;
  });
  const ours = forced.map((token) => {
    direct.prefill([token]);
    return direct.lastLogits();
  });
  direct.close();
  await context.dispose();
  await model.dispose();
  show("libllama direct vs node-llama-cpp (Q4_0)", agreement(theirs, ours));
}
process.exit(0);
