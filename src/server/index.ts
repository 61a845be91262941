export { startServer, type ServerOptions, type RunningServer } from "./server.js";
export { DEFAULT_LIMITS, type ServerLimits } from "./context.js";
export { formatRecord, type RequestRecord } from "./log.js";
export { checkAccessOptions, type AccessOptions } from "./access.js";
