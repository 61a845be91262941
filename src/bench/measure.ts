/** One engine's measurements on one model at one thread count. */
export interface EngineMeasurement {
  engine: string;
  threads: number;
  /** Tokens per second of each repetition. */
  prefill: number[];
  decode: number[];
  /** Peak resident memory of the process, bytes. */
  peakRss: number;
  /** smallthinker: bytes of its KV cache (for comparing peak memory with file + KV cache). */
  kvBytes?: number;
  loadMs: number;
  note?: string;
  /** smallthinker: share of the chosen experts' neurons active (gate > 0) while decoding. */
  decodeActiveShare?: number;
  /** smallthinker under a budget: expert cache behaviour during decode, per token. */
  experts?: {
    hitRate: number; bytesReadPerToken: number; stallMsPerToken: number; cachedExperts: number; totalExperts: number;
    /** Reads started on a guess (a later layer's router on an earlier residual), and the share of them that layer then chose. */
    predictedReadsPerToken: number; predictedUsedRate: number;
  };
}

export interface BenchJob {
  engine: "smallthinker" | "llama.cpp";
  model: string;
  threads: number;
  promptTokens: number;
  genTokens: number;
  reps: number;
  /** smallthinker only: memory budget in bytes. */
  memory?: number;
  contextSize: number;
  /** Vocabulary size (prompt ids stay below it). */
  vocab: number;
  /** smallthinker only: expert cache policy. */
  policy?: "frequency" | "lru";
  /** smallthinker only: layers ahead whose experts are guessed (default: the engine's). */
  lookahead?: number;
  /** llama.cpp only, through node-llama-cpp: read tensors on demand (node-llama-cpp's lazyMode). */
  lazy?: boolean;
  /** llama.cpp only: node-llama-cpp (default), or libllama called directly (src/bench/llama-direct.ts). */
  llamaDriver?: "node-llama-cpp" | "direct";
  /** llama.cpp through the direct driver only: no weight repacking (llama.cpp's --no-repack). */
  noRepack?: boolean;
}

/** The memory read-bandwidth probe (src/bench/bandwidth.ts) at a thread count. */
export interface BandwidthJob {
  engine: "bandwidth";
  threads: number;
}

export interface Summary {
  median: number;
  min: number;
  max: number;
}

export function summarize(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

/** Prompt token ids for repetition `rep`: seeded, below the special tokens, different per repetition. */
export function benchPrompt(count: number, vocab: number, rep: number): number[] {
  let state = (0x9e3779b9 ^ (rep * 0x85ebca6b)) >>> 0;
  const limit = Math.min(vocab, 151643);
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % limit;
  });
}
