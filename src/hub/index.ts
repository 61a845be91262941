export { listRepositoryModels, pullModel, type PullOptions, type PulledModel } from "./pull.js";
export type { ModelFiles } from "./files.js";
export { listCachedModels, type CachedModelFile } from "./list.js";
export { parseModelReference, type ModelReference } from "./reference.js";
export { HubError } from "./errors.js";
