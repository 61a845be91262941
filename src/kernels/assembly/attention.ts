// Attention over the ring KV cache, one KV head and its `group` query heads at a time.
//
// The visible positions are cut into chunks on a fixed grid of absolute positions (chunk k covers
// [k·C, (k+1)·C)). Each chunk gives, per query head, its max score m, Σe (e = exp(s - m)) and Σe·v;
// the chunks are then folded in order. Whether one thread folds chunks as it computes them or the
// chunks are spread over threads and folded afterwards, the arithmetic is the same, so results do not
// depend on the thread count.
//
// A chunk summary ("partial") for a head is [m, l, acc × headDim] (f32).

import { F16_EXP_INF, F16_SIGN_EM, F32_INF, POW2_112, constant, exp4, halvesToF32, madd, sumLanes } from "./simd";

@inline export function partialFloats(headDim: i32): i32 {
  return headDim + 2;
}

/** Copies `count` values of a cache row at p (f32, or f16 when `half`) to dst as f32. */
@inline function rowToF32(p: usize, half: bool, dst: usize, count: i32): void {
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const expInf = constant(F16_EXP_INF);
  const f32Inf = constant(F32_INF);
  if (!half) {
    memory.copy(dst, p, <usize>count << 2);
    return;
  }
  for (let i = 0; i < count; i += 4) {
    v128.store(dst + (<usize>i << 2), halvesToF32(v128.load16x4_s(p + (<usize>i << 1)), signEm, pow2_112, expInf, f32Inf));
  }
}

@inline function dot(a: usize, b: usize, count: i32): f32 {
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  for (let i = 0; i < count; i += 8) {
    s0 = madd(v128.load(a + (<usize>i << 2)), v128.load(b + (<usize>i << 2)), s0);
    s1 = madd(v128.load(a + (<usize>i << 2), 16), v128.load(b + (<usize>i << 2), 16), s1);
  }
  return sumLanes(f32x4.add(s0, s1));
}

/**
 * The partials of one chunk (positions first..last, all visible) for `group` query heads at q
 * (consecutive rows of headDim f32). k and v point at this KV head's values in slot 0; a slot is
 * `slotBytes` long. Scratch: group × chunkSize scores, then 16 × chunkSize values, then headDim.
 */
export function attendChunk(k: usize, v: usize, half: bool, slotBytes: usize, capacity: i32, q: usize, group: i32, headDim: i32,
  scale: f32, first: i32, last: i32, chunkSize: i32, scratch: usize, partial: usize): void {
  const count = last - first + 1;
  const padded = (count + 3) & ~3;
  const scores = scratch;
  const vTile = scratch + (<usize>(group * chunkSize) << 2);
  const kRow = vTile + (<usize>(16 * chunkSize) << 2);
  let slot = first % capacity;
  for (let j = 0; j < count; j++) {
    const keys = k + <usize>slot * slotBytes;
    let row = keys;
    if (half) {
      rowToF32(keys, true, kRow, headDim);
      row = kRow;
    }
    for (let g = 0; g < group; g++) {
      const s = dot(q + <usize>(g * headDim) * 4, row, headDim) * scale;
      store<f32>(scores + (<usize>(g * chunkSize + j) << 2), s);
    }
    slot = slot + 1 == capacity ? 0 : slot + 1;
  }
  for (let g = 0; g < group; g++) {
    const s = scores + (<usize>(g * chunkSize) << 2);
    for (let j = count; j < padded; j++) store<f32>(s + (<usize>j << 2), -Infinity);
    let m4 = f32x4.splat(-Infinity);
    for (let j = 0; j < padded; j += 4) m4 = f32x4.max(m4, v128.load(s + (<usize>j << 2)));
    const m = max<f32>(max<f32>(f32x4.extract_lane(m4, 0), f32x4.extract_lane(m4, 1)), max<f32>(f32x4.extract_lane(m4, 2), f32x4.extract_lane(m4, 3)));
    const mv = f32x4.splat(m);
    let l4 = f32x4.splat(0);
    for (let j = 0; j < padded; j += 4) {
      const e = exp4(f32x4.sub(v128.load(s + (<usize>j << 2)), mv));
      v128.store(s + (<usize>j << 2), e);
      l4 = f32x4.add(l4, e);
    }
    const out = partial + (<usize>(g * partialFloats(headDim)) << 2);
    store<f32>(out, m);
    store<f32>(out, sumLanes(l4), 4);
  }
  // Σ e·v, 16 dimensions at a time: the tile of every position's values is gathered (and widened
  // from f16) once and shared by the group's heads.
  for (let d = 0; d < headDim; d += 16) {
    slot = first % capacity;
    for (let j = 0; j < count; j++) {
      const values = v + <usize>slot * slotBytes + (<usize>d << (half ? 1 : 2));
      rowToF32(values, half, vTile + (<usize>(j * 16) << 2), 16);
      slot = slot + 1 == capacity ? 0 : slot + 1;
    }
    for (let g = 0; g < group; g++) {
      const e = scores + (<usize>(g * chunkSize) << 2);
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let a2 = f32x4.splat(0);
      let a3 = f32x4.splat(0);
      for (let j = 0; j < count; j++) {
        const w = v128.load32_splat(e + (<usize>j << 2));
        const t = vTile + (<usize>(j * 16) << 2);
        a0 = madd(w, v128.load(t), a0);
        a1 = madd(w, v128.load(t, 16), a1);
        a2 = madd(w, v128.load(t, 32), a2);
        a3 = madd(w, v128.load(t, 48), a3);
      }
      const out = partial + (<usize>(g * partialFloats(headDim) + 2 + d) << 2);
      v128.store(out, a0);
      v128.store(out, a1, 16);
      v128.store(out, a2, 32);
      v128.store(out, a3, 48);
    }
  }
}

