export { Sampler } from "./sampler.js";
export { DEFAULT_SAMPLING_OPTIONS, resolveSamplingOptions, type SamplingOptions, type ResolvedSamplingOptions } from "./options.js";
export { logSumExp, logSoftmax, softmax } from "./softmax.js";
