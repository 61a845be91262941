/**
 * Seeded random numbers for synthetic weights: sfc32 for uniform bits, and a 65536-entry
 * inverse-CDF table that turns 16 random bits into a standard normal value, so generating
 * billions of Gaussian weights stays cheap.
 */
export class Random {
  private a: number;
  private b: number;
  private c: number;
  private d = 1;

  constructor(seed: number, stream = 0) {
    this.a = seed >>> 0;
    this.b = (stream >>> 0) ^ 0x9e3779b9;
    this.c = 0x6a09e667;
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Fills `out` with N(0, std²) values (table-based, two per 32 random bits). */
  fillNormal(out: Float32Array, std = 1, start = 0, end = out.length): void {
    let i = start;
    for (; i + 1 < end; i += 2) {
      const bits = this.nextU32();
      out[i] = NORMAL_TABLE[bits & 0xffff]! * std;
      out[i + 1] = NORMAL_TABLE[bits >>> 16]! * std;
    }
    if (i < end) out[i] = NORMAL_TABLE[this.nextU32() & 0xffff]! * std;
  }

  normal(): number {
    return NORMAL_TABLE[this.nextU32() & 0xffff]!;
  }
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
export function normalQuantile(p: number): number {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - low) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

const NORMAL_TABLE = new Float32Array(65536);
for (let i = 0; i < 65536; i++) NORMAL_TABLE[i] = normalQuantile((i + 0.5) / 65536);

/** A stable 32-bit hash of a string (FNV-1a), to give every tensor its own random stream. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
