import { Random } from "../../src/synth/random.js";

/**
 * Texts for comparing the tokenizer with llama.cpp: hand-picked edge cases plus seeded random
 * mixtures of scripts, emoji, code, whitespace, numbers, contractions, punctuation and special tokens.
 */

const CODE_SNIPPETS = [
  "function add(a, b) {\n  return a + b;\n}\n",
  "const xs = [1, 2, 3].map((x) => x * 2); // doubled\n",
  "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
  "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
  "fn main() {\n    let v: Vec<u8> = vec![0xFF; 16];\n    println!(\"{:?}\", v);\n}\n",
  "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n",
  "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
  "<div class=\"box\"><a href=\"https://example.com/?q=1&amp;x=2\">link</a></div>",
  "{\"key\": [true, null, 3.5e-7], \"nested\": {\"k\": \"v\"}}",
  "for i in $(seq 1 10); do echo \"$i\" >> out.txt; done",
  "if (x != y && !z) { y += x ** 2; } else { z ||= 0; }",
  "    \t// mixed indentation\r\n\treturn;",
  "let re = /^\\s*(\\d+)\\s*$/gu;",
  "x = {'a': 1, \"b\": 2}  # dict's",
];

const WORDS_BY_SCRIPT = [
  "hello world tokenizer language model inference",
  "Ελληνικά γλώσσα καλημέρα κόσμε",
  "Привет мир съешь же ещё этих мягких",
  "你好世界 机器学习 自然语言处理 深度学习模型",
  "こんにちは 世界 カタカナ ひらがな 東京都",
  "안녕하세요 세계 한국어 토크나이저",
  "مرحبا بالعالم اللغة العربية مُحَمَّد",
  "שלום עולם שָׁלוֹם עִבְרִית",
  "नमस्ते दुनिया हिन्दी क्षत्रिय",
  "สวัสดีชาวโลก ภาษาไทย",
  "வணக்கம் உலகம் ქართული հայերեն",
  "Ünïcödé façade naïve coöperate Straße ŒUVRE",
  "İstanbul ıi ǅemal ß ẞ ΣΑΣ σας ﬁ ﬂ",
  "𝐀𝐁𝐂 𝒜𝒷𝒸 𝟙𝟚𝟛",
].flatMap((line) => line.split(" "));

const EMOJI = [
  "😀", "😂", "🥲", "👍", "❤️", "🔥", "🎉", "🚀", "🐍", "🦀", "👍🏽", "👋🏿", "🧑🏻‍💻", "👨‍👩‍👧‍👦",
  "🏳️‍🌈", "🧑‍🤝‍🧑", "👁️‍🗨️", "🇯🇵", "🇺🇸🇫🇷", "1️⃣", "☺︎", "🫠", "🪿",
];

const WHITESPACE = [" ", " ", " ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u0085", "\ufeff", "\v", "\f", "\u2009"];

const NUMBERS = ["3.14159", "1,000,000", "0x1F", "1e-9", "-42", "١٢٣٤", "१२३", "１２３", "²³", "½", "Ⅻ", "①②", "𝟡"];

const CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'rE", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d", "'D", "'ſ", "'", "''", "'x", "’s", "'1"];

const PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~…—–«»¿¡§¶•·";

const SPECIAL_PIECES = [
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|fim_pad|>",
  "<|im_sta", "<|", "|>", "<|im_end", "im_end|>", "</s>", "<s>", "<|endoftext", "<|<|im_end|>|>", "<|vision_pad|>",
];

/** Characters whose class differs between llama.cpp and JS regexes, or that are otherwise unusual. */
const UNUSUAL_CHARS = [
  "\u1c89", "\ua7cb", "\u{10d40}", "\u{1fae9}", "\u0378", "\ue000", "\u{f0000}", "\u200b", "\u200d", "\u00ad",
  "\ufeff", "\u0085", "\u2028", "\u2029", "\u0301", "\u0000", "\u0001", "\u007f", "\ufffd",
];

const ASCII_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

function pick<T>(rng: Random, items: readonly T[] | string): T {
  return items[Math.floor(rng.uniform() * items.length)] as T;
}

function between(rng: Random, low: number, high: number): number {
  return low + Math.floor(rng.uniform() * (high - low + 1));
}

function repeat(rng: Random, low: number, high: number, make: () => string): string {
  let out = "";
  for (let i = between(rng, low, high); i > 0; i--) out += make();
  return out;
}

