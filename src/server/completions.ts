import { ChatTemplateError } from "../chat/index.js";
import { Generation } from "../engine/generation.js";
import { Exchange, Site } from "./context.js";
import { ApiError, invalidRequest } from "./errors.js";
import { EventStream, readJsonBody, sendJson } from "./http.js";
import { GenerationRequest, parseChatRequest, parseCompletionRequest } from "./requests.js";
import { CHAT_SHAPE, COMPLETION_SHAPE, Envelope, ResponseShape, usageOf } from "./responses.js";

/** POST /v1/chat/completions */
export async function chatCompletions(site: Site, exchange: Exchange): Promise<void> {
  const request = parseChatRequest(await readJsonBody(exchange.request, site.limits.maxBodyBytes));
  requireServedModel(site, request.model);
  let promptIds: number[];
  try {
    // message text is tokenized as text: a message cannot forge the template's turn markup
    promptIds = site.model.chatPrompt(request.messages, { templateVariables: request.templateVariables }).ids;
  } catch (error) {
    // templates refuse some conversations on purpose (Qwen3's needs a user message)
    if (error instanceof ChatTemplateError) throw invalidRequest(error.message, "messages", "invalid_prompt");
    throw error;
  }
  await serveGeneration(site, exchange, request, promptIds, CHAT_SHAPE, "messages");
}

/** POST /v1/completions */
export async function completions(site: Site, exchange: Exchange): Promise<void> {
  const request = parseCompletionRequest(await readJsonBody(exchange.request, site.limits.maxBodyBytes));
  requireServedModel(site, request.model);
  const { prompt } = request;
  const vocabSize = site.model.tokenizer.vocabSize;
  const outside = typeof prompt === "string" ? -1 : prompt.findIndex((id) => id >= vocabSize);
  if (outside >= 0) throw invalidRequest(`Invalid 'prompt': token id ${prompt[outside]} is outside the vocabulary (0 to ${vocabSize - 1}).`, "prompt", "invalid_value");
  // a text prompt is text unless the client asks for special-token text in it to be parsed
  const promptIds = typeof prompt === "string" ? site.model.tokenizer.encode(prompt, request.parseSpecial ? {} : { plainText: true }) : prompt;
  await serveGeneration(site, exchange, request, promptIds, COMPLETION_SHAPE, "prompt");
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

/** How many tokens to generate: what was asked for, if it fits the server's limit and the context. */
function completionBudget(site: Site, request: GenerationRequest, promptTokens: number, promptParam: string): number {
  const { contextSize } = site.model;
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

async function serveGeneration(site: Site, exchange: Exchange, request: GenerationRequest, promptIds: readonly number[], shape: ResponseShape, promptParam: string): Promise<void> {
  const maxTokens = completionBudget(site, request, promptIds.length, promptParam);
  site.admission.enter();
  try {
    const generation = site.model.generate(promptIds, { ...request.options, maxTokens, signal: exchange.clientGone });
    const envelope = shape.newEnvelope(site.modelId);
    if (request.stream) await stream(exchange, generation, shape, envelope, request.includeUsage);
    else await respondWhole(exchange, generation, shape, envelope);
  } finally {
    site.admission.leave();
  }
}

async function respondWhole(exchange: Exchange, generation: Generation, shape: ResponseShape, envelope: Envelope): Promise<void> {
  const result = await generation.complete();
  exchange.record.generation = result;
  if (result.finishReason === "abort") return; // nobody is listening
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
  if (result.finishReason === "abort") return;
  send(shape.closing(envelope, result.finishReason));
  if (includeUsage) events.send(shape.usage(envelope, usageOf(result)));
  events.end();
}
