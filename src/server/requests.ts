import { ChatMessage, RESERVED_TEMPLATE_VARIABLES } from "../chat/index.js";
import { GenerateOptions } from "../engine/generation.js";
import { readOtherServersFields } from "./compat.js";
import { invalidRequest } from "./errors.js";
import { FieldReader, invalidType, invalidValue, isObject, kindOf, quote, shorten, unsupported } from "./fields.js";

/** OpenAI allows 4; local clients (agent frameworks) often send a few more. */
const MAX_STOP_SEQUENCES = 16;
const MAX_STOP_LENGTH = 256;

/** What a completion request asks for, checked for types and ranges but not yet against the model. */
export interface GenerationRequest {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  /** undefined: as many as fit in the context, up to the server's limit. */
  maxTokens: number | undefined;
  /** Which of its names the client gave it by, for errors about it. */
  maxTokensParam: "max_tokens" | "max_completion_tokens" | "n_predict";
  options: Omit<GenerateOptions, "maxTokens" | "signal">;
}

export interface ChatRequest extends GenerationRequest {
  messages: ChatMessage[];
  /** chat_template_kwargs: more variables for the chat template. */
  templateVariables: Record<string, unknown> | undefined;
}

export interface CompletionRequest extends GenerationRequest {
  /** Text, or token ids. */
  prompt: string | number[];
  /** parse_special: special-token text in a text prompt becomes special tokens (default: it stays text). */
  parseSpecial: boolean;
}

const isEmptyArray = (value: unknown) => Array.isArray(value) && value.length === 0;

/** `maxMessages`: more messages are refused before any is read (each costs time to render). */
export function parseChatRequest(body: unknown, maxMessages = Infinity): ChatRequest {
  const fields = requestFields(body);
  const messages = readMessages(fields.required("messages"), maxMessages);
  const request = readCommon(fields, "chat");
  fields.onlyDefault("logprobs", (value) => value === false, "log probabilities are not supported.");
  fields.onlyDefault("top_logprobs", (value) => value === 0, "log probabilities are not supported.");
  readTools(fields);
  fields.onlyDefault("response_format", (value) => isObject(value) && value.type === "text", "only plain text responses are supported.");
  const templateVariables = readTemplateVariables(fields);
  fields.rejectUnread();
  return { ...request, messages, templateVariables };
}

export function parseCompletionRequest(body: unknown): CompletionRequest {
  const fields = requestFields(body);
  const prompt = readPrompt(fields.required("prompt"));
  const request = readCommon(fields, "completion");
  const parseSpecial = fields.boolean("parse_special") ?? false;
  fields.onlyDefault("logprobs", (value) => value === 0, "log probabilities are not supported.");
  fields.onlyDefault("echo", (value) => value === false, "echoing the prompt is not supported.");
  fields.onlyDefault("best_of", (value) => value === 1, "only one candidate (best_of = 1) is supported.");
  fields.onlyDefault("suffix", (value) => value === "", "suffixes (fill-in-the-middle) are not supported.");
  fields.rejectUnread();
  return { ...request, prompt, parseSpecial };
}

/**
 * No tool is ever called here. Tools are refused, unless tool_choice is "none": the client then
 * asks for a reply without tool calls, which is what this server gives, and the tools are ignored
 * (not described to the model either, unlike OpenAI: the reply is the same as without them).
 */
function readTools(fields: FieldReader): void {
  const choice = fields.optional("tool_choice");
  if (choice !== undefined && choice !== "none" && choice !== "auto") {
    throw unsupported("tool_choice", `tool calling is not supported; only "none" and "auto" are accepted, but got ${quote(choice)}.`);
  }
  const tools = fields.optional("tools");
  if (tools === undefined) return;
  if (!Array.isArray(tools)) throw invalidType("tools", "an array", tools);
  if (tools.length > 0 && choice !== "none") throw unsupported("tools", 'tool calling is not supported (with tool_choice "none" the tools are accepted and ignored).');
}

/** Deeper values are refused: walking them (to keep their text apart from the template's markup) would overflow the stack. */
const MAX_TEMPLATE_VARIABLE_DEPTH = 32;

