import { closeSync, constants, openSync, readSync } from "node:fs";
import { Arena, Ptr } from "../kernels/arena.js";
import { alignedRange, DIRECT_ALIGNMENT, supportsDirectIo } from "./io-pool.js";

/**
 * Synchronous reads of file ranges into arena memory, bypassing the page cache with O_DIRECT when
 * the file system supports it (the page cache is charged to a cgroup's memory limit like any other
 * memory, so a budget would otherwise fill with cached file pages).
 */
export class DirectFile {
  private fd: number;
  readonly direct: boolean;

  constructor(readonly path: string, useDirect = true) {
    this.direct = useDirect && supportsDirectIo(path);
    this.fd = openSync(path, this.direct ? constants.O_RDONLY | constants.O_DIRECT : constants.O_RDONLY);
  }

  /** Staging bytes a read of `length` bytes needs (sector slack on both ends). */
  static stagingBytes(length: number): number {
    return Math.ceil(length / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT + 2 * DIRECT_ALIGNMENT;
  }

  /**
   * Reads file bytes [position, position + length) into `staging` (4 KiB-aligned, at least
   * stagingBytes(length) long) and returns where in the arena the wanted bytes start.
   */
  read(arena: Arena, staging: Ptr, position: number, length: number): Ptr {
    if (staging % DIRECT_ALIGNMENT !== 0) throw new RangeError(`staging ${staging} is not ${DIRECT_ALIGNMENT}-aligned`);
    const range = this.direct ? alignedRange(position, length) : { position, length, offset: 0 };
    const bytes = arena.bytes;
    let done = 0;
    while (done < range.length) {
      const n = readSync(this.fd, bytes, staging + done, range.length - done, range.position + done);
      if (n === 0) break;
      done += n;
    }
    if (done < range.offset + length) throw new RangeError(`${this.path}: file ends before byte ${position + length}`);
    return staging + range.offset;
  }

  close(): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}
