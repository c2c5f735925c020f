/**
 * EVA's CSLS matches, row by row (both backends): which main tokens an auxiliary token keeps, from
 * its row of CSLS scores. Rows live in slots of `topK` entries until they are assembled in order.
 */
import { SparseRowsBuilder, topIndexes, type SparseRows } from "./sparse-rows.js";
import type { EvaParams } from "./eva-map.js";

/** Per auxiliary row: its matches in slot r·topK .. r·topK + counts[r] - 1, and whether it was dropped as near-uniform. */
export interface CslsRows {
  readonly topK: number;
  readonly counts: Int32Array<ArrayBuffer>;
  readonly uniform: Uint8Array<ArrayBuffer>;
  readonly cols: Int32Array<ArrayBuffer>;
  readonly vals: Float32Array<ArrayBuffer>;
}

export function cslsRows(rows: number, topK: number): CslsRows {
  return { topK, counts: new Int32Array(rows), uniform: new Uint8Array(rows), cols: new Int32Array(rows * topK), vals: new Float32Array(rows * topK) };
}

/**
 * Fills row `row` of `into` from that row's CSLS scores `scores[0..n)`: its top `topK` scores that
 * are ≥ minScore, or none when more than `uniformMinKept` are kept and their standard deviation is
 * ≤ `uniformStd` (no clear match). `order`: scratch of topK + 1 entries; `nextAbove`: as topIndexes'.
 */
export function matchRow(
  scores: Float32Array,
  n: number,
  params: EvaParams,
  order: Int32Array,
  into: CslsRows,
  row: number,
  nextAbove?: (from: number, floor: number) => number,
): void {
  const found = topIndexes(scores, n, params.topK, order, nextAbove);
  const at = row * into.topK;
  let count = 0;
  for (; count < found; count++) {
    const s = scores[order[count]!]!;
    if (s < params.minScore) break;
    into.cols[at + count] = order[count]!;
    into.vals[at + count] = s;
  }
  const uniform = count > params.uniformMinKept && std(into.vals.subarray(at, at + count)) <= params.uniformStd;
  into.counts[row] = uniform ? 0 : count;
  into.uniform[row] = uniform ? 1 : 0;
}

/** The map (rows in order) and how many rows kept a match or were dropped as near-uniform. */
export function assembleMap(rows: CslsRows, columns: number): { map: SparseRows; keptRows: number; droppedUniformRows: number } {
  const n = rows.counts.length;
  const builder = new SparseRowsBuilder(n, columns, rows.topK);
  let keptRows = 0;
  let droppedUniformRows = 0;
  for (let r = 0; r < n; r++) {
    const at = r * rows.topK;
    const count = rows.counts[r]!;
    builder.addRow(rows.cols.subarray(at, at + count), rows.vals.subarray(at, at + count), count);
    if (count > 0) keptRows++;
    droppedUniformRows += rows.uniform[r]!;
  }
  return { map: builder.build(), keptRows, droppedUniformRows };
}

function std(values: Float32Array): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
}
