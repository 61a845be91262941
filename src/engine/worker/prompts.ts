import { Worker } from "node:worker_threads";
import { ChatMessage, ChatTemplateError } from "../../chat/index.js";
import type { ChatPromptOptions } from "../language-model.js";

type PromptWork = { type: "chat"; messages: ChatMessage[]; options: ChatPromptOptions } | { type: "text"; text: string; parseSpecial: boolean };

export type PromptRequest = PromptWork & { id: number };

export type PromptResponse = { id: number; ids: number[] } | { id: number; error: string; templateError: boolean };

type Pending = { resolve: (ids: number[]) => void; reject: (error: Error) => void };

/** The main-thread side of prompt-thread.ts: prompts to ids, one request at a time in order. */
export class PromptThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private stopped: Error | undefined;

  constructor(path: string) {
    this.worker = new Worker(new URL("./prompt-thread.js", import.meta.url), { workerData: { path } });
    this.worker.unref();
    this.worker.on("message", (response: PromptResponse) => {
      const pending = this.pending.get(response.id);
      if (!pending) return;
      this.pending.delete(response.id);
      if (this.pending.size === 0) this.worker.unref();
      if ("ids" in response) pending.resolve(response.ids);
      else pending.reject(response.templateError ? new ChatTemplateError(response.error, undefined) : new Error(response.error));
    });
    const stop = (error: Error) => {
      this.stopped ??= error;
      for (const { reject } of this.pending.values()) reject(error);
      this.pending.clear();
    };
    this.worker.on("error", stop);
    this.worker.once("exit", (code) => stop(new Error(`the prompt thread exited (code ${code})`)));
  }

  chat(messages: ChatMessage[], options: ChatPromptOptions): Promise<number[]> {
    return this.send({ type: "chat", messages, options });
  }

  text(text: string, parseSpecial: boolean): Promise<number[]> {
    return this.send({ type: "text", text, parseSpecial });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }

  private send(request: PromptWork): Promise<number[]> {
    if (this.stopped) return Promise.reject(this.stopped);
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      const message: PromptRequest = { ...request, id };
      this.worker.postMessage(message);
    });
  }
}
