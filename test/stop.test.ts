import { test } from "node:test";
import assert from "node:assert/strict";
import { StopMatcher } from "../src/engine/stop.js";

/** Pushes every piece; returns what each push released, whether it stopped, and the flush. */
function stream(stopStrings: string[], pieces: string[]): { released: string[]; stoppedAt: number; flushed: string } {
  const matcher = new StopMatcher(stopStrings);
  const released: string[] = [];
  let stoppedAt = -1;
  pieces.forEach((piece, index) => {
    const { text, stopped } = matcher.push(piece);
    released.push(text);
    if (stopped && stoppedAt < 0) stoppedAt = index;
  });
  return { released, stoppedAt, flushed: matcher.flush() };
}

test("with no stop strings, every piece passes straight through", () => {
  assert.deepEqual(stream([], ["Hello", ", ", "world", ""]), { released: ["Hello", ", ", "world", ""], stoppedAt: -1, flushed: "" });
});

test("a stop string arriving one character at a time is never shown, and the text before it is", () => {
  const pieces = [..."Hello<|im_end|>"];
  const { released, stoppedAt, flushed } = stream(["<|im_end|>"], pieces);
  assert.equal(released.join(""), "Hello");
  assert.equal(stoppedAt, pieces.length - 1, "stops exactly when the last character arrives");
  assert.deepEqual(released.slice(0, 5), ["H", "e", "l", "l", "o"], "text that cannot start the stop string is not delayed");
  assert.equal(flushed, "");
});

test("held-back text is released once it stops looking like a stop string", () => {
  const { released, stoppedAt, flushed } = stream(["<|im_end|>"], ["a <|im", "_e", "ntity"]);
  assert.deepEqual(released, ["a ", "", "<|im_entity"]);
  assert.equal(stoppedAt, -1);
  assert.equal(flushed, "");
});

test("a possible stop string still pending at the end comes out of flush", () => {
  const { released, flushed } = stream(["</answer>"], ["42", "</ans"]);
  assert.deepEqual(released, ["42", ""]);
  assert.equal(flushed, "</ans");
});

test("a stop string inside one piece cuts the piece, and nothing after it is ever released", () => {
  const matcher = new StopMatcher(["</s>"]);
  assert.deepEqual(matcher.push("foo</s>bar"), { text: "foo", stopped: true });
  assert.deepEqual(matcher.push("more"), { text: "", stopped: true });
  assert.equal(matcher.flush(), "");
});

test("with several stop strings, the one that starts first wins", () => {
  assert.equal(stream(["END", "STOP"], ["a STOP b END"]).released.join(""), "a ");
  assert.equal(stream(["END", "STOP"], ["a ST", "OP b EN", "D"]).released.join(""), "a ");
  assert.equal(stream(["END", "STOP"], ["a EN", "D b STOP"]).released.join(""), "a ");
});

test("overlapping candidates: a shorter stop string completing first wins, repeats keep the right tail", () => {
  // "bc" completes while "abcd" is still only a possibility
  assert.deepEqual(stream(["abcd", "bc"], ["a", "b", "c", "d"]), { released: ["", "", "a", ""], stoppedAt: 2, flushed: "" });
  // "aaab": after "aaa" only the last two a's can still begin "aab"
  assert.deepEqual(stream(["aab"], ["a", "a", "a", "b"]), { released: ["", "", "a", ""], stoppedAt: 3, flushed: "" });
  // the longest possible start is held even when a shorter stop string also fits
  assert.deepEqual(stream(["xy", "xxxz"], ["1xxx", "y"]), { released: ["1", "xx"], stoppedAt: 1, flushed: "" });
});

test("Unicode stop strings and pieces, including surrogate pairs split between pieces", () => {
  assert.equal(stream(["終わり"], ["答えは", "42です。終", "わ", "り以降"]).released.join(""), "答えは42です。");
  const wave = "👋"; // two UTF-16 code units
  assert.deepEqual(stream([wave], ["bye ", wave[0]!, wave[1]!]), { released: ["bye ", "", ""], stoppedAt: 2, flushed: "" });
  // a lone high surrogate is held until its partner arrives, even with no stop strings
  const grin = "😀";
  assert.deepEqual(stream([], ["a" + grin[0]!, grin[1]! + "b"]).released, ["a", grin + "b"]);
  assert.deepEqual(stream(["😀x"], ["😀", "y"]).released, ["", "😀y"]);
});

test("whatever the split, the released text is everything before the first stop string", () => {
  let state = 12345;
  const random = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state >>> 8) % n;
  };
  const alphabet = ["a", "b", "<", "/", "s", ">", "é", "🙂"];
  const stopSets = [["</s>"], ["ab", "ba"], ["a🙂", "<<"], ["bbb", "b/s"], []];
  for (let trial = 0; trial < 400; trial++) {
    const text = Array.from({ length: 1 + random(30) }, () => alphabet[random(alphabet.length)]).join("");
    const stops = stopSets[trial % stopSets.length]!;
    const pieces: string[] = [];
    for (let at = 0; at < text.length; ) {
      const length = 1 + random(5);
      pieces.push(text.slice(at, at + length));
      at += length;
    }
    const cuts = stops.map((stop) => text.indexOf(stop)).filter((at) => at >= 0);
    const expected = cuts.length > 0 ? text.slice(0, Math.min(...cuts)) : text;

    const matcher = new StopMatcher(stops);
    let released = "";
    let pushed = "";
    let stopped = false;
    for (const piece of pieces) {
      const result = matcher.push(piece);
      released += result.text;
      pushed += piece;
      stopped = result.stopped;
      if (stopped) break;
      // nothing is held back beyond the longest stop string, plus half a surrogate pair
      const longestStop = Math.max(1, ...stops.map((stop) => stop.length));
      assert.ok(pushed.length - released.length <= longestStop, `held back too much of ${JSON.stringify(pushed)}`);
    }
    if (!stopped) released += matcher.flush();
    const context = `${JSON.stringify(pieces)} with ${JSON.stringify(stops)}`;
    assert.equal(released, expected, context);
    assert.equal(stopped, cuts.length > 0, context);
  }
});

test("an empty or non-string stop string is rejected", () => {
  assert.throws(() => new StopMatcher(["ok", ""]), /stop string 1 is ""/);
  assert.throws(() => new StopMatcher([null as unknown as string]), /stop string 0 is null/);
});
