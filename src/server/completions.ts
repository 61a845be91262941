import { ChatTemplateError } from "../chat/index.js";
import { Generation } from "../engine/generation.js";
import { LanguageModel } from "../engine/language-model.js";
import { Exchange, Site, servingModel } from "./context.js";
import { ApiError, invalidRequest } from "./errors.js";
import { EventStream, readJsonBody, sendJson } from "./http.js";
import { GenerationRequest, parseChatRequest, parseCompletionRequest } from "./requests.js";
import { CHAT_SHAPE, COMPLETION_SHAPE, Envelope, ResponseShape, usageOf } from "./responses.js";

/** POST /v1/chat/completions */
export async function chatCompletions(site: Site, exchange: Exchange): Promise<void> {
  const request = parseChatRequest(await readJsonBody(exchange.request, site.limits.maxBodyBytes, exchange.bodyAbandoned), site.limits.maxMessages);
  requireServedModel(site, request.model);
  const model = servingModel(site);
  const texts = request.messages.flatMap((message) => [message.content, message.name ?? "", message.reasoningContent ?? ""]);
  refuseTextBeyondContext(model, texts, "messages");
  let promptIds: number[];
  try {
    // message text is tokenized as text: a message cannot forge the template's turn markup
    // (a worker model renders on a thread of its own, so this one stays free for other clients)
    promptIds = await model.chatPromptIds(request.messages, { templateVariables: request.templateVariables });
  } catch (error) {
    // templates refuse some conversations on purpose (Qwen3's needs a user message)
    if (error instanceof ChatTemplateError) throw invalidRequest(error.message, "messages", "invalid_prompt");
    throw error;
  }
  await serveGeneration(site, model, exchange, request, promptIds, CHAT_SHAPE, "messages");
}

/** POST /v1/completions */
export async function completions(site: Site, exchange: Exchange): Promise<void> {
  const request = parseCompletionRequest(await readJsonBody(exchange.request, site.limits.maxBodyBytes, exchange.bodyAbandoned));
  requireServedModel(site, request.model);
  const model = servingModel(site);
  const { prompt } = request;
  if (typeof prompt === "string") refuseTextBeyondContext(model, [prompt], "prompt");
  const vocabSize = model.tokenizer.vocabSize;
  const outside = typeof prompt === "string" ? -1 : prompt.findIndex((id) => id >= vocabSize);
  if (outside >= 0) throw invalidRequest(`Invalid 'prompt': token id ${prompt[outside]} is outside the vocabulary (0 to ${vocabSize - 1}).`, "prompt", "invalid_value");
  // a text prompt is text unless the client asks for special-token text in it to be parsed
  const promptIds = typeof prompt === "string" ? await model.textPromptIds(prompt, request.parseSpecial) : prompt;
  await serveGeneration(site, model, exchange, request, promptIds, COMPLETION_SHAPE, "prompt");
}

export function modelNotFound(id: string): ApiError {
  return new ApiError(404, `The model ${JSON.stringify(id.slice(0, 200))} does not exist.`, { type: "invalid_request_error", param: "model", code: "model_not_found" });
}

/**
 * One model is served, so whatever a client names it (gpt-3.5-turbo, as frameworks do by default)
 * is taken to mean it, and the response says which model answered; with `strictModel`, only its
 * own name is.
 */
function requireServedModel(site: Site, id: string): void {
  if (site.strictModel && id !== site.modelId) throw modelNotFound(id);
}

/** The most UTF-8 bytes any one token stands for, per vocabulary (found once per model). */
const longestToken = new WeakMap<LanguageModel, number>();

function longestTokenBytes(model: LanguageModel): number {
  let longest = longestToken.get(model);
  if (longest === undefined) {
    longest = 1;
    for (let id = 0; id < model.tokenizer.vocabSize; id++) longest = Math.max(longest, model.tokenizer.tokenBytes(id, { renderSpecial: true }).length);
    longestToken.set(model, longest);
  }
  return longest;
}

/** Does the per-model work of the checks below once, when the model is ready, rather than on a request. */
export function prepareForModel(model: LanguageModel): void {
  longestTokenBytes(model);
}

/**
 * Refuses, before the chat template is rendered or anything tokenized, text that cannot fit: no
 * token stands for more bytes than the vocabulary's longest token, so text of more bytes than the
 * context holds of those tokenizes past the context however it is split (the template's markup
 * only adds tokens; a template that leaves messages out would make this refuse a prompt that
 * fits, and the ChatML templates SmallThinker ships render every message). Rendering and
 * tokenizing a megabyte takes a quarter of a second, during which this thread answers nobody.
 */
