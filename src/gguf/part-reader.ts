import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";

/**
 * The one way model bytes are read: `length` bytes at `position` of part `part` (0 for a
 * single-file model, the file's index for a split one) into the memory the caller gives. Every
 * reader of tensor data goes through it — the GGUF header and token-embedding reads, the dense
 * weight loader, the expert store's I/O threads — so another platform (Blob slices, HTTP Range)
 * only has to provide this.
 */
export interface PartReader {
  /** Bytes of part `part`. */
  size(part: number): number;
  /**
   * Reads up to `target.length` bytes at `position` of part `part` into `target` and returns how
   * many it read: fewer only where the part ends.
   */
  read(part: number, position: number, target: Uint8Array): number;
  close(): void;
}

/** A part that could not be opened: which one, and why. */
export class PartOpenError extends Error {
  constructor(
    readonly path: string,
    readonly index: number,
    readonly problem: string,
    readonly detail?: string,
  ) {
    super(`${path}: ${problem}${detail ? `: ${detail}` : ""}`);
    this.name = "PartOpenError";
  }
}

/** fs.readSync refuses lengths of 2 GiB and more: long reads go in slices below that. */
const MAX_READ_SLICE = 1 << 30;

/**
 * The parts as files on this machine, all opened at once (a PartOpenError for one that cannot be,
 * or is no regular file). With `direct`, O_DIRECT: reads then bypass the page cache, and
 * positions, lengths and the target's address must be whole sectors (the callers align them).
 */
export function openPartReader(paths: readonly string[], options: { direct: boolean }): PartReader {
  const flags = options.direct ? constants.O_RDONLY | constants.O_DIRECT : constants.O_RDONLY;
  const fds: number[] = [];
  const sizes: number[] = [];
  try {
    paths.forEach((path, index) => {
      try {
        fds.push(openSync(path, flags));
      } catch (error) {
        throw new PartOpenError(path, index, "cannot open", (error as Error).message);
      }
      const stats = fstatSync(fds.at(-1)!);
      if (!stats.isFile()) throw new PartOpenError(path, index, "not a regular file");
      sizes.push(stats.size);
    });
  } catch (error) {
    for (const fd of fds) closeSync(fd);
    throw error;
  }
  let closed = false;
  const fdOf = (part: number) => {
    if (closed) throw new Error("read after close");
    const fd = fds[part];
    if (fd === undefined) throw new RangeError(`there is no part ${part}: the model has ${paths.length}`);
    return fd;
  };
  return {
    size(part) {
      fdOf(part);
      return sizes[part]!;
    },
    read(part, position, target) {
      const fd = fdOf(part);
      let done = 0;
      while (done < target.length) {
        const n = readSync(fd, target, done, Math.min(target.length - done, MAX_READ_SLICE), position + done);
        if (n === 0) break;
        done += n;
      }
      return done;
    },
    close() {
      if (!closed) for (const fd of fds) closeSync(fd);
      closed = true;
    },
  };
}
