import { IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID } from "../../quant/formats/iq-grids.js";
import { TABLES_BYTES, TABLES_OFFSET } from "./layout.js";

/** The i-quant codebooks where the kernels read them (offsets as in assembly/iquants.ts). */
const PLACES: readonly [offset: number, data: Uint8Array | Int8Array][] = [
  [0, IQ2XXS_GRID],
  [2048, IQ2XS_GRID],
  [6144, IQ2S_GRID],
  [14336, IQ3XXS_GRID],
  [15360, IQ3S_GRID],
  [17408, IQ1S_GRID],
];

/** Copies the codebooks into an arena's table region (each arena has its own copy). */
export function writeCodebooks(bytes: Uint8Array): void {
  for (const [offset, data] of PLACES) {
    if (offset + data.length > TABLES_BYTES) throw new Error(`kernel tables: codebook at ${offset} overflows the ${TABLES_BYTES}-byte region`);
    bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), TABLES_OFFSET + offset);
  }
}