@inline function expScalar(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}

/** Folds the partial `next` into `running` (both for `group` heads). */
export function foldPartial(running: usize, next: usize, group: i32, headDim: i32): void {
  for (let g = 0; g < group; g++) {
    const r = running + (<usize>(g * partialFloats(headDim)) << 2);
    const n = next + (<usize>(g * partialFloats(headDim)) << 2);
    const m0 = load<f32>(r);
    const m1 = load<f32>(n);
    const m = max<f32>(m0, m1);
    const f0 = expScalar(m0 - m);
    const f1 = expScalar(m1 - m);
    store<f32>(r, m);
    store<f32>(r, load<f32>(r, 4) * f0 + load<f32>(n, 4) * f1, 4);
    const v0 = f32x4.splat(f0);
    const v1 = f32x4.splat(f1);
    for (let i = 0; i < headDim; i += 4) {
      const o = <usize>(i + 2) << 2;
      v128.store(r + o, f32x4.add(f32x4.mul(v128.load(r + o), v0), f32x4.mul(v128.load(n + o), v1)));
    }
  }
}

/** out rows (headDim each, `group` consecutive heads) = acc / l of the folded partials. */
export function finishPartial(running: usize, group: i32, headDim: i32, out: usize): void {
  for (let g = 0; g < group; g++) {
    const r = running + (<usize>(g * partialFloats(headDim)) << 2);
    const inv = f32x4.splat(<f32>1 / load<f32>(r, 4));
    const o = out + (<usize>(g * headDim) << 2);
    for (let i = 0; i < headDim; i += 4) {
      v128.store(o + (<usize>i << 2), f32x4.mul(v128.load(r + (<usize>(i + 2) << 2)), inv));
    }
  }
}

/** First visible position for a query at `position` (window ≤ 0 means global). */
@inline export function firstVisible(position: i32, window: i32): i32 {
  return window <= 0 ? 0 : max<i32>(0, position - window + 1);
}

/**
 * Chunk partials [c0, c1) of the visible range of one (query token, KV head), counted from the
 * range's first chunk, written consecutively at `partials`.
 */
export function attendChunks(k: usize, v: usize, half: bool, slotBytes: usize, capacity: i32, q: usize, group: i32, headDim: i32,
  scale: f32, position: i32, window: i32, chunkSize: i32, c0: i32, c1: i32, scratch: usize, partials: usize): void {
  const first = firstVisible(position, window);
  const base = first / chunkSize;
  const stride = <usize>(group * partialFloats(headDim)) << 2;
  for (let c = c0; c < c1; c++) {
    const start = max<i32>(first, (base + c) * chunkSize);
    const end = min<i32>(position, (base + c + 1) * chunkSize - 1);
    attendChunk(k, v, half, slotBytes, capacity, q, group, headDim, scale, start, end, chunkSize, scratch, partials + <usize>(c - c0) * stride);
  }
}

/** Number of chunks the visible range of a query at `position` spans. */
export function chunkCount(position: i32, window: i32, chunkSize: i32): i32 {
  return position / chunkSize - firstVisible(position, window) / chunkSize + 1;
}

/**
 * A whole (query token, KV head): chunks computed and folded one after another; `scratch` holds the
 * chunk scratch followed by two partials.
 */
export function attendUnit(k: usize, v: usize, half: bool, slotBytes: usize, capacity: i32, q: usize, group: i32, headDim: i32,
  scale: f32, position: i32, window: i32, chunkSize: i32, scratch: usize, chunkScratchBytes: usize, out: usize): void {
  const running = scratch + chunkScratchBytes;
  const next = running + (<usize>(group * partialFloats(headDim)) << 2);
  const chunks = chunkCount(position, window, chunkSize);
  for (let c = 0; c < chunks; c++) {
    attendChunks(k, v, half, slotBytes, capacity, q, group, headDim, scale, position, window, chunkSize, c, c + 1, scratch, c == 0 ? running : next);
    if (c > 0) foldPartial(running, next, group, headDim);
  }
  finishPartial(running, group, headDim, out);
}

/** Folds `count` stored partials (consecutive) into the first and writes the heads' outputs. */
export function foldStored(partials: usize, count: i32, group: i32, headDim: i32, out: usize): void {
  const stride = <usize>(group * partialFloats(headDim)) << 2;
  for (let c = 1; c < count; c++) foldPartial(partials, partials + <usize>c * stride, group, headDim);
  finishPartial(partials, group, headDim, out);
}
