import { test } from "node:test";
import assert from "node:assert/strict";
import { fp16ToFp32, fp32ToFp16, fp32ToBf16, bf16ToFp32 } from "../src/quant/half.js";

test("fp16 round trip of every half value", () => {
  for (let h = 0; h < 65536; h++) {
    const v = fp16ToFp32(h);
    if (Number.isNaN(v)) continue;
    assert.equal(fp32ToFp16(v), h, `half 0x${h.toString(16)}`);
  }
});

test("bf16 round trip of every bfloat16 value", () => {
  for (let h = 0; h < 65536; h++) {
    const v = bf16ToFp32(h);
    if (Number.isNaN(v)) continue;
    assert.equal(fp32ToBf16(v), h);
  }
});
