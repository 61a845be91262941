export { Tokenizer, type EncodeOptions, type DecodeOptions } from "./tokenizer.js";
export { StreamingDecoder, type StreamingDecoderOptions } from "./streaming-decoder.js";
