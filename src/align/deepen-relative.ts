/**
 * DeePEn's relative representations (Huang et al. 2024): each token is described by its
 * similarity to a shared set of anchor tokens, R = softmax_row(T · L2norm_row(cos(E, E_anchors))),
 * from the member's input embeddings.
 *
 * The reference stores R dense (|V| × |A| floats: tens of GB for 128k–152k vocabularies). Here each
 * row keeps only its `keep` largest entries, renormalized to sum to 1, so memory is O(|V| · keep);
 * the probability mass the cut drops is measured and reported (mean and max over rows).
 */
import { dotsWithRows, dotsWithRowsPair, normalizeRows } from "./embedding-math.js";
import { SparseRowsBuilder, topIndexes, type SparseRows } from "./sparse-rows.js";
import { chooseKernel, type DotsBackend } from "./dots-pool.js";
import { relativeWasm } from "./deepen-wasm.js";
import type { EmbeddingMatrix } from "./eva-map.js";

export interface DeepenParams {
  /** Softmax temperature T applied to the L2-normalized cosine row. */
  readonly temperature: number;
  /** Entries kept per row (top-m). */
  readonly keep: number;
}

export const DEEPEN_DEFAULTS: DeepenParams = { temperature: 100, keep: 256 };

export interface RelativeStats {
  readonly anchors: number;
  readonly entries: number;
  /** Mass of R's rows outside the kept entries, before renormalizing. */
  readonly droppedMassMean: number;
  readonly droppedMassMax: number;
}

/**
 * Builds one member's sparse relative representation over the anchors `anchorIds` (normalizes `e`
 * in place). Large inputs run on the WebAssembly kernel over worker threads (deepen-wasm.ts), the
 * rest, and runtimes without WebAssembly SIMD, in JavaScript; both keep the same entries.
 */
export async function buildRelative(
  e: EmbeddingMatrix,
  anchorIds: Int32Array,
  params: DeepenParams = DEEPEN_DEFAULTS,
  onProgress?: (done: number, total: number) => void,
  /** Build only the first `rows` rows (for measuring the cost on large vocabularies). */
  rows = e.rows,
  backend: DotsBackend = "auto",
): Promise<{ relative: SparseRows; stats: RelativeStats }> {
  const a = anchorIds.length;
  if (a === 0) throw new Error("DeePEn needs anchor tokens spelled identically by every member, and these members share none; use method gac or unite");
  normalizeRows(e.data, e.width);
  const keep = Math.min(params.keep, a);
  const module = chooseKernel(backend, rows * a * e.width);
  const fast = module && (await relativeWasm(module, e, anchorIds, params.temperature, keep, rows, onProgress));
  if (module && !fast && backend === "wasm") throw new Error(`DeePEn: a ${e.rows} × ${e.width} embedding matrix does not fit in a WebAssembly memory (4 GiB); use the js backend`);
  const { relative, dropped } = fast || relativeJs(e, anchorIds, params.temperature, keep, rows, onProgress);
  onProgress?.(rows, rows);
  let droppedSum = 0;
  let droppedMax = 0;
  for (let r = 0; r < rows; r++) {
    droppedSum += dropped[r]!;
    if (dropped[r]! > droppedMax) droppedMax = dropped[r]!;
  }
  return {
    relative,
    stats: { anchors: a, entries: relative.cols.length, droppedMassMean: rows > 0 ? droppedSum / rows : 0, droppedMassMax: droppedMax },
  };
}

/** The first `rows` rows of R in JavaScript, and each row's dropped mass. */
function relativeJs(
  e: EmbeddingMatrix,
  anchorIds: Int32Array,
  temperature: number,
  keep: number,
  rows: number,
  onProgress?: (done: number, total: number) => void,
): { relative: SparseRows; dropped: Float64Array } {
  const a = anchorIds.length;
  const builder = new SparseRowsBuilder(rows, a, keep);
  const row = new Float64Array(a);
  const next = new Float64Array(a);
  const order = new Int32Array(keep + 1);
  const cols = new Int32Array(keep);
  const vals = new Float64Array(keep);
  const dropped = new Float64Array(rows);
  /** Turns a row of cosines into its kept, renormalized softmax entries. */
  const finish = (c: Float64Array, r: number) => {
    let norm = 0;
    for (let k = 0; k < a; k++) norm += c[k]! * c[k]!;
    const scale = norm > 0 ? temperature / Math.sqrt(norm) : 0;
    let max = -Infinity;
    for (let k = 0; k < a; k++) if ((c[k] = c[k]! * scale) > max) max = c[k]!;
    let z = 0;
    for (let k = 0; k < a; k++) z += c[k] = Math.exp(c[k]! - max);
    const n = topIndexes(c, a, keep, order);
    let kept = 0;
    for (let k = 0; k < n; k++) kept += c[order[k]!]!;
    dropped[r] = 1 - kept / z;
    for (let k = 0; k < n; k++) {
      cols[k] = order[k]!;
      vals[k] = c[order[k]!]! / kept;
    }
    builder.addRow(cols, vals, n);
  };
  // The anchors are rows of the same matrix: read in place, never copied. Rows go in pairs.
  for (let i = 0; i < rows; i += 2) {
    if (i + 1 < rows) {
      dotsWithRowsPair(e.data, i, e.data, a, e.width, row, next, anchorIds);
      finish(row, i);
      finish(next, i + 1);
    } else {
      dotsWithRows(e.data, i, e.data, a, e.width, row, anchorIds);
      finish(row, i);
    }
    if (onProgress && i % 64 === 0) onProgress(i, rows);
  }
  return { relative: builder.build(), dropped };
}
