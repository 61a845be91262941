// Attention over the ring KV cache, one KV head and its `group` query heads at a time.
//
// The visible positions are cut into chunks on a fixed grid of absolute positions (chunk k covers
// [k·C, (k+1)·C)). Each chunk gives, per query head, its max score m, Σe (e = exp(s - m)) and Σe·v;
// the chunks are then folded in order. Whether one thread folds chunks as it computes them or the
// chunks are spread over threads and folded afterwards, the arithmetic is the same, so results do not
// depend on the thread count.
//
// A chunk summary ("partial") for a head is [m, l, acc × headDim] (f32).

import { F16_SIGN_EM, POW2_112, constant, exp4, halvesToF32Finite, madd, sumLanes, transposeSumF32 } from "./simd";

@inline export function partialFloats(headDim: i32): i32 {
  return headDim + 2;
}

/** Whether a chunk's rows can be read in place: an f32 cache, and no wrap around the ring. */
@inline function inPlace(half: bool, capacity: i32, first: i32, count: i32): bool {
  return !half && first % capacity + count <= capacity;
}

/**
 * Rows [first, first + count) of one KV head as f32: the cache itself when `inPlace`, else copied
 * (and widened from f16) to `buffer`, headDim floats apart. Returns the first row's address.
 */
@inline function chunkRows(cache: usize, half: bool, slotBytes: usize, capacity: i32, first: i32, count: i32, headDim: i32, buffer: usize): usize {
  const start = first % capacity;
  if (inPlace(half, capacity, first, count)) return cache + <usize>start * slotBytes;
  const signEm = constant(F16_SIGN_EM);
  const pow2_112 = constant(POW2_112);
  const rowBytes = <usize>headDim << 2;
  let slot = start;
  for (let j = 0; j < count; j++) {
    const from = cache + <usize>slot * slotBytes;
    const to = buffer + <usize>j * rowBytes;
    if (half) {
      // KV values are finite: the short conversion (no infinities or NaNs) suffices.
      for (let i = 0; i < headDim; i += 4) {
        v128.store(to + (<usize>i << 2), halvesToF32Finite(v128.load16x4_s(from + (<usize>i << 1)), signEm, pow2_112));
      }
    } else {
      memory.copy(to, from, rowBytes);
    }
    slot = slot + 1 == capacity ? 0 : slot + 1;
  }
  return buffer;
}

/** Scratch bytes of `attendChunk`: group × chunk scores, then chunk rows of keys and of values. */
export function chunkScratchBytes(group: i32, headDim: i32, chunkSize: i32): usize {
  return (<usize>(group * chunkSize) << 2) + (<usize>(2 * chunkSize * headDim) << 2);
}

/**
 * The partials of one chunk (positions first..last, all visible) for `group` query heads at q
 * (consecutive rows of headDim f32). k and v point at this KV head's values in slot 0; a slot is
 * `slotBytes` long.
 */
export function attendChunk(k: usize, v: usize, half: bool, slotBytes: usize, capacity: i32, q: usize, group: i32, headDim: i32,
  scale: f32, first: i32, last: i32, chunkSize: i32, scratch: usize, partial: usize): void {
  const count = last - first + 1;
  const kBuffer = scratch + (<usize>(group * chunkSize) << 2);
  const vBuffer = kBuffer + (<usize>(chunkSize * headDim) << 2);
  const keys = chunkRows(k, half, slotBytes, capacity, first, count, headDim, kBuffer);
  const values = chunkRows(v, half, slotBytes, capacity, first, count, headDim, vBuffer);
  const stride = inPlace(half, capacity, first, count) ? slotBytes : <usize>headDim << 2;
  attendRows(keys, values, stride, count, q, group, headDim, scale, chunkSize, scratch, partial);
}

/**
 * The partials of `count` visible positions whose keys and values are f32 rows `stride` apart (at
 * most chunkSize of them), for `group` query heads at q; `scores` holds group × chunkSize f32.
 */
