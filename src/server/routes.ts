import { chatCompletions, completions, modelNotFound } from "./completions.js";
import { Exchange, Site } from "./context.js";
import { METRICS_CONTENT_TYPE } from "./metrics.js";
import { ApiError } from "./errors.js";
import { shorten } from "./fields.js";
import { sendJson } from "./http.js";

type Handler = (site: Site, exchange: Exchange) => Promise<void> | void;
type Methods = Partial<Record<"GET" | "POST", Handler>>;

const MODELS_PREFIX = "/v1/models/";

function modelObject(site: Site): object {
  return { id: site.modelId, object: "model", created: site.created, owned_by: "smallthinker" };
}

const ROUTES: Readonly<Record<string, Methods>> = {
  "/v1/chat/completions": { POST: chatCompletions },
  "/v1/completions": { POST: completions },
  "/v1/models": { GET: (site, { response }) => sendJson(response, 200, { object: "list", data: [modelObject(site)] }) },
  // readiness for load balancers: 200 only while generations are served, 503 while loading or draining
  "/health": {
    GET: (site, { response }) => {
      const ready = site.state === "ready";
      const status = site.state === "ready" ? "ok" : site.state;
      sendJson(response, ready ? 200 : 503, { status, model: site.modelId, running: site.admission.running, waiting: site.admission.waiting }, ready ? {} : { "retry-after": "1" });
    },
  },
  "/metrics": {
    GET: (site, { response }) => {
      const text = site.metrics.render({ ready: site.state === "ready", waiting: site.admission.waiting, engine: site.model?.metrics() });
      response.writeHead(200, { "content-type": METRICS_CONTENT_TYPE, "content-length": String(Buffer.byteLength(text)) });
      response.end(text);
    },
  },
};

/** GET /v1/models/{id}: clients percent-encode the id, which may hold a slash. */
function modelRoute(path: string): Methods {
  let id: string;
  try {
    id = decodeURIComponent(path.slice(MODELS_PREFIX.length));
  } catch {
    id = path.slice(MODELS_PREFIX.length);
  }
  return {
    GET: (site, { response }) => {
      if (id !== site.modelId) throw modelNotFound(id);
      sendJson(response, 200, modelObject(site));
    },
  };
}

/** The handler for a request, or the 404 or 405 that answers it. */
export function findHandler(method: string, path: string): Handler {
  const methods = Object.hasOwn(ROUTES, path) ? ROUTES[path]! : path.startsWith(MODELS_PREFIX) ? modelRoute(path) : undefined;
  const described = shorten(`${method} ${path}`);
  if (!methods) throw new ApiError(404, `Invalid URL (${described}).`, { type: "invalid_request_error", code: "unknown_url" });
  // HEAD is GET without the body, which Node leaves out by itself
  const handler = methods[(method === "HEAD" ? "GET" : method) as keyof Methods];
  if (handler) return handler;
  const allowed = Object.keys(methods).join(", ");
  throw new ApiError(405, `Method not allowed (${described}); use ${allowed}.`, { type: "invalid_request_error", code: "method_not_allowed", headers: { allow: allowed } });
}
