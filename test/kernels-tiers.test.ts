import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

// kernels.test.ts again, in child processes pinned to one V8 WebAssembly tier (Liftoff, the baseline
// compiler code runs in first, and TurboFan, which replaces it once warm), for both builds: results
// must not change when the engine tiers up.

const suite = fileURLToPath(new URL("./kernels.test.js", import.meta.url));
const tiers = { "Liftoff only": ["--liftoff", "--no-wasm-tier-up"], "TurboFan only": ["--no-liftoff"] };

function runSuite(flags: string[], simd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    // Without the parent runner's context, the child runs the suite as a test run of its own.
    const { NODE_TEST_CONTEXT: _parent, ...env } = process.env;
    const child = spawn(process.execPath, [...flags, "--test", "--test-reporter=tap", suite], {
      env: { ...env, SMALLTHINKER_KERNELS_SIMD: simd },
      stdio: ["ignore", "pipe", "pipe"],
      // A hang (say, a lost wake-up in the pool) fails the test instead of stalling the run.
      timeout: 120_000,
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("close", (code) => resolve({ code, output }));
  });
}

for (const simd of ["relaxed", "simd128"]) {
  for (const [tier, flags] of Object.entries(tiers)) {
    test(`kernels suite, ${simd} build, ${tier}`, async () => {
      const { code, output } = await runSuite(flags, simd);
      assert.equal(code, 0, output.split("\n").filter((line) => /not ok|error|Error/.test(line)).slice(0, 40).join("\n"));
      assert.match(output, /# pass [1-9]/);
      assert.match(output, /# fail 0/);
    });
  }
}
