import type { Llama } from "node-llama-cpp";

let llamaPromise: Promise<Llama> | undefined;

/**
 * llama.cpp through node-llama-cpp's prebuilt CPU binary: the correctness oracle.
 * Never downloads or builds anything.
 */
export function getOracle(): Promise<Llama> {
  if (!llamaPromise) {
    process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
    llamaPromise = import("node-llama-cpp").then(({ getLlama, LlamaLogLevel }) =>
      getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true, logLevel: LlamaLogLevel.error }),
    );
  }
  return llamaPromise;
}
