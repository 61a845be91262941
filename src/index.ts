export { loadModel, Model, type LoadModelOptions, type ChatOptions, type ChatPromptOptions, type ChatPromptTokens, type PromptOptions, type ModelInfo } from "./engine/model.js";
export { loadModelInWorker, WorkerModel } from "./engine/worker/model.js";
export { LanguageModel, type EngineMetrics } from "./engine/language-model.js";
export { Generation, type GenerateOptions, type GenerationResult, type FinishReason } from "./engine/generation.js";
export { ChatTemplateError, type ChatMessage } from "./chat/index.js";
export type { SamplingOptions } from "./sampling/index.js";
export type { SmallThinkerConfig } from "./model/config.js";
export { startServer, type ServerOptions, type RunningServer } from "./server/index.js";
export { pullModel, listCachedModels, HubError, type PullOptions, type PulledModel, type CachedModelFile } from "./hub/index.js";