@inline function attendRows(keys: usize, values: usize, stride: usize, count: i32, q: usize, group: i32, headDim: i32,
  scale: f32, chunkSize: i32, scores: usize, partial: usize): void {
  const padded = (count + 3) & ~3;
  const kStride = stride;
  const vStride = stride;
  const qStride = <usize>headDim << 2;
  const scaleV = f32x4.splat(scale);
  // Scores, two heads × four positions at a time (a missing fifth head or position repeats the last).
  // Addresses advance with the loops: V8 would recompute their invariant parts inside them.
  const rowBytes = <usize>headDim << 2;
  for (let j = 0; j < count; j += 4) {
    const k0 = keys + <usize>j * kStride;
    const k1 = keys + <usize>min<i32>(j + 1, count - 1) * kStride;
    const k2 = keys + <usize>min<i32>(j + 2, count - 1) * kStride;
    const k3 = keys + <usize>min<i32>(j + 3, count - 1) * kStride;
    for (let g = 0; g < group; g += 2) {
      const g1 = min<i32>(g + 1, group - 1);
      let q0 = q + <usize>g * qStride;
      let q1 = q + <usize>g1 * qStride;
      let y0 = k0;
      let y1 = k1;
      let y2 = k2;
      let y3 = k3;
      const end = q0 + rowBytes;
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let a2 = f32x4.splat(0);
      let a3 = f32x4.splat(0);
      let b0 = f32x4.splat(0);
      let b1 = f32x4.splat(0);
      let b2 = f32x4.splat(0);
      let b3 = f32x4.splat(0);
      while (q0 < end) {
        const x0 = v128.load(q0);
        const x1 = v128.load(q1);
        const v0 = v128.load(y0);
        const v1 = v128.load(y1);
        const v2 = v128.load(y2);
        const v3 = v128.load(y3);
        a0 = madd(x0, v0, a0);
        a1 = madd(x0, v1, a1);
        a2 = madd(x0, v2, a2);
        a3 = madd(x0, v3, a3);
        b0 = madd(x1, v0, b0);
        b1 = madd(x1, v1, b1);
        b2 = madd(x1, v2, b2);
        b3 = madd(x1, v3, b3);
        q0 += 16;
        q1 += 16;
        y0 += 16;
        y1 += 16;
        y2 += 16;
        y3 += 16;
      }
      v128.store(scores + (<usize>(g * chunkSize + j) << 2), f32x4.mul(transposeSumF32(a0, a1, a2, a3), scaleV));
      v128.store(scores + (<usize>(g1 * chunkSize + j) << 2), f32x4.mul(transposeSumF32(b0, b1, b2, b3), scaleV));
    }
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
  // Σ e·v: two heads × 16 dimensions at a time, sharing the value loads.
  for (let g = 0; g < group; g += 2) {
    const g1 = min<i32>(g + 1, group - 1);
    const e0 = scores + (<usize>(g * chunkSize) << 2);
    const e1 = scores + (<usize>(g1 * chunkSize) << 2);
    for (let d = 0; d < headDim; d += 16) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      let a2 = f32x4.splat(0);
      let a3 = f32x4.splat(0);
      let b0 = f32x4.splat(0);
      let b1 = f32x4.splat(0);
      let b2 = f32x4.splat(0);
      let b3 = f32x4.splat(0);
      let row = values + (<usize>d << 2);
      let w0p = e0;
      let w1p = e1;
      const end = e0 + (<usize>count << 2);
      while (w0p < end) {
        const w0 = v128.load32_splat(w0p);
        const w1 = v128.load32_splat(w1p);
        const v0 = v128.load(row);
        const v1 = v128.load(row, 16);
        const v2 = v128.load(row, 32);
        const v3 = v128.load(row, 48);
        a0 = madd(w0, v0, a0);
        a1 = madd(w0, v1, a1);
        a2 = madd(w0, v2, a2);
        a3 = madd(w0, v3, a3);
        b0 = madd(w1, v0, b0);
        b1 = madd(w1, v1, b1);
        b2 = madd(w1, v2, b2);
        b3 = madd(w1, v3, b3);
        row += vStride;
        w0p += 4;
        w1p += 4;
      }
      const out0 = partial + (<usize>(g * partialFloats(headDim) + 2 + d) << 2);
      const out1 = partial + (<usize>(g1 * partialFloats(headDim) + 2 + d) << 2);
      v128.store(out0, a0);
      v128.store(out0, a1, 16);
      v128.store(out0, a2, 32);
      v128.store(out0, a3, 48);
      v128.store(out1, b0);
      v128.store(out1, b1, 16);
      v128.store(out1, b2, 32);
      v128.store(out1, b3, 48);
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

/** Folds `count` stored partials (consecutive) into the first and writes the heads' outputs. */
export function foldStored(partials: usize, count: i32, group: i32, headDim: i32, out: usize): void {
  const stride = <usize>(group * partialFloats(headDim)) << 2;
  for (let c = 1; c < count; c++) foldPartial(partials, partials + <usize>c * stride, group, headDim);
  finishPartial(partials, group, headDim, out);
}

/**
 * Queries [t0, t1) (positions at `positions`, i32) of one KV head, each from the same chunks,
 * partials and folds in order as `attendChunks` and `foldStored` give a single query (so results do
 * not depend on the blocking), but each chunk's keys and values are widened once for all the queries
 * that see it. q: the first query row of this KV head's group
 * for token 0, `qStride` bytes between tokens (out likewise). Scratch: the chunk scratch, then
 * (t1 - t0 + 1) partials.
 */
export function attendBlock(k: usize, v: usize, half: bool, slotBytes: usize, capacity: i32, q: usize, qStride: usize, group: i32,
  headDim: i32, scale: f32, positions: usize, t0: i32, t1: i32, window: i32, chunkSize: i32, scratch: usize, out: usize): void {
  const kBuffer = scratch + (<usize>(group * chunkSize) << 2);
  const vBuffer = kBuffer + (<usize>(chunkSize * headDim) << 2);
  const running = scratch + chunkScratchBytes(group, headDim, chunkSize);
  const pBytes = <usize>(group * partialFloats(headDim)) << 2;
  const next = running + <usize>(t1 - t0) * pBytes;
  const rowBytes = <usize>headDim << 2;
  let lo = i32.MAX_VALUE;
  let hi = -1;
  for (let t = t0; t < t1; t++) {
    const p = load<i32>(positions + (<usize>t << 2));
    lo = min<i32>(lo, firstVisible(p, window));
    hi = max<i32>(hi, p);
  }
  for (let c = lo / chunkSize; c <= hi / chunkSize; c++) {
    const chunkStart = c * chunkSize;
    const chunkEnd = chunkStart + chunkSize - 1;
    // The rows any query of the block sees in this chunk.
    let rowsLo = i32.MAX_VALUE;
    let rowsHi = -1;
    for (let t = t0; t < t1; t++) {
      const p = load<i32>(positions + (<usize>t << 2));
      const start = max<i32>(firstVisible(p, window), chunkStart);
      const end = min<i32>(p, chunkEnd);
      if (start > end) continue;
      rowsLo = min<i32>(rowsLo, start);
      rowsHi = max<i32>(rowsHi, end);
    }
    if (rowsHi < 0) continue;
    const rows = rowsHi - rowsLo + 1;
    const keys = chunkRows(k, half, slotBytes, capacity, rowsLo, rows, headDim, kBuffer);
    const values = chunkRows(v, half, slotBytes, capacity, rowsLo, rows, headDim, vBuffer);
    const stride = inPlace(half, capacity, rowsLo, rows) ? slotBytes : rowBytes;
    for (let t = t0; t < t1; t++) {
      const p = load<i32>(positions + (<usize>t << 2));
      const first = firstVisible(p, window);
      const start = max<i32>(first, chunkStart);
      const end = min<i32>(p, chunkEnd);
      if (start > end) continue;
      const mine = running + <usize>(t - t0) * pBytes;
      // A query's first chunk starts its running partial; later ones fold into it.
      const isFirst = start == first;
      const offset = <usize>(start - rowsLo) * stride;
      attendRows(keys + offset, values + offset, stride, end - start + 1, q + <usize>t * qStride, group, headDim, scale, chunkSize, scratch,
        isFirst ? mine : next);
      if (!isFirst) foldPartial(mine, next, group, headDim);
    }
  }
  for (let t = t0; t < t1; t++) finishPartial(running + <usize>(t - t0) * pBytes, group, headDim, out + <usize>t * qStride);
}
