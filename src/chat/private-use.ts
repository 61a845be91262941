import type { TextSegment } from "../tokenizer/index.js";

/**
 * Characters of Unicode's private use area stand in for message text while a chat template
 * renders: nothing gives them a meaning, no string method or filter (strip, lower, title, tojson)
 * changes them, and they are one UTF-16 unit each, so lengths and slices stay as they were.
 */
const FIRST = 0xe000;
const LAST = 0xf8ff;

/**
 * Picks `count` private-use characters. None may occur in `reserved` (the template's source and
 * the vocabulary's texts, which it renders as markup: a character of these would be taken for one
 * of ours). Characters that also avoid `preferablyAvoided` (what the caller supplies) are taken
 * first; a string holding one of those is still rendered safely, since our use of a character only
 * ever turns text into plain text, but its own character would then read as the one it stands for.
 */
export function pickPrivateCharacters(count: number, reserved: readonly string[], preferablyAvoided: readonly string[]): string[] {
  const used = (texts: readonly string[]) => {
    const seen = new Set<number>();
    for (const text of texts) {
      for (let i = 0; i < text.length; i++) {
        const code = text.charCodeAt(i);
        if (code >= FIRST && code <= LAST) seen.add(code);
      }
    }
    return seen;
  };
  const forbidden = used(reserved);
  const avoided = used(preferablyAvoided);
  const free: string[] = [];
  const fallback: string[] = [];
  for (let code = FIRST; code <= LAST && free.length < count; code++) {
    if (forbidden.has(code)) continue;
    (avoided.has(code) ? fallback : free).push(String.fromCharCode(code));
  }
  const picked = [...free, ...fallback].slice(0, count);
  if (picked.length < count) throw new RangeError("the chat template uses every private-use character; message text cannot be kept apart from its markup");
  return picked;
}

/**
 * Makes special-token text inside a string unmatchable without changing anything else: the first
 * character of every occurrence of a special token's text is replaced by a private-use stand-in.
 * After rendering, each stand-in becomes a plain-text segment holding the character it replaced,
 * so the tokenizer sees the text unchanged but can match no special token across it.
 */
export class SpecialTextEscaper {
  private readonly textsByFirst = new Map<string, string[]>();
  private readonly standInOf = new Map<string, string>();
  private readonly originalOf = new Map<string, string>();

  /** The characters special-token texts start with: one stand-in is needed for each. */
  static firstCharacters(specialTexts: readonly string[]): string[] {
    return [...new Set(specialTexts.filter((text) => text.length > 0).map((text) => text[0]!))];
  }

  constructor(specialTexts: readonly string[], standIns: readonly string[]) {
    const firsts = SpecialTextEscaper.firstCharacters(specialTexts);
    if (standIns.length < firsts.length) throw new RangeError(`${firsts.length} stand-in characters are needed, got ${standIns.length}`);
    firsts.forEach((first, index) => {
      this.standInOf.set(first, standIns[index]!);
      this.originalOf.set(standIns[index]!, first);
    });
    for (const text of specialTexts) {
      if (text.length === 0) continue;
      const list = this.textsByFirst.get(text[0]!) ?? [];
      list.push(text);
      this.textsByFirst.set(text[0]!, list);
    }
  }

  escape(text: string): string {
    let escaped = "";
    let copied = 0;
    for (let at = 0; at < text.length; at++) {
      const candidates = this.textsByFirst.get(text[at]!);
      if (!candidates?.some((special) => text.startsWith(special, at))) continue;
      escaped += text.slice(copied, at) + this.standInOf.get(text[at]!)!;
      copied = at + 1;
    }
    return copied === 0 ? text : escaped + text.slice(copied);
  }

  /** Every string in a JSON-like value escaped, keys included (tool schemas, template variables). */
  escapeDeep(value: unknown): unknown {
    if (typeof value === "string") return this.escape(value);
    if (Array.isArray(value)) return value.map((item) => this.escapeDeep(item));
    if (typeof value === "object" && value !== null) {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [this.escape(key), this.escapeDeep(item)]));
    }
    return value;
  }

  unescape(text: string): string {
    let plain = "";
    for (const char of text) plain += this.originalOf.get(char) ?? char;
    return plain;
  }

  /** Rendered text as segments: markup where special tokens are parsed, each stand-in a plain segment of its character. */
  segments(text: string): TextSegment[] {
    const segments: TextSegment[] = [];
    let start = 0;
    for (let at = 0; at < text.length; at++) {
      const original = this.originalOf.get(text[at]!);
      if (original === undefined) continue;
      if (at > start) segments.push({ text: text.slice(start, at), special: true });
      segments.push({ text: original, special: false });
      start = at + 1;
    }
    if (start < text.length) segments.push({ text: text.slice(start), special: true });
    return segments;
  }
}

/**
 * Stand-ins for whole strings: `open` + index + `close`. After rendering, each is replaced by the
 * string it stands for as a plain-text segment; what a template did to a stand-in (cut it, changed
 * it) shows when the result is compared with the real rendering.
 */
export class Sentinels {
  readonly strings: string[] = [];
  private readonly pattern: RegExp;

  constructor(
    private readonly open: string,
    private readonly close: string,
  ) {
    this.pattern = new RegExp(`${open}(\\d+)${close}`, "g");
  }

  /** A stand-in for `text`; the empty string stands for itself (templates test it for truth). */
  standIn(text: string): string {
    if (text === "") return text;
    this.strings.push(text);
    return `${this.open}${this.strings.length - 1}${this.close}`;
  }

  /**
   * The rendered text as segments, stand-ins replaced; `markup` turns the text between them into
   * segments. `intact`: no bracket is left over (the template cut or altered none of the stand-ins).
   */
  segments(rendered: string, markup: (text: string) => TextSegment[]): { segments: TextSegment[]; intact: boolean } {
    const segments: TextSegment[] = [];
    let intact = true;
    let start = 0;
    const addMarkup = (text: string) => {
      if (text.includes(this.open) || text.includes(this.close)) intact = false;
      segments.push(...markup(text));
    };
    for (const match of rendered.matchAll(this.pattern)) {
      const text = this.strings[Number(match[1])];
      if (text === undefined) continue; // not one of ours: left in the markup, where it shows
      addMarkup(rendered.slice(start, match.index));
      segments.push({ text, special: false });
      start = match.index + match[0].length;
    }
    addMarkup(rendered.slice(start));
    return { segments, intact };
  }
}

export function joinSegments(segments: readonly TextSegment[]): string {
  return segments.map((segment) => segment.text).join("");
}
