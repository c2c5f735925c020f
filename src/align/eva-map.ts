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
import { SparseRowsBuilder, topIndexes, type SparseRows } from "./sparse-rows.js";

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
 */
export function buildEvaMap(
  aux: EmbeddingMatrix,
  main: EmbeddingMatrix,
  seeds: { readonly aux: Int32Array; readonly main: Int32Array },
  params: EvaParams = EVA_DEFAULTS,
  onProgress?: (done: number, total: number) => void,
): { map: SparseRows; stats: EvaMapStats } {
  if (seeds.aux.length === 0) throw new Error("EVA needs tokens spelled identically by both members, and these members share none; use method gac or unite");
  for (const m of [aux, main]) {
    normalizeRows(m.data, m.width);
    centerColumns(m.data, m.width);
    normalizeRows(m.data, m.width);
  }
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
  const u = flatten(svd.leftSingularVectors, r);
  const v = flatten(svd.rightSingularVectors, r);
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

  const builder = new SparseRowsBuilder(aux.rows, main.rows, params.topK);
  const scores = new Float32Array(main.rows);
  const order = new Int32Array(params.topK + 1);
  const cols: number[] = [];
  const vals: number[] = [];
  let keptRows = 0;
  let droppedUniformRows = 0;
  for (let i = 0; i < aux.rows; i++) {
    dotsWithRows(x, i, z, main.rows, r, cosines);
    for (let j = 0; j < main.rows; j++) scores[j] = 2 * cosines[j]! - rT[j]!;
    const n = topIndexes(scores, main.rows, params.topK, order);
    cols.length = 0;
    vals.length = 0;
    for (let k = 0; k < n; k++) {
      const s = scores[order[k]!]!;
      if (s < params.minScore) break;
      cols.push(order[k]!);
      vals.push(s);
    }
    if (cols.length > params.uniformMinKept && std(vals) <= params.uniformStd) {
      droppedUniformRows++;
      cols.length = 0;
    }
    if (cols.length > 0) keptRows++;
    builder.addRow(cols, vals, cols.length);
    if (onProgress && i % 256 === 0) onProgress(aux.rows + i, total);
  }
  onProgress?.(total, total);
  const map = builder.build();
  return {
    map,
    stats: { seeds: seeds.aux.length, sharedDimensions: r, keptRows, droppedUniformRows, entries: map.cols.length },
  };
}

/** The first `r` columns of `m` as a row-major float64 array (m.rows × r). */
function flatten(m: Matrix, r: number): Float64Array {
  const out = new Float64Array(m.rows * r);
  for (let i = 0; i < m.rows; i++) for (let c = 0; c < r; c++) out[i * r + c] = m.get(i, c);
  return out;
}

function std(values: readonly number[]): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
}
