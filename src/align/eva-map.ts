/**
 * EVA's vocabulary map (Xu et al. 2024): learns an orthogonal map between an auxiliary member's
 * and the main member's output-embedding spaces from the tokens both spell identically, then
 * relates every auxiliary token to its nearest main tokens by CSLS.
 *
 * The map follows vecmap's supervised mode: length-normalize, center, length-normalize; the
 * orthogonal solution from the SVD of the seed cross-covariance XsᵀZs = U S Vᵀ. For equal widths
 * vecmap maps x → xUVᵀ; both spaces are rotated here instead (x → xU, z → zV), which gives the same
 * cosines and also works when the widths differ: r = min(widths) shared singular directions.
 */
import { Matrix, SVD } from "ml-matrix";
import { centerColumns, dotsWithRows, normalizeRows, project } from "./embedding-math.js";
import type { SparseRows } from "./sparse-rows.js";
import { chooseKernel, type DotsBackend } from "./dots-pool.js";
import { assembleMap, cslsRows, matchRow, type CslsRows } from "./eva-rows.js";
import { cslsWasm } from "./eva-wasm.js";

export interface EvaParams {
  /** Main tokens kept per auxiliary token. */
  readonly topK: number;
  /** CSLS scores below this are dropped. */
  readonly minScore: number;
  /** A row with more than `uniformMinKept` kept scores whose standard deviation is ≤ `uniformStd` is dropped (no clear match). */
  readonly uniformStd: number;
  readonly uniformMinKept: number;
}

export const EVA_DEFAULTS: EvaParams = { topK: 10, minScore: 0.1, uniformStd: 0.01, uniformMinKept: 5 };

export interface EmbeddingMatrix {
  readonly data: Float32Array;
  readonly rows: number;
  readonly width: number;
}

export interface EvaMapStats {
  readonly seeds: number;
  readonly sharedDimensions: number;
  readonly keptRows: number;
  readonly droppedUniformRows: number;
  readonly entries: number;
}

/**
 * Builds the auxiliary → main map (rows: auxiliary ids, columns: main ids, values: CSLS scores).
 * Both matrices are normalized in place. `seeds` pairs auxiliary and main ids of identical surfaces.
 * The CSLS passes run on the WebAssembly kernel over worker threads for large inputs (eva-wasm.ts),
 * in JavaScript otherwise and on runtimes without WebAssembly SIMD; both find the same matches.
 */
export async function buildEvaMap(
  aux: EmbeddingMatrix,
  main: EmbeddingMatrix,
  seeds: { readonly aux: Int32Array; readonly main: Int32Array },
  params: EvaParams = EVA_DEFAULTS,
  onProgress?: (done: number, total: number) => void,
  /** Map only the first `rows` auxiliary tokens (for measuring the cost on large vocabularies; r_T then comes from them alone). */
  rows = aux.rows,
  backend: DotsBackend = "auto",
): Promise<{ map: SparseRows; stats: EvaMapStats }> {
  if (seeds.aux.length === 0) throw new Error("EVA needs tokens spelled identically by both members, and these members share none; use method gac or unite");
  for (const m of [aux, main]) {
    normalizeRows(m.data, m.width);
    centerColumns(m.data, m.width);
    normalizeRows(m.data, m.width);
  }
  const rotation = seedRotation(aux, main, seeds);
  const mapped = rows === aux.rows ? aux : { data: aux.data.subarray(0, rows * aux.width), rows, width: aux.width };
  const module = chooseKernel(backend, 2 * rows * main.rows * rotation.r);
  const fast = module && (await cslsWasm(module, mapped, main, rotation, params, onProgress));
  if (module && !fast && backend === "wasm") throw new Error(`EVA: ${rows} + ${main.rows} projected rows do not fit in a WebAssembly memory (4 GiB); use the js backend`);
  const matches = fast || cslsJs(mapped, main, rotation, params, onProgress);
  onProgress?.(2 * rows, 2 * rows);
  const { map, keptRows, droppedUniformRows } = assembleMap(matches, main.rows);
  return {
    map,
    stats: { seeds: seeds.aux.length, sharedDimensions: rotation.r, keptRows, droppedUniformRows, entries: map.cols.length },
  };
}

/** The orthogonal maps U (aux width × r) and V (main width × r) from the seed cross-covariance's SVD. */
function seedRotation(aux: EmbeddingMatrix, main: EmbeddingMatrix, seeds: { readonly aux: Int32Array; readonly main: Int32Array }): { u: Float64Array; v: Float64Array; r: number } {
  // Seed cross-covariance Xsᵀ Zs (aux width × main width).
  const cov = new Matrix(aux.width, main.width);
  for (let s = 0; s < seeds.aux.length; s++) {
    const x = seeds.aux[s]! * aux.width;
    const z = seeds.main[s]! * main.width;
    for (let a = 0; a < aux.width; a++) {
      const xa = aux.data[x + a]!;
      if (xa === 0) continue;
      for (let b = 0; b < main.width; b++) cov.set(a, b, cov.get(a, b) + xa * main.data[z + b]!);
    }
  }
  const svd = new SVD(cov, { autoTranspose: true });
  const r = Math.min(aux.width, main.width);
  return { u: flatten(svd.leftSingularVectors, r), v: flatten(svd.rightSingularVectors, r), r };
}

/** The CSLS passes in JavaScript: every auxiliary row's matches. */
function cslsJs(
  aux: EmbeddingMatrix,
  main: EmbeddingMatrix,
  { u, v, r }: { readonly u: Float64Array; readonly v: Float64Array; readonly r: number },
  params: EvaParams,
  onProgress?: (done: number, total: number) => void,
): CslsRows {
  const x = project(aux.data, aux.width, u, r);
  const z = project(main.data, main.width, v, r);
  normalizeRows(x, r);
  normalizeRows(z, r);

  // r_T(j): mean cosine of main token j to its nearest mapped auxiliary token (neighbourhood 1).
  const total = 2 * aux.rows;
  const rT = new Float32Array(main.rows).fill(-Infinity);
  const cosines = new Float64Array(main.rows);
  for (let i = 0; i < aux.rows; i++) {
    dotsWithRows(x, i, z, main.rows, r, cosines);
    for (let j = 0; j < main.rows; j++) if (cosines[j]! > rT[j]!) rT[j] = cosines[j]!;
    if (onProgress && i % 256 === 0) onProgress(i, total);
  }

  const rows = cslsRows(aux.rows, params.topK);
  const scores = new Float32Array(main.rows);
  const order = new Int32Array(params.topK + 1);
  for (let i = 0; i < aux.rows; i++) {
    dotsWithRows(x, i, z, main.rows, r, cosines);
    for (let j = 0; j < main.rows; j++) scores[j] = 2 * cosines[j]! - rT[j]!;
    matchRow(scores, main.rows, params, order, rows, i);
    if (onProgress && i % 256 === 0) onProgress(aux.rows + i, total);
  }
  return rows;
}

/** The first `r` columns of `m` as a row-major float64 array (m.rows × r). */
function flatten(m: Matrix, r: number): Float64Array {
  const out = new Float64Array(m.rows * r);
  for (let i = 0; i < m.rows; i++) for (let c = 0; c < r; c++) out[i * r + c] = m.get(i, c);
  return out;
}
