import { formatBytes } from "./args.js";

export interface Progress {
  update(done: number, total: number): void;
  /** Ends the bar (a terminal gets its line back). */
  finish(): void;
}

interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Redraws at most this often: a bar redrawn for every chunk would cost more than the work. */
const REDRAW_MS = 100;

/**
 * A progress display on stderr: on a terminal a bar redrawn in place (bytes, rate, time left);
 * elsewhere, if `plain` is set, a line at every tenth, and nothing otherwise (logs stay short).
 */
export function progressBar(label: string, options: { plain: boolean; output?: Output } = { plain: false }): Progress {
  const output = options.output ?? process.stderr;
  if (output.isTTY) return terminalBar(label, output);
  if (!options.plain) return { update() {}, finish() {} };
  let reported = -1;
  return {
    update(done, total) {
      const tenth = total > 0 ? Math.floor((done / total) * 10) : 0;
      if (tenth <= reported) return;
      reported = tenth;
      output.write(`${label}: ${tenth * 10}% (${formatBytes(done)} of ${formatBytes(total)})\n`);
    },
    finish() {},
  };
}

function terminalBar(label: string, output: Output): Progress {
  const started = performance.now();
  let first: number | undefined;
  let drawn = 0;
  let last = { done: 0, total: 0 };
  const draw = () => {
    const { done, total } = last;
    const seconds = (performance.now() - started) / 1000;
    // bytes that were already there (a resumed download) do not count toward the rate
    const rate = seconds > 0.2 ? (done - (first ?? 0)) / seconds : 0;
    const eta = rate > 0 && total > done ? ` ETA ${clock((total - done) / rate)}` : "";
    const share = total > 0 ? done / total : 0;
    const text = ` ${(share * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)}${rate > 0 ? ` ${formatBytes(rate)}/s` : ""}${eta}`;
    const width = Math.max(10, Math.min(40, (output.columns ?? 80) - label.length - text.length - 4));
    const filled = Math.round(share * width);
    output.write(`\r${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}]${text}\x1b[K`);
  };
  return {
    update(done, total) {
      first ??= done;
      last = { done, total };
      const now = performance.now();
      if (now - drawn >= REDRAW_MS || done >= total) {
        drawn = now;
        draw();
      }
    },
    finish() {
      if (drawn > 0) {
        draw();
        output.write("\n");
      }
    },
  };
}

function clock(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}
