export { Tokenizer, type EncodeOptions, type DecodeOptions, type TextSegment, type SegmentEncodeOptions } from "./tokenizer.js";
export { StreamingDecoder, type StreamingDecoderOptions } from "./streaming-decoder.js";