/** chat_template_kwargs (llama-server, vLLM): variables for the chat template, such as enable_thinking. */
function readTemplateVariables(fields: FieldReader): Record<string, unknown> | undefined {
  const variables = fields.objectField("chat_template_kwargs");
  for (const [name, value] of Object.entries(variables ?? {})) {
    const param = `chat_template_kwargs.${shorten(name)}`;
    if (RESERVED_TEMPLATE_VARIABLES.has(name)) {
      throw invalidRequest(`Invalid '${param}': ${name} is set by the server and cannot be replaced.`, param, "invalid_value");
    }
    if (nestedDeeperThan(value, MAX_TEMPLATE_VARIABLE_DEPTH)) {
      throw invalidRequest(`Invalid '${param}': nested more than ${MAX_TEMPLATE_VARIABLE_DEPTH} levels deep.`, param, "invalid_value");
    }
  }
  return variables;
}

function nestedDeeperThan(value: unknown, depth: number): boolean {
  if (typeof value !== "object" || value === null) return false;
  if (depth === 0) return true;
  return Object.values(value).some((item) => nestedDeeperThan(item, depth - 1));
}

function requestFields(body: unknown): FieldReader {
  if (!isObject(body)) throw invalidRequest(`The request body must be a JSON object, but got ${kindOf(body)}.`, null, "invalid_body");
  return new FieldReader(body);
}

/** The parameters chat and text completions share. */
function readCommon(fields: FieldReader, endpoint: "chat" | "completion"): GenerationRequest {
  const model = fields.requiredString("model");
  const stream = fields.boolean("stream") ?? false;
  const includeUsage = readStreamOptions(fields, stream);
  const n = fields.integer("n", { min: 1 });
  if (n !== undefined && n > 1) throw unsupported("n", "only one choice (n = 1) is supported.");
  const { maxTokens, maxTokensParam } = readMaxTokens(fields);
  fields.onlyDefault("logit_bias", (value) => isObject(value) && Object.keys(value).length === 0, "logit biases are not supported.");
  // llama-server's count of token probabilities to return
  fields.onlyDefault("n_probs", (value) => value === 0, "token probabilities are not supported.");
  readOtherServersFields(fields, endpoint);
  return {
    model,
    stream,
    includeUsage,
    maxTokens,
    maxTokensParam,
    options: {
      temperature: fields.number("temperature", { min: 0, max: 2 }),
      topP: fields.number("top_p", { min: 0, max: 1, aboveMin: true }),
      topK: fields.integer("top_k", { min: 0 }),
      minP: fields.number("min_p", { min: 0, max: 1 }),
      typicalP: fields.number("typical_p", { min: 0, max: 1, aboveMin: true }),
      minKeep: fields.integer("min_keep", { min: 0 }),
      // far below 1 it divides logits past float32's range (the sampler then throws)
      repeatPenalty: fields.number("repeat_penalty", { min: 0.01, max: 100 }),
      repeatLastN: fields.integer("repeat_last_n", { min: -1 }),
      presencePenalty: fields.number("presence_penalty", { min: -2, max: 2 }),
      frequencyPenalty: fields.number("frequency_penalty", { min: -2, max: 2 }),
      seed: fields.integer("seed", { min: 0 }),
      stop: readStop(fields.optional("stop")),
      ignoreEos: fields.boolean("ignore_eos"),
    },
  };
}

/**
 * max_completion_tokens, max_tokens (its older name) or llama-server's n_predict, where -1 means no
 * limit; a client sending several means the newest name.
 */
function readMaxTokens(fields: FieldReader): Pick<GenerationRequest, "maxTokens" | "maxTokensParam"> {
  const maxTokens = fields.integer("max_tokens", { min: 1 });
  const maxCompletionTokens = fields.integer("max_completion_tokens", { min: 1 });
  const nPredict = fields.integer("n_predict", { min: -1 });
  if (nPredict === 0) throw invalidValue("n_predict", "-1 (no limit) or an integer of at least 1", nPredict);
  if (maxCompletionTokens !== undefined) return { maxTokens: maxCompletionTokens, maxTokensParam: "max_completion_tokens" };
  if (maxTokens !== undefined) return { maxTokens, maxTokensParam: "max_tokens" };
  return { maxTokens: nPredict === -1 ? undefined : nPredict, maxTokensParam: nPredict === undefined ? "max_tokens" : "n_predict" };
}

function readStreamOptions(fields: FieldReader, stream: boolean): boolean {
  const value = fields.optional("stream_options");
  if (value === undefined) return false;
  if (!stream) throw invalidRequest("The 'stream_options' parameter is only allowed when 'stream' is true.", "stream_options", "invalid_value");
  if (!isObject(value)) throw invalidType("stream_options", "an object", value);
  const options = new FieldReader(value, "stream_options");
  const includeUsage = options.boolean("include_usage") ?? false;
  options.rejectUnread();
  return includeUsage;
}

