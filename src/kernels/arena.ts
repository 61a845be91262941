/** A byte offset inside an arena's memory. */
export type Ptr = number;

const PAGE = 65536;
/** wasm32 addresses at most 4 GiB per memory. */
export const MAX_ARENA_BYTES = 65536 * PAGE;

/**
 * One shared WebAssembly.Memory holding weights, caches and activations, addressed by byte
 * offsets. Kernels (WASM on worker threads, or the TS reference) read and write it in place, so
 * nothing is copied between JS and the kernels. Space is handed out by a bump allocator; a model
 * sizes its arenas up front from its memory plan.
 */
export class Arena {
  readonly memory: WebAssembly.Memory;
  private top: number;
  private cachedBuffer: ArrayBufferLike | undefined;
  private bytesView: Uint8Array = new Uint8Array(0);
  private f32View: Float32Array = new Float32Array(0);
  private i32View: Int32Array = new Int32Array(0);

  constructor(
    readonly index: number,
    /** Bytes at the bottom of the memory that belong to the kernel module (its static data). */
    readonly reservedBytes: number,
    initialBytes = reservedBytes,
  ) {
    const initialPages = Math.max(1, Math.ceil(initialBytes / PAGE));
    this.memory = new WebAssembly.Memory({ initial: initialPages, maximum: MAX_ARENA_BYTES / PAGE, shared: true });
    this.top = reservedBytes;
  }

  /** Bytes handed out so far (including the reserved bottom). */
  get used(): number {
    return this.top;
  }

  get capacity(): number {
    return this.memory.buffer.byteLength;
  }

  /** Room left before the 4 GiB limit. */
  get available(): number {
    return MAX_ARENA_BYTES - this.top;
  }

  alloc(bytes: number, align = 64): Ptr {
    const start = Math.ceil(this.top / align) * align;
    const end = start + bytes;
    if (end > MAX_ARENA_BYTES) {
      throw new RangeError(`arena ${this.index}: cannot allocate ${bytes} bytes (in use ${start}, limit ${MAX_ARENA_BYTES})`);
    }
    const needed = Math.ceil(end / PAGE) - this.memory.buffer.byteLength / PAGE;
    if (needed > 0) this.memory.grow(needed);
    this.top = end;
    return start;
  }

  private refresh(): void {
    const buffer = this.memory.buffer;
    if (buffer !== this.cachedBuffer || buffer.byteLength !== this.bytesView.byteLength) {
      this.cachedBuffer = buffer;
      this.bytesView = new Uint8Array(buffer);
      this.f32View = new Float32Array(buffer);
      this.i32View = new Int32Array(buffer);
    }
  }

  /** The whole memory as bytes (valid until the arena grows). */
  get bytes(): Uint8Array {
    this.refresh();
    return this.bytesView;
  }

  get heapF32(): Float32Array {
    this.refresh();
    return this.f32View;
  }

  get heapI32(): Int32Array {
    this.refresh();
    return this.i32View;
  }

  u8(ptr: Ptr, length: number): Uint8Array {
    return this.bytes.subarray(ptr, ptr + length);
  }

  f32(ptr: Ptr, length: number): Float32Array {
    if (ptr % 4 !== 0) throw new RangeError(`arena ${this.index}: f32 view at unaligned ${ptr}`);
    return this.heapF32.subarray(ptr / 4, ptr / 4 + length);
  }

  i32(ptr: Ptr, length: number): Int32Array {
    if (ptr % 4 !== 0) throw new RangeError(`arena ${this.index}: i32 view at unaligned ${ptr}`);
    return this.heapI32.subarray(ptr / 4, ptr / 4 + length);
  }
}
