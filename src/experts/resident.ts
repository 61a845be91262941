import { GgufFile } from "../gguf/reader.js";
import { ExpertRef, Kernels } from "../kernels/api.js";
import { Arena } from "../kernels/arena.js";
import { SmallThinkerConfig } from "../model/config.js";
import { WeightLoader } from "../model/weights.js";
import { ExpertCounters, ExpertSource } from "./source.js";

/** Every expert loaded at start-up; arenas are added as each fills up (wasm32: 4 GiB each). */
export class ResidentExperts implements ExpertSource {
  private readonly experts: ExpertRef[][] = [];
  readonly counters: ExpertCounters = { hits: 0, misses: 0, bytesRead: 0, stallMs: 0, predictedReads: 0, predictedUsed: 0 };

  constructor(file: GgufFile, config: SmallThinkerConfig, kernels: Kernels, loader: WeightLoader, arenas: Arena[], headroom: number) {
    let arena = arenas[arenas.length - 1]!;
    for (let l = 0; l < config.layers; l++) {
      const gateInfo = file.tensor(`blk.${l}.ffn_gate_exps.weight`);
      const upInfo = file.tensor(`blk.${l}.ffn_up_exps.weight`);
      const downInfo = file.tensor(`blk.${l}.ffn_down_exps.weight`);
      const layer: ExpertRef[] = [];
      for (let e = 0; e < config.experts; e++) {
        const gate = loader.expertSlice(gateInfo, e);
        const up = loader.expertSlice(upInfo, e);
        const down = loader.expertSlice(downInfo, e);
        const gateBytes = loader.matrixBytes(gateInfo, gate.rows, gate.cols);
        const upBytes = loader.matrixBytes(upInfo, up.rows, up.cols);
        const downBytes = loader.matrixBytes(downInfo, down.rows, down.cols, "expert-down", config.downLayout);
        if (arena.available < gateBytes + upBytes + downBytes + headroom) {
          arena = kernels.createArena();
          arenas.push(arena);
        }
        const gatePtr = arena.alloc(gateBytes);
        loader.loadMatrixInto(arena, gatePtr, gateInfo, gate.start, gate.rows, gate.cols);
        const upPtr = arena.alloc(upBytes);
        loader.loadMatrixInto(arena, upPtr, upInfo, up.start, up.rows, up.cols);
        const downRef = loader.loadExpertDown(arena, arena.alloc(downBytes), downInfo, e, config.downLayout);
        layer.push({
          gate: { arena, ptr: gatePtr, type: gateInfo.type, rows: gate.rows, cols: gate.cols },
          up: { arena, ptr: upPtr, type: upInfo.type, rows: up.rows, cols: up.cols },
          down: downRef,
        });
      }
      this.experts.push(layer);
    }
  }

  readonly lookahead = 0;

  prefetch(): void {}

  predict(): void {}

  ready(): boolean {
    return true;
  }

  advance(): void {}

  acquire(layer: number, expert: number): ExpertRef {
    this.counters.hits++;
    return this.experts[layer]![expert]!;
  }

  release(): void {}

  dispose(): void {}
}
