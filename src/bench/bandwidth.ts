import { createWasmKernels } from "../kernels/wasm/kernels.js";
import { summarize } from "./measure.js";

/** Bytes the probe reads per pass: far beyond any cache, small beside a model. */
export const PROBE_BYTES = 512 * 2 ** 20;

/**
 * The machine's memory read bandwidth with `threads` threads, bytes per second: the median of
 * `passes` timed reads of a buffer with the kernels' own SIMD loads, on the kernels' own pool, so
 * it is the bandwidth a decode's weight reads can reach.
 */
export async function measureReadBandwidth(threads: number, passes = 7, bytes = PROBE_BYTES): Promise<number> {
  const kernels = await createWasmKernels({ threads });
  try {
    const arena = kernels.createArena(kernels.reservedArenaBytes + bytes + 64);
    const src = arena.alloc(bytes);
    // Written first, so every page is resident and the reads are memory reads, not page faults.
    arena.bytes.fill(1, src, src + bytes);
    const blocks = bytes >> 6;
    const expected = Math.imul(blocks * 16, 0x01010101) | 0;
    const rates: number[] = [];
    // One untimed pass wakes the pool's threads.
    for (let pass = 0; pass <= passes; pass++) {
      const started = performance.now();
      const sum = kernels.sumBlocks(arena, src, blocks);
      if (pass > 0) rates.push(bytes / ((performance.now() - started) / 1000));
      if (sum !== expected) throw new Error("bandwidth probe: the buffer did not read back as written");
    }
    return summarize(rates).median;
  } finally {
    await kernels.dispose();
  }
}
