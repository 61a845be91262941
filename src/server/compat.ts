import { FieldKind, FieldReader, unsupported } from "./fields.js";

/**
 * Request fields that other OpenAI-compatible servers (OpenAI itself, llama-server, vLLM) accept and
 * that clients send by default, which this server takes and does not use because they cannot change
 * what it generates. They are still refused when of the wrong kind, naming the field; any field not
 * known at all is refused, so that a misspelt parameter is not dropped in silence. The README lists
 * them.
 */
const IGNORED: Readonly<Record<string, FieldKind>> = {
  // OpenAI: about the caller or the stored completion
  user: "string",
  metadata: "object",
  store: "boolean",
  service_tier: "string",
  prompt_cache_key: "string",
  safety_identifier: "string",
  // llama-server: the slot to run in (the scheduler chooses one by shared prefix), per-token timings in the response
  id_slot: "integer",
  timings_per_token: "boolean",
  // llama-server: reuse the KV cache of the previous request; this server always reuses the shared
  // prefix (which never changes the result), so false is accepted too
  cache_prompt: "boolean",
};

const IGNORED_IN_CHAT: Readonly<Record<string, FieldKind>> = {
  // OpenAI: whether several tools may be called at once (no tool is ever called here)
  parallel_tool_calls: "boolean",
};

/**
 * llama-server samplers not implemented here, accepted while they are off (their default). Their
 * settings only matter when they are on, so those are accepted (checked for kind) either way.
 */
const SAMPLERS_WHILE_OFF: readonly { name: string; isOff: (value: number) => boolean; settings: Readonly<Record<string, FieldKind>> }[] = [
  { name: "mirostat", isOff: (value) => value === 0, settings: { mirostat_tau: "number", mirostat_eta: "number" } },
  { name: "dynatemp_range", isOff: (value) => value === 0, settings: { dynatemp_exponent: "number" } },
  {
    name: "dry_multiplier",
    isOff: (value) => value === 0,
    settings: { dry_base: "number", dry_allowed_length: "integer", dry_penalty_last_n: "integer", dry_sequence_breakers: "array" },
  },
  { name: "xtc_probability", isOff: (value) => value === 0, settings: { xtc_threshold: "number" } },
  // llama.cpp's default is -1: any value ≤ 0 leaves it off
  { name: "top_n_sigma", isOff: (value) => value <= 0, settings: {} },
];

/** Reads the fields above, so that they are neither refused as unknown nor used. */
export function readOtherServersFields(fields: FieldReader, endpoint: "chat" | "completion"): void {
  const ignored = endpoint === "chat" ? { ...IGNORED, ...IGNORED_IN_CHAT } : IGNORED;
  for (const [name, kind] of Object.entries(ignored)) fields.ignoreOfKind(name, kind);
  for (const { name, isOff, settings } of SAMPLERS_WHILE_OFF) {
    const value = fields.number(name, {});
    if (value !== undefined && !isOff(value)) throw unsupported(fields.param(name), `the ${name.replace(/_.*/, "")} sampler is not implemented; only its default (off) is accepted.`);
    for (const [setting, kind] of Object.entries(settings)) fields.ignoreOfKind(setting, kind);
  }
}

/** For the README and tests: every field read here. */
export const OTHER_SERVERS_FIELDS: readonly string[] = [
  ...Object.keys(IGNORED),
  ...Object.keys(IGNORED_IN_CHAT),
  ...SAMPLERS_WHILE_OFF.flatMap(({ name, settings }) => [name, ...Object.keys(settings)]),
];
