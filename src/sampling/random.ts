/**
 * xoshiro128** seeded through splitmix32. It uses only 32-bit integer arithmetic, so a seed gives
 * the same stream on every platform and Node version, unlike Math.random.
 */
export class SeededRandom {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** `seed` is a non-negative safe integer; its high and low 32 bits seed separate halves of the state. */
  constructor(seed: number) {
    const low = seed >>> 0;
    const high = Math.floor(seed / 2 ** 32) >>> 0;
    // splitmix32 is a bijection of its counter, so s0 and s1 can never both be zero: the state is valid
    this.s0 = splitmix32(low, 1);
    this.s1 = splitmix32(low, 2);
    this.s2 = splitmix32(high, 3);
    this.s3 = splitmix32(high, 4);
  }

  nextUint32(): number {
    const result = Math.imul(rotateLeft(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const shifted = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= shifted;
    this.s3 = rotateLeft(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits, the full precision of a double. */
  nextDouble(): number {
    const high = this.nextUint32() >>> 5;
    const low = this.nextUint32() >>> 6;
    return (high * 2 ** 26 + low) / 2 ** 53;
  }
}

function splitmix32(seed: number, step: number): number {
  let z = (seed + Math.imul(step, 0x9e3779b9)) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) | 0;
}

function rotateLeft(value: number, bits: number): number {
  return (value << bits) | (value >>> (32 - bits));
}
