import assert from "node:assert/strict";
import type { SparseRows } from "../../src/align/sparse-rows.js";

/**
 * Asserts two builds of the same rows agree: a column both kept has values within `relative` of
 * each other, and a column only one kept sits on that row's boundary in the other (a near-tie with
 * the other's smallest kept value, or with `cutoff`, the score below which entries are dropped),
 * as float32 rounding can reorder values that close. Returns how many rows kept other columns.
 */
export function assertSameRows(expected: SparseRows, actual: SparseRows, relative: number, cutoff?: number): number {
  assert.equal(actual.rows, expected.rows);
  assert.equal(actual.columns, expected.columns);
  const near = (x: number, y: number) => Math.abs(x - y) <= relative * Math.max(Math.abs(x), Math.abs(y));
  const row = (m: SparseRows, r: number) => {
    const entries = new Map<number, number>();
    for (let e = m.rowStart[r]!; e < m.rowStart[r + 1]!; e++) entries.set(m.cols[e]!, m.vals[e]!);
    return entries;
  };
  let differing = 0;
  for (let r = 0; r < expected.rows; r++) {
    const x = row(expected, r);
    const y = row(actual, r);
    let same = x.size === y.size;
    for (const [a, b] of [[x, y], [y, x]] as const) {
      const boundary = Math.min(...b.values());
      for (const [col, v] of a) {
        const w = b.get(col);
        if (w !== undefined) {
          assert.ok(near(v, w), `row ${r}, column ${col}: ${v} vs ${w}`);
          continue;
        }
        same = false;
        assert.ok(near(v, boundary) || (cutoff !== undefined && near(v, cutoff)), `row ${r}: column ${col} (${v}) kept by one build only, not a near-tie (the other's smallest: ${boundary})`);
      }
    }
    if (!same) differing++;
  }
  return differing;
}
