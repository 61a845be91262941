import { Arena } from "../kernels/arena.js";
import { KvLayerRef, KvType } from "../kernels/api.js";
import { LayerPlan } from "../model/config.js";

export interface KvCacheOptions {
  /** Positions a sequence may reach (the context size). */
  contextSize: number;
  /** Most tokens evaluated in one forward call. */
  batchSize: number;
  type: KvType;
}

export interface KvShape {
  kvHeads: number;
  headDim: number;
  layerPlan: readonly LayerPlan[];
}

/**
 * Positions each layer must hold: global layers the whole context; sliding-window layers a ring of
 * the window plus one batch, because a batch writes all its keys before its first query (which
 * still needs the window before it) attends.
 */
export function layerCapacity(plan: LayerPlan, options: KvCacheOptions): number {
  if (plan.window === Infinity) return options.contextSize;
  return Math.min(options.contextSize, plan.window + options.batchSize - 1);
}

export function kvCacheBytes(shape: KvShape, options: KvCacheOptions): number {
  const element = options.type === "f32" ? 4 : 2;
  const perPosition = 2 * shape.kvHeads * shape.headDim * element;
  return shape.layerPlan.reduce((sum, plan) => sum + layerCapacity(plan, options) * perPosition + 128, 0);
}

/** The KV cache of one sequence: one ring per layer in an arena. A model holds one per parallel sequence. */
export class KvCache {
  readonly layers: KvLayerRef[];
  private readonly windows: number[];
  /** Tokens stored so far; the next token gets this position. */
  length = 0;
  /**
   * One past the highest position ever written. A batch abandoned halfway (a request cancelled
   * mid-step) has written keys past `length`, overwriting the ring slots of older positions; what
   * the rings still hold is counted from here.
   */
  private written = 0;

  constructor(arena: Arena, shape: KvShape, readonly options: KvCacheOptions) {
    const element = options.type === "f32" ? 4 : 2;
    this.windows = shape.layerPlan.map((plan) => plan.window);
    this.layers = shape.layerPlan.map((plan) => {
      const capacity = layerCapacity(plan, options);
      const bytes = capacity * shape.kvHeads * shape.headDim * element;
      return {
        arena,
        k: arena.alloc(bytes),
        v: arena.alloc(bytes),
        type: options.type,
        capacity,
        kvHeads: shape.kvHeads,
        headDim: shape.headDim,
      };
    });
  }

  get contextSize(): number {
    return this.options.contextSize;
  }

  /** Called before positions up to `end` (exclusive) are written. */
  noteWrite(end: number): void {
    this.written = Math.max(this.written, end);
  }

  /**
   * Forgets positions from `length` on, so evaluation can resume there. A sliding-window ring keeps
   * only its last `capacity` positions; if the window before `length` has already been overwritten
   * this returns false and the caller must start over.
   */
  truncate(length: number): boolean {
    if (length > this.length) return false;
    // an empty sequence needs nothing from the rings, however much they have overwritten
    if (length === 0) {
      this.length = 0;
      return true;
    }
    const written = Math.max(this.written, this.length);
    for (let l = 0; l < this.layers.length; l++) {
      const oldestKept = Math.max(0, written - this.layers[l]!.capacity);
      const oldestNeeded = Math.max(0, length - this.windows[l]! + 1);
      if (oldestNeeded < oldestKept) return false;
    }
    this.length = length;
    return true;
  }
}
