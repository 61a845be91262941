import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** Where models come from and go to, read from the environment variables other Hugging Face tools use. */
export interface HubSettings {
  /** HF_ENDPOINT (default https://huggingface.co), without a trailing slash. */
  endpoint: string;
  /** HF_TOKEN, else the token `huggingface-cli login` saved ($HF_HOME/token). */
  token: string | undefined;
  /** HF_HUB_OFFLINE: use the cache only. */
  offline: boolean;
  /** HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir: string;
}

export async function hubSettings(): Promise<HubSettings> {
  // loaded when a model is asked for by name, so that running a local file does not load it
  const { getHFHubCachePath } = await import("@huggingface/hub");
  const env = process.env;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  return {
    endpoint: (env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, ""),
    token: env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || savedToken(env.HF_TOKEN_PATH ?? join(home, "token")),
    offline: /^(1|on|yes|true)$/i.test(env.HF_HUB_OFFLINE ?? ""),
    cacheDir: getHFHubCachePath(),
  };
}

function savedToken(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
