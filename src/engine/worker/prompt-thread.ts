import { parentPort, workerData } from "node:worker_threads";
import { ChatTemplateError } from "../../chat/index.js";
import { chatPromptOf, readModelText } from "../language-model.js";
import type { PromptRequest, PromptResponse } from "./prompts.js";

/**
 * A thread that renders chat templates and tokenizes prompts for a `WorkerModel`, so that neither
 * the thread serving HTTP nor the one running the model waits for a long prompt.
 */

const port = parentPort!;
const text = readModelText((workerData as { path: string }).path);

port.on("message", (request: PromptRequest) => {
  let response: PromptResponse;
  try {
    const ids = request.type === "chat"
      ? chatPromptOf(text, request.messages, request.options).ids
      : text.tokenizer.encode(request.text, request.parseSpecial ? {} : { plainText: true });
    response = { id: request.id, ids };
  } catch (error) {
    response = { id: request.id, error: error instanceof Error ? error.message : String(error), templateError: error instanceof ChatTemplateError };
  }
  port.postMessage(response);
});
