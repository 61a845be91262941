import { GenerationResult } from "../engine/generation.js";

/** One request, as the server logs it when it has been answered. */
export interface RequestRecord {
  method: string;
  path: string;
  /** 499 when the client left before the response was complete. */
  status: number;
  ms: number;
  /** The generation the request ran, if it got that far. */
  generation?: GenerationResult;
  /** Why the request failed: the message for a refused request, the stack for the server's own error. */
  error?: string;
}

export function formatRecord(record: RequestRecord): string {
  const parts = [`${record.method} ${record.path} ${record.status} ${record.ms.toFixed(0)} ms`];
  const generation = record.generation;
  if (generation) {
    parts.push(
      `prompt ${generation.promptTokens} (${generation.cachedPromptTokens} cached)`,
      `completion ${generation.completionTokens}`,
      `first token ${generation.timings.firstTokenMs.toFixed(0)} ms`,
      generation.finishReason,
    );
  }
  if (record.error) parts.push(record.error);
  return parts.join(" · ");
}