function refuseTextBeyondContext(model: LanguageModel, texts: readonly string[], param: string): void {
  const limit = model.contextSize * longestTokenBytes(model);
  const bytes = texts.reduce((sum, text) => sum + Buffer.byteLength(text, "utf8"), 0);
  if (bytes <= limit) return;
  throw invalidRequest(
    `This model's maximum context length is ${model.contextSize} tokens, and the ${param} hold ${bytes} bytes of text: at least ${Math.ceil(bytes / longestTokenBytes(model))} tokens. Please reduce the length of the ${param}.`,
    param,
    "context_length_exceeded",
  );
}

/** How many tokens to generate: what was asked for, if it fits the server's limit and the context. */
function completionBudget(site: Site, model: LanguageModel, request: GenerationRequest, promptTokens: number, promptParam: string): number {
  const { contextSize } = model;
  const { maxTokens: limit } = site.limits;
  if (promptTokens === 0) throw invalidRequest("The prompt is empty: at least one token is needed.", promptParam, "invalid_value");
  if (request.maxTokens !== undefined && request.maxTokens > limit) {
    const param = request.maxTokensParam;
    throw invalidRequest(`Invalid '${param}': this server generates at most ${limit} tokens per request, but ${request.maxTokens} were requested.`, param, "invalid_value");
  }
  const wanted = request.maxTokens ?? 1;
  if (promptTokens + wanted > contextSize) {
    throw invalidRequest(
      `This model's maximum context length is ${contextSize} tokens. However, you requested ${promptTokens + wanted} tokens ` +
        `(${promptTokens} in the ${promptParam}, ${wanted} in the completion). Please reduce the length of the ${promptParam} or completion.`,
      promptParam,
      "context_length_exceeded",
    );
  }
  return request.maxTokens ?? Math.min(limit, contextSize - promptTokens);
}

async function serveGeneration(site: Site, model: LanguageModel, exchange: Exchange, request: GenerationRequest, promptIds: readonly number[], shape: ResponseShape, promptParam: string): Promise<void> {
  const maxTokens = completionBudget(site, model, request, promptIds.length, promptParam);
  site.admission.enter();
  try {
    // a shutdown whose grace period is over ends the generation as a client that leaves would
    const signal = AbortSignal.any([exchange.clientGone, site.shutdown]);
    const generation = model.generate(promptIds, { ...request.options, maxTokens, signal });
    const envelope = shape.newEnvelope(site.modelId);
    if (request.stream) await stream(exchange, generation, shape, envelope, request.includeUsage);
    else await respondWhole(exchange, generation, shape, envelope);
  } finally {
    site.admission.leave();
  }
}

/** What a client still listening is told when the server's shutdown cut its generation short. */
function cutByShutdown(): ApiError {
  return new ApiError(503, "The server shut down before the generation was complete; please retry.", { type: "server_error", code: "shutting_down", headers: { "retry-after": "1" } });
}

async function respondWhole(exchange: Exchange, generation: Generation, shape: ResponseShape, envelope: Envelope): Promise<void> {
  const result = await generation.complete();
  exchange.record.generation = result;
  if (result.finishReason === "abort") {
    if (exchange.clientGone.aborted) return; // nobody is listening
    throw cutByShutdown();
  }
  sendJson(exchange.response, 200, shape.whole(envelope, result.text, result.finishReason, usageOf(result)));
}

async function stream(exchange: Exchange, generation: Generation, shape: ResponseShape, envelope: Envelope, includeUsage: boolean): Promise<void> {
  const events = new EventStream(exchange.response);
  // with include_usage, OpenAI gives every chunk a usage field, null until the extra last one
  const send = (chunk: object) => events.send(includeUsage ? { ...chunk, usage: null } : chunk);
  shape.opening(envelope).forEach(send);
  for await (const piece of generation) send(shape.piece(envelope, piece));
  const result = await generation.result;
  exchange.record.generation = result;
  if (result.finishReason === "abort") {
    if (exchange.clientGone.aborted) return;
    // the error as the stream's last event, where OpenAI clients look for it, then the usual end
    events.send(cutByShutdown());
    events.end();
    return;
  }
  send(shape.closing(envelope, result.finishReason));
  if (includeUsage) events.send(shape.usage(envelope, usageOf(result)));
  events.end();
}
