import { createRequire } from "node:module";
import type { Llama } from "node-llama-cpp";

/**
 * A run marked oracle-free (SMALLTHINKER_NO_ORACLE=1) skips every comparison with llama.cpp and
 * ggml, saying so; any other run needs them and fails, saying how to install them, where they are
 * missing. A missing oracle is never a silent pass.
 */
export const ORACLE_FREE = process.env.SMALLTHINKER_NO_ORACLE === "1";

/** Options for a test or suite that needs llama.cpp or ggml. */
export const needsOracle: { skip: string | false } = {
  skip: ORACLE_FREE ? "SMALLTHINKER_NO_ORACLE=1 marks this run oracle-free: the comparison with llama.cpp/ggml is skipped" : false,
};

const INSTALL =
  "`npm install` (with NODE_LLAMA_CPP_SKIP_DOWNLOAD=true: nothing is built or downloaded) brings node-llama-cpp 3.22.1, " +
  "its prebuilt @node-llama-cpp/linux-x64 (libllama, libggml) and koffi, which the tests call llama.cpp and ggml through; " +
  "to run without them, mark the run oracle-free with SMALLTHINKER_NO_ORACLE=1";

/** The error a test fails with when an oracle it needs cannot be loaded. */
export function oracleMissing(what: string, reason: string): Error {
  return new Error(`${what} is not available (${reason}). ${INSTALL}`);
}

let llamaPromise: Promise<Llama> | undefined;

/**
 * llama.cpp through node-llama-cpp's prebuilt CPU binary: the correctness oracle.
 * Never downloads or builds anything.
 */
export function getOracle(): Promise<Llama> {
  if (ORACLE_FREE) return Promise.reject(new Error("getOracle() in a run marked oracle-free (SMALLTHINKER_NO_ORACLE=1): give this test `needsOracle`"));
  if (!llamaPromise) {
    process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
    llamaPromise = import("node-llama-cpp")
      .then(({ getLlama, LlamaLogLevel }) =>
        getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true, logLevel: LlamaLogLevel.error }),
      )
      .catch((error: unknown) => {
        throw oracleMissing("llama.cpp (node-llama-cpp's prebuilt binary)", (error as Error).message);
      });
  }
  return llamaPromise;
}

/**
 * Checks that the packages llama.cpp is called through directly (koffi and node-llama-cpp's
 * prebuilt libraries) are installed, failing with the install hint where they are not.
 */
export function requireOracleBinaries(): void {
  const require = createRequire(import.meta.url);
  for (const name of ["koffi", "@node-llama-cpp/linux-x64"]) {
    try {
      require.resolve(name);
    } catch (error) {
      throw oracleMissing(`${name} (for calling libllama directly)`, (error as Error).message.split("\n")[0]!);
    }
  }
}
