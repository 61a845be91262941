import type { EngineMetrics } from "../engine/language-model.js";
import type { RequestRecord } from "./log.js";

/** Routes named in metrics; any other path counts as "other" (labels must not grow with what clients send). */
const ROUTES = new Set(["/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"]);

export function routeLabel(path: string): string {
  if (ROUTES.has(path)) return path;
  if (path.startsWith("/v1/models/")) return "/v1/models/{id}";
  return path === "-" ? "malformed" : "other";
}

/** Seconds over which generated tokens per second is measured. */
const RATE_WINDOW_SECONDS = 10;

/** Generated tokens per second over the last RATE_WINDOW_SECONDS, from samples of a running count. */
class RateMeter {
  private readonly samples: { at: number; count: number }[] = [];

  sample(count: number, at = performance.now()): void {
    const last = this.samples[this.samples.length - 1];
    if (last && at - last.at < 250) return;
    this.samples.push({ at, count });
    while (this.samples.length > 2 && at - this.samples[1]!.at >= RATE_WINDOW_SECONDS * 1000) this.samples.shift();
  }

  perSecond(count: number, at = performance.now()): number {
    this.sample(count, at);
    const first = this.samples[0]!;
    const seconds = (at - first.at) / 1000;
    return seconds > 0 ? (count - first.count) / seconds : 0;
  }
}

interface Metric {
  name: string;
  help: string;
  type: "counter" | "gauge";
  samples: { labels?: Record<string, string>; value: number }[];
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** Prometheus's text exposition format (version 0.0.4). */
export function renderMetrics(metrics: readonly Metric[]): string {
  const lines: string[] = [];
  for (const { name, help, type, samples } of metrics) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const { labels, value } of samples) {
      const labelText = labels ? `{${Object.entries(labels).map(([key, v]) => `${key}="${escapeLabel(v)}"`).join(",")}}` : "";
      lines.push(`${name}${labelText} ${Number.isFinite(value) ? value : 0}`);
    }
  }
  return lines.join("\n") + "\n";
}

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** What the server counts of its requests, and how it reports them beside the engine's state. */
export class ServerMetrics {
  private readonly requests = new Map<string, { route: string; status: string; count: number }>();
  private promptTokens = 0;
  private cachedPromptTokens = 0;
  private generatedTokens = 0;
  private readonly rate = new RateMeter();

  /** Counts one answered request (called for every record the server logs). */
  observe(record: RequestRecord): void {
    const route = routeLabel(record.path);
    const status = String(record.status);
    const key = `${route} ${status}`;
    const entry = this.requests.get(key) ?? { route, status, count: 0 };
    entry.count++;
    this.requests.set(key, entry);
    const generation = record.generation;
    if (generation) {
      this.promptTokens += generation.promptTokens;
      this.cachedPromptTokens += generation.cachedPromptTokens;
      this.generatedTokens += generation.completionTokens;
    }
  }

  /** Lets the tokens-per-second gauge see the engine's count between scrapes. */
  sampleEngine(engine: EngineMetrics | undefined): void {
    if (engine) this.rate.sample(engine.generatedTokens);
  }

  render(state: { ready: boolean; waiting: number; engine: EngineMetrics | undefined }): string {
    const engine = state.engine;
    const hits = engine?.expertHits ?? 0;
    const uses = hits + (engine?.expertMisses ?? 0);
    const metric = (name: string, type: Metric["type"], help: string, value: number): Metric => ({ name: `smallthinker_${name}`, help, type, samples: [{ value }] });
    return renderMetrics([
      {
        name: "smallthinker_requests_total",
        help: "HTTP requests answered, by route and status (499: the client left before the answer was complete).",
        type: "counter",
        samples: [...this.requests.values()].sort((a, b) => a.route.localeCompare(b.route) || a.status.localeCompare(b.status)).map(({ route, status, count }) => ({ labels: { route, status }, value: count })),
      },
      metric("prompt_tokens_total", "counter", "Prompt tokens of the generations served.", this.promptTokens),
      metric("prompt_tokens_cached_total", "counter", "Prompt tokens whose KV cache was reused instead of evaluated.", this.cachedPromptTokens),
      metric("generated_tokens_total", "counter", "Tokens generated for the requests served.", this.generatedTokens),
      metric("ready", "gauge", "1 while the server serves generations, 0 while it loads or drains.", state.ready ? 1 : 0),
      metric("queue_depth", "gauge", "Requests waiting for a free sequence.", state.waiting),
      metric("slots", "gauge", "Sequences the model generates at once.", engine?.slots ?? 0),
      metric("slots_active", "gauge", "Sequences generating now.", engine?.active ?? 0),
      metric("generated_tokens_per_second", "gauge", `Tokens generated per second over the last ${RATE_WINDOW_SECONDS} s, all sequences together.`, engine ? this.rate.perSecond(engine.generatedTokens) : 0),
      metric("kv_cache_tokens", "gauge", "Positions held in the sequences' KV caches (idle ones keep theirs for prefix reuse).", engine?.kvTokens ?? 0),
      metric("kv_cache_capacity_tokens", "gauge", "Positions all the sequences' KV caches can hold.", engine?.kvCapacity ?? 0),
      metric("kv_cache_usage_ratio", "gauge", "kv_cache_tokens / kv_cache_capacity_tokens.", engine && engine.kvCapacity > 0 ? engine.kvTokens / engine.kvCapacity : 0),
      metric("expert_cache_hits_total", "counter", "Expert uses served from memory.", hits),
      metric("expert_cache_misses_total", "counter", "Expert uses that had to be read from the model file.", engine?.expertMisses ?? 0),
      metric("expert_cache_hit_ratio", "gauge", "expert_cache_hits_total / all expert uses since the model was loaded.", uses > 0 ? hits / uses : 0),
      metric("expert_bytes_read_total", "counter", "Bytes of experts read from the model file.", engine?.expertBytesRead ?? 0),
    ]);
  }
}