function readStop(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const list = typeof value === "string" ? [value] : value;
  if (!Array.isArray(list)) throw invalidType("stop", "a string or an array of strings", value);
  if (list.length > MAX_STOP_SEQUENCES) {
    throw invalidRequest(`Invalid 'stop': at most ${MAX_STOP_SEQUENCES} stop sequences are allowed, but got ${list.length}.`, "stop", "invalid_value");
  }
  return list.map((item, index) => {
    const param = typeof value === "string" ? "stop" : `stop[${index}]`;
    if (typeof item !== "string") throw invalidType(param, "a string", item);
    if (item.length === 0 || item.length > MAX_STOP_LENGTH) throw invalidValue(param, `a string of 1 to ${MAX_STOP_LENGTH} characters`, item);
    return item;
  });
}

/** OpenAI's newer "developer" role is what older templates call "system". */
const ROLES: Readonly<Record<string, ChatMessage["role"]>> = { system: "system", developer: "system", user: "user", assistant: "assistant", tool: "tool" };

function readMessages(value: unknown, maxMessages: number): ChatMessage[] {
  if (!Array.isArray(value)) throw invalidType("messages", "an array", value);
  if (value.length === 0) throw invalidRequest("Invalid 'messages': expected at least one message, but got an empty array.", "messages", "invalid_value");
  if (value.length > maxMessages) {
    throw invalidRequest(`Invalid 'messages': this server takes at most ${maxMessages} messages per request, but got ${value.length}.`, "messages", "too_many_messages");
  }
  return value.map((message, index) => readMessage(message, `messages[${index}]`));
}

/** Message fields other than these (refusal, annotations, tool_call_id, …) are accepted and not used. */
function readMessage(value: unknown, param: string): ChatMessage {
  if (!isObject(value)) throw invalidType(param, "an object", value);
  const fields = new FieldReader(value, param);
  const name = fields.requiredString("role");
  const role = Object.hasOwn(ROLES, name) ? ROLES[name] : undefined;
  if (role === undefined) throw invalidValue(fields.param("role"), `one of ${Object.keys(ROLES).join(", ")}`, name);
  fields.onlyDefault("tool_calls", isEmptyArray, "tool calls are not supported.");
  // an assistant message may have no content (OpenAI's own replies carry null when they call tools)
  const content = role === "assistant" ? (fields.optional("content") ?? "") : fields.required("content");
  const message: ChatMessage = { role, content: readContent(content, fields.param("content")) };
  const author = optionalString(fields, "name");
  if (author !== undefined) message.name = author;
  // the reasoning of an earlier reply, kept apart as llama-server and vLLM return it
  const reasoning = role === "assistant" ? optionalString(fields, "reasoning_content") : undefined;
  if (reasoning !== undefined) message.reasoningContent = reasoning;
  return message;
}

function optionalString(fields: FieldReader, name: string): string | undefined {
  const value = fields.optional(name);
  if (value !== undefined && typeof value !== "string") throw invalidType(fields.param(name), "a string", value);
  return value;
}

function readContent(value: unknown, param: string): string {
  if (typeof value === "string") return value;
  if (!Array.isArray(value)) throw invalidType(param, "a string or an array of content parts", value);
  return value.map((part, index) => readTextPart(part, `${param}[${index}]`)).join("\n");
}

function readTextPart(value: unknown, param: string): string {
  if (!isObject(value)) throw invalidType(param, "an object", value);
  const fields = new FieldReader(value, param);
  const type = fields.requiredString("type");
  if (type !== "text") throw unsupported(fields.param("type"), `only text content parts are supported, but got ${quote(type)}.`);
  return fields.requiredString("text");
}

/** A string, token ids, or an array holding exactly one of these (as the OpenAI client sends batches). */
function readPrompt(value: unknown): string | number[] {
  const batch = Array.isArray(value) && value.length > 0 && value.every((item) => typeof item === "string" || Array.isArray(item));
  if (batch && (value as unknown[]).length > 1) throw unsupported("prompt", "only one prompt per request is supported.");
  const prompt = batch ? (value as unknown[])[0] : value;
  const param = batch ? "prompt[0]" : "prompt";
  if (typeof prompt === "string") return prompt;
  if (!Array.isArray(prompt)) throw invalidType(param, "a string or an array of token ids", prompt);
  prompt.forEach((id, index) => {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) throw invalidValue(`${param}[${index}]`, "a token id (an integer of at least 0)", id);
  });
  return prompt as number[];
}
