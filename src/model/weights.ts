import { GgufTensorInfo, ggmlRowBytes, tensorByteLength } from "../gguf/types.js";
import { DirectFile } from "../experts/direct-file.js";
import { DownLayout, ExpertDownRef, Kernels, MatrixRef, WeightKind } from "../kernels/api.js";
import { Arena, Ptr } from "../kernels/arena.js";

/** Rows per packing chunk: kernel layouts group rows in powers of two up to this. */
const CHUNK_ROW_MULTIPLE = 64;
export const STAGING_BYTES = 8 << 20;

/**
 * Reads weights from the GGUF file into an arena and packs them into the kernels' layout, a chunk
 * of rows at a time through a fixed staging area, so loading never holds a second copy of a tensor
 * (and, with direct I/O, never fills the page cache).
 */
export class WeightLoader {
  constructor(
    private readonly file: DirectFile,
    private readonly kernels: Kernels,
    readonly staging: { arena: Arena; ptr: Ptr; bytes: number },
    /** Told the file bytes of each read, for load progress. */
    private readonly onRead: (bytes: number) => void = () => {},
  ) {}

  /** Packed bytes of a matrix, for planning. */
  matrixBytes(info: GgufTensorInfo, rows: number, cols: number, kind: WeightKind = "matrix", layout?: DownLayout): number {
    return this.kernels.packedBytes(kind, info.type, rows, cols, layout);
  }

  /** Reads `rows`×`cols` of `info` starting at byte `start` of its data into `dst` of `arena`, packed. */
  loadMatrixInto(arena: Arena, dst: Ptr, info: GgufTensorInfo, start: number, rows: number, cols: number, kind: WeightKind = "matrix", layout?: DownLayout): void {
    const { type } = info;
    const rowBytes = ggmlRowBytes(type, cols);
    const staging = this.stagingIn(arena);
    const capacity = staging.bytes - DirectFile.stagingBytes(0);
    const packedPerChunk = this.kernels.packedBytes(kind, type, CHUNK_ROW_MULTIPLE, cols, layout);
    const chunkable = kind === "matrix" && packedPerChunk * 2 === this.kernels.packedBytes(kind, type, 2 * CHUNK_ROW_MULTIPLE, cols, layout);
    if (!chunkable || rows * rowBytes <= capacity) {
      if (rows * rowBytes > capacity) {
        throw new Error(`weights: ${info.name} slice of ${rows * rowBytes} bytes exceeds the ${capacity}-byte staging area`);
      }
      const src = this.file.read(arena, staging.ptr, info.part, info.offset + start, rows * rowBytes);
      this.onRead(rows * rowBytes);
      this.kernels.pack(arena, kind, type, rows, cols, src, dst, layout);
      return;
    }
    const chunkRows = Math.max(CHUNK_ROW_MULTIPLE, Math.floor(capacity / rowBytes / CHUNK_ROW_MULTIPLE) * CHUNK_ROW_MULTIPLE);
    for (let r = 0; r < rows; r += chunkRows) {
      const count = Math.min(chunkRows, rows - r);
      const src = this.file.read(arena, staging.ptr, info.part, info.offset + start + r * rowBytes, count * rowBytes);
      this.onRead(count * rowBytes);
      const offset = this.kernels.packedBytes(kind, type, r, cols, layout);
      this.kernels.pack(arena, kind, type, count, cols, src, dst + offset, layout);
    }
  }

  /** A whole 2-D tensor as a resident matrix. */
  loadMatrix(arena: Arena, info: GgufTensorInfo): MatrixRef {
    const cols = info.dims[0]!;
    const rows = info.dims[1]!;
    const ptr = arena.alloc(this.matrixBytes(info, rows, cols));
    this.loadMatrixInto(arena, ptr, info, 0, rows, cols);
    return { arena, ptr, type: info.type, rows, cols };
  }

  /** A 1-D f32 tensor. */
  loadVector(arena: Arena, info: GgufTensorInfo): Ptr {
    const bytes = tensorByteLength(info);
    const ptr = arena.alloc(bytes);
    const staging = this.stagingIn(arena);
    const src = this.file.read(arena, staging.ptr, info.part, info.offset, bytes);
    this.onRead(bytes);
    arena.bytes.copyWithin(ptr, src, src + bytes);
    return ptr;
  }

  /** Expert `expert`'s slice of a 3-D expert tensor as a matrix of `rows` × `cols`. */
  expertSlice(info: GgufTensorInfo, expert: number): { start: number; rows: number; cols: number } {
    const cols = info.dims[0]!;
    const rows = info.dims[1]!;
    return { start: expert * rows * ggmlRowBytes(info.type, cols), rows, cols };
  }

  loadExpertDown(arena: Arena, dst: Ptr, info: GgufTensorInfo, expert: number, layout: DownLayout): ExpertDownRef {
    const { start, rows, cols } = this.expertSlice(info, expert);
    this.loadMatrixInto(arena, dst, info, start, rows, cols, "expert-down", layout);
    const hidden = layout === "upstream" ? rows : cols;
    const ffn = layout === "upstream" ? cols : rows;
    return { arena, ptr: dst, type: info.type, hidden, ffn, layout };
  }

  private readonly extraStaging = new Map<Arena, { arena: Arena; ptr: Ptr; bytes: number }>();

  /** Packing needs its source in the destination's arena; other arenas get their own staging. */
  private stagingIn(arena: Arena): { arena: Arena; ptr: Ptr; bytes: number } {
    if (arena === this.staging.arena) return this.staging;
    let staging = this.extraStaging.get(arena);
    if (!staging) {
      staging = { arena, ptr: arena.alloc(this.staging.bytes, 4096), bytes: this.staging.bytes };
      this.extraStaging.set(arena, staging);
    }
    return staging;
  }
}
