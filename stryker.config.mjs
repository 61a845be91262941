// Mutation testing of the numeric and protocol core (issue 13). Not part of `npm test` or CI:
//   npm run mutation -- AREA        (AREA: sampling, model, tokenizer, experts, server, quant)
// scripts/mutation.mjs builds once, then runs Stryker with MUTATION_AREA set. Each area mutates its
// folder and runs only the test files that exercise it; a mutant runs only those of them whose
// run reached its code (coverage per test file), one at a time (--concurrency 1 leaves a core).
const AREAS = {
  sampling: {
    mutate: ["src/sampling/**/*.ts"],
    tests: ["sampling-options.test.js", "sampling-candidates.test.js", "sampling-internals.test.js", "sampling.test.js", "sampling-vocabulary.test.js"],
    // the filter chain and the penalties, without the whole-vocabulary tests: a run that fits in
    // an hour on a shared machine
    core: {
      mutate: ["src/sampling/candidates.ts", "src/sampling/penalties.ts", "src/sampling/sampler.ts"],
      tests: ["sampling-options.test.js", "sampling-candidates.test.js", "sampling-internals.test.js", "sampling.test.js"],
    },
  },
  model: {
    mutate: ["src/model/**/*.ts"],
    // agreement with llama.cpp, whose logits come from the oracle cache after the first run;
    // MUTATION_SCOPE=core leaves out plan.ts and the budget tests; numeric is RoPE and routing only
    tests: ["routing.test.js", "model-config.test.js", "agreement.test.js", "budget.test.js"],
    core: { mutate: ["src/model/**/*.ts", "!src/model/plan.ts"], tests: ["routing.test.js", "model-config.test.js", "agreement.test.js"] },
    // RoPE tables and expert routing alone: a run of minutes
    numeric: { mutate: ["src/model/rope.ts", "src/model/routing.ts"], tests: ["routing.test.js", "model-config.test.js", "agreement.test.js"] },
  },
  tokenizer: {
    mutate: ["src/tokenizer/**/*.ts"],
    tests: ["tokenizer.test.js", "tokenizer-errors.test.js", "tokenizer-pretokenizer.test.js", "tokenizer-quirks.test.js", "tokenizer-streaming.test.js", "tokenizer-oracle.test.js"],
  },
  experts: {
    // io-worker.ts runs in worker threads, which the coverage hook does not reach
    mutate: ["src/experts/**/*.ts", "!src/experts/io-worker.ts"],
    tests: ["budget.test.js"],
  },
  server: {
    // request handling: parsing, fields, errors, admission, responses
    mutate: ["src/server/**/*.ts"],
    tests: ["server-errors.test.js", "server-api.test.js", "server-queue.test.js"],
  },
  // being rewritten (another branch): configured, not yet run
  quant: {
    mutate: ["src/quant/**/*.ts"],
    tests: ["quant.test.js"],
  },
};

const area = process.env.MUTATION_AREA;
if (!area || !AREAS[area]) throw new Error(`MUTATION_AREA must be one of ${Object.keys(AREAS).join(", ")} (use npm run mutation -- AREA)`);
const scope = process.env.MUTATION_SCOPE;
if (scope && !AREAS[area][scope]) throw new Error(`MUTATION_SCOPE=${scope} is not defined for ${area}`);
const { mutate, tests } = scope ? AREAS[area][scope] : AREAS[area];
const reportName = scope ? `${area}-${scope}` : area;

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate,
  testRunner: "tap",
  // a mutant's run stops at its first failing test
  tap: { testFiles: tests.map((file) => `dist/test/${file}`), forceBail: true },
  plugins: ["@stryker-mutator/tap-runner"],
  // the instrumented TypeScript is compiled in the sandbox; the kernels (build/) come built
  buildCommand: "tsc -p tsconfig.json",
  coverageAnalysis: "perTest",
  // module-level constants would need every test file for each mutant: listed as ignored instead
  ignoreStatic: true,
  concurrency: 1,
  // a mutant that loops forever is cut off at 1.5x the normal run time plus 5 s
  timeoutMS: 5000,
  timeoutFactor: 1.5,
  incremental: true,
  incrementalFile: `reports/mutation/${reportName}-incremental.json`,
  ignorePatterns: [".cache", "dist", "scratch", "reports", "bench/results", "*.gguf", ".stryker-tmp"],
  // one sandbox folder per area, so runs of two areas never clean up each other's
  tempDirName: `.stryker-tmp/${area}`,
  cleanTempDir: true,
  reporters: ["clear-text", "progress", "json", "html"],
  jsonReporter: { fileName: `reports/mutation/${reportName}.json` },
  htmlReporter: { fileName: `reports/mutation/${reportName}.html` },
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0 },
};
