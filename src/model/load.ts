import { GgufFile } from "../gguf/reader.js";
import { Kernels, KvType } from "../kernels/api.js";
import { ResidentExperts } from "../experts/resident.js";
import { readConfig } from "./config.js";
import { SmallThinkerModel } from "./model.js";
import { STAGING_BYTES, WeightLoader } from "./weights.js";

export interface LoadOptions {
  contextSize?: number;
  batchSize?: number;
  kvType?: KvType;
  sparse?: boolean;
  logitsRows?: number;
}

/** Opens a SmallThinker GGUF and loads every weight into memory. */
export function loadSmallThinker(path: string, kernels: Kernels, options: LoadOptions = {}): SmallThinkerModel {
  const file = GgufFile.open(path);
  try {
    const config = readConfig(file);
    const batchSize = options.batchSize ?? 256;
    const runtime = {
      contextSize: Math.min(options.contextSize ?? 4096, config.contextLength),
      batchSize,
      kvType: options.kvType ?? "f16",
      sparse: options.sparse ?? true,
      logitsRows: Math.min(options.logitsRows ?? 8, batchSize),
    };
    const arena = kernels.createArena();
    const staging = { arena, ptr: arena.alloc(STAGING_BYTES), bytes: STAGING_BYTES };
    const loader = new WeightLoader(file, kernels, staging);
    const dense = SmallThinkerModel.loadDenseWeights(file, config, loader, arena);
    return new SmallThinkerModel(file, config, kernels, dense, (arenas) => new ResidentExperts(file, config, kernels, loader, arenas, 64 << 20), arena, runtime);
  } catch (error) {
    file.close();
    throw error;
  }
}
