const fround = Math.fround;

/**
 * cos/sin tables for NEOX RoPE at the given positions, computed as llama.cpp does in f32:
 * theta starts at the position and is multiplied by base^(-2/dims) once per pair, so the
 * rounding of the angles (which matters at positions in the thousands) matches.
 */
export function ropeTables(positions: ArrayLike<number>, headDim: number, base: number, cos: Float32Array, sin: Float32Array): void {
  const half = headDim / 2;
  const thetaScale = fround(Math.pow(base, -2 / headDim));
  for (let t = 0; t < positions.length; t++) {
    let theta = fround(positions[t]!);
    for (let i = 0; i < half; i++) {
      cos[t * half + i] = fround(Math.cos(theta));
      sin[t * half + i] = fround(Math.sin(theta));
      theta = fround(theta * thetaScale);
    }
  }
}
