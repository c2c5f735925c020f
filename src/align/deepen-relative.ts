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

/** Builds one member's sparse relative representation over the anchors `anchorIds` (normalizes `e` in place). */
export function buildRelative(
  e: EmbeddingMatrix,
  anchorIds: Int32Array,
  params: DeepenParams = DEEPEN_DEFAULTS,
  onProgress?: (done: number, total: number) => void,
  /** Build only the first `rows` rows (for measuring the cost on large vocabularies). */
  rows = e.rows,
): { relative: SparseRows; stats: RelativeStats } {
  const a = anchorIds.length;
  if (a === 0) throw new Error("DeePEn needs anchor tokens spelled identically by every member, and these members share none; use method gac or unite");
  normalizeRows(e.data, e.width);
  const keep = Math.min(params.keep, a);
  const builder = new SparseRowsBuilder(rows, a, keep);
  const row = new Float64Array(a);
  const next = new Float64Array(a);
  const order = new Int32Array(keep + 1);
  const cols = new Int32Array(keep);
  const vals = new Float64Array(keep);
  let droppedSum = 0;
  let droppedMax = 0;
  /** Turns a row of cosines into its kept, renormalized softmax entries. */
  const finish = (c: Float64Array) => {
    let norm = 0;
    for (let k = 0; k < a; k++) norm += c[k]! * c[k]!;
    const scale = norm > 0 ? params.temperature / Math.sqrt(norm) : 0;
    let max = -Infinity;
    for (let k = 0; k < a; k++) if ((c[k] = c[k]! * scale) > max) max = c[k]!;
    let z = 0;
    for (let k = 0; k < a; k++) z += c[k] = Math.exp(c[k]! - max);
    const n = topIndexes(c, a, keep, order);
    let kept = 0;
    for (let k = 0; k < n; k++) kept += c[order[k]!]!;
    const dropped = 1 - kept / z;
    droppedSum += dropped;
    if (dropped > droppedMax) droppedMax = dropped;
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
      finish(row);
      finish(next);
    } else {
      dotsWithRows(e.data, i, e.data, a, e.width, row, anchorIds);
      finish(row);
    }
    if (onProgress && i % 64 === 0) onProgress(i, rows);
  }
  onProgress?.(rows, rows);
  const relative = builder.build();
  return {
    relative,
    stats: { anchors: a, entries: relative.cols.length, droppedMassMean: rows > 0 ? droppedSum / rows : 0, droppedMassMax: droppedMax },
  };
}