const SEGMENTS: readonly ((rng: Random) => string)[] = [
  (rng) => pick(rng, WORDS_BY_SCRIPT),
  (rng) => repeat(rng, 1, 12, () => pick(rng, ASCII_LETTERS)),
  (rng) => pick(rng, WORDS_BY_SCRIPT) + pick(rng, ["\u0301", "\u0308", "\u0323\u0302", "\u093c", "\u0e31"]),
  (rng) => repeat(rng, 1, 3, () => pick(rng, EMOJI)),
  (rng) => pick(rng, CODE_SNIPPETS),
  (rng) => repeat(rng, 1, 8, () => pick(rng, WHITESPACE)),
  (rng) => repeat(rng, 1, 30, () => String(between(rng, 0, 9))),
  (rng) => pick(rng, NUMBERS),
  (rng) => pick(rng, ["it", "DON", "we", "You", "they", "I", ""]) + pick(rng, CONTRACTIONS),
  (rng) => repeat(rng, 1, 6, () => pick(rng, PUNCTUATION)),
  (rng) => pick(rng, SPECIAL_PIECES),
  (rng) => repeat(rng, 1, 3, () => pick(rng, UNUSUAL_CHARS)),
  (rng) => pick(rng, ["a", "xy", "日本", "𝐀", "ab1"]).repeat(between(rng, 50, 400)),
  (rng) => pick(rng, ["https://example.com/path?q=1&x=y#frag", "user.name+tag@example.org", "C:\\Users\\me\\file.txt"]),
];

function randomText(rng: Random): string {
  let text = "";
  for (let i = between(rng, 1, 10); i > 0; i--) {
    const separator = rng.uniform();
    if (text !== "") text += separator < 0.4 ? "" : separator < 0.8 ? " " : repeat(rng, 1, 3, () => pick(rng, WHITESPACE));
    text += pick(rng, SEGMENTS)(rng);
  }
  return text;
}

export function randomTexts(count: number, seed: number): string[] {
  const rng = new Random(seed, 7);
  return Array.from({ length: count }, () => randomText(rng));
}

export const TRICKY_TEXTS: readonly string[] = [
  "", " ", "  ", "   ", "\n", "\n\n\n", "\r\n", "\r\n\r\n", " \n", "\n ", " \n \n ", "\t", "\t\t", "a  b", "a   ",
  "trailing spaces   ", "   leading", "\t\tindented", "    four spaces", "x\u00a0y", "\u3000全角スペース",
  "a\u0085b", "a\ufeffb", "\ufeff", "\u0085", "a \u0085b", " \u00a0 x", "line\u2028separator",
  "Hello\r\nWorld\r\n", "mixed\t \t \n\t tabs", "   \n   \n", "end with newline\n", "!\n\n", "a!\r\n\r\nb",
  "don't", "DON'T", "I'M", "we'LL", "you'Re", "they'vE", "'s", "'", "'''", "''s", "it's'S", "'ſ", "x'ſ",
  "rock'n'roll", "'ll'll", "' s", "l'été", "’tis", "'S's'", "'\n", "'Sure", "'LLama", "'rEady", "'ſt", "DON'ſT",
  "123", "1234567890123456789012345678901234567890", "3.14159", "-42", "1,000", "١٢٣", "٣.١٤", "१२३",
  "１２３", "²", "½", "Ⅻ", "①", "𝟙𝟚𝟛", "a1b2c3", "1a", "x²+y²",
  "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵🇺🇸", "1️⃣", "😀😀😀", " 😀", "😀 ", "a😀b",
  "é", "e\u0301", "\u0301", "a\u0301\u0302\u0303", "ñ vs n\u0303", "Ελληνικά", "Привет, мир!", "你好，世界！",
  "こんにちは世界", "안녕하세요", "مرحبا بالعالم", "שָׁלוֹם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "İstanbul",
  "\u1c89\ua7cb\u{10d40}\u{1fae9}", "a\ua7cbb", " \u1c89x", "\u1c89's", "x\ua7cb'S", "\u{10d40}'ll", "x\u0085\u0085y", "\ufeff\ufeffx", "\u{10d40}\u{10d41}", "\u0378", "\ufffd", "\u0000", "x\u0001y", "\ue000\u{f0000}",
  "a\u200bb", "a\u200db", "soft\u00adhyphen",
  "<|im_start|>user\nhi<|im_end|>",
  "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
  "<|im_sta", "<|im_start", "<|im_start|", "<|<|im_end|>", "<|im_end|><|im_end|>", "text<|endoftext|>more",
  "</s>", "<s>", "<think>reasoning</think>answer", " <|im_end|> ", "<|im_end|>\n", "<|fim_pad|><|repo_name|>",
  "a".repeat(1000), "日本語".repeat(300), "ab".repeat(500), " ".repeat(100), "\n".repeat(50), "!".repeat(200),
  "!!!???...", "...", "—–-", "\"quoted\"", "«guillemets»", "@#$%^&*()", " !x", " ! x", "?\n", "a.b,c;d",
  "https://example.com/path?q=1&x=y", "user@example.org",
  ...CODE_SNIPPETS,
];
