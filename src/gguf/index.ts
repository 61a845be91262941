export * from "./types.js";
export { GgufError } from "./errors.js";
export { GgufMetadata } from "./metadata.js";
export { GgufFile, type GgufPart, type OpenGgufOptions } from "./reader.js";
export {
  writeGguf,
  writeGgufHeader,
  writeGgufSplit,
  layoutGguf,
  gv,
  fromBytes,
  type GgufLayout,
  type GgufTensorShape,
  type GgufTensorSpec,
  type GgufWriteSpec,
  type GgufSplitOptions,
} from "./writer.js";
