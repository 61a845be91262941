export * from "./types.js";
export { GgufError } from "./errors.js";
export { GgufMetadata } from "./metadata.js";
export { GgufFile, type OpenGgufOptions } from "./reader.js";
export {
  writeGguf,
  layoutGguf,
  gv,
  fromBytes,
  type GgufLayout,
  type GgufTensorShape,
  type GgufTensorSpec,
  type GgufWriteSpec,
} from "./writer.js";
