import { PartReader, openPartReader } from "../gguf/part-reader.js";
import { Arena, Ptr } from "../kernels/arena.js";
import { alignedRange, DIRECT_ALIGNMENT, supportsDirectIo } from "./io-pool.js";

/**
 * Synchronous reads of a model's file ranges (in any of its parts) into arena memory, bypassing
 * the page cache with O_DIRECT when the file system supports it (the page cache is charged to a
 * cgroup's memory limit like any other memory, so a budget would otherwise fill with cached file
 * pages).
 */
export class DirectFile {
  private readonly reader: PartReader;
  readonly direct: boolean;

  /** `paths`: the model's files, its first part first (GgufFile.paths). */
  constructor(private readonly paths: readonly string[], useDirect = true) {
    this.direct = useDirect && paths.every(supportsDirectIo);
    this.reader = openPartReader(paths, { direct: this.direct });
  }

  /** Staging bytes a read of `length` bytes needs (sector slack on both ends). */
  static stagingBytes(length: number): number {
    return Math.ceil(length / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT + 2 * DIRECT_ALIGNMENT;
  }

  /**
   * Reads bytes [position, position + length) of part `part` into `staging` (4 KiB-aligned, at
   * least stagingBytes(length) long) and returns where in the arena the wanted bytes start.
   */
  read(arena: Arena, staging: Ptr, part: number, position: number, length: number): Ptr {
    if (staging % DIRECT_ALIGNMENT !== 0) throw new RangeError(`staging ${staging} is not ${DIRECT_ALIGNMENT}-aligned`);
    const range = this.direct ? alignedRange(position, length) : { position, length, offset: 0 };
    const done = this.reader.read(part, range.position, arena.u8(staging, range.length));
    if (done < range.offset + length) throw new RangeError(`${this.paths[part]}: file ends before byte ${position + length}`);
    return staging + range.offset;
  }

  close(): void {
    this.reader.close();
  }
}
