import { HubError } from "./errors.js";

/** A model on the hub: a repository and, optionally, which of its GGUF files (by quantization). */
export interface ModelReference {
  repo: string;
  quant: string | undefined;
}

/** The hub's rule for repository ids: owner/name of letters, digits, "-", "_" and ".", without "--" or "..". */
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** Reads "OWNER/NAME", "OWNER/NAME:QUANT", with or without an "hf:" prefix. */
export function parseModelReference(text: string): ModelReference {
  const body = text.startsWith("hf:") ? text.slice(3) : text;
  const colon = body.indexOf(":");
  const repo = colon < 0 ? body : body.slice(0, colon);
  const quant = colon < 0 ? undefined : body.slice(colon + 1);
  if (!REPO_ID.test(repo) || repo.includes("--") || repo.includes("..")) {
    throw new HubError(`"${text}" is not a model on the hub: expected OWNER/NAME or OWNER/NAME:QUANT (e.g. PowerInfer/SmallThinker-4BA0.6B-Instruct-GGUF:Q4_0)`);
  }
  if (quant !== undefined && !/^[\w.-]+$/.test(quant)) throw new HubError(`"${text}": "${quant}" is not a quantization name (e.g. Q4_0, Q4_K_M)`);
  return { repo, quant };
}

export function formatReference(reference: ModelReference): string {
  return `${reference.repo}${reference.quant ? `:${reference.quant}` : ""}`;
}
