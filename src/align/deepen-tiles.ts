/**
 * DeePEn's per-row work on the kernel's cosines (worker side), keeping what buildRelative's
 * JavaScript path keeps. The float32 cosines rank the anchors (the softmax is monotonic in them)
 * and give the row's norm and the softmax's denominator, which every anchor enters; the kept
 * anchors' cosines are then computed again in float64 as the JavaScript path does, because the
 * temperature multiplies a cosine's rounding error (T / ‖c‖ = 60 is common) before e^x.
 */
import { topIndexes } from "./sparse-rows.js";
import type { TileHandler, TileView } from "./dots-worker.js";

export interface RelativeTask {
  readonly kind: "relative";
  readonly temperature: number;
  readonly keep: number;
}

/** Each tile's rows: `keep` columns and values per row, and the mass each row dropped. */
export interface RelativeTile {
  readonly cols: Int32Array;
  readonly vals: Float32Array;
  readonly dropped: Float64Array;
}

export function relativeTiles(task: RelativeTask, view: TileView): TileHandler {
  const { kernel, memory, columns: a, stride } = view;
  const keep = task.keep;
  const order = new Int32Array(keep + 1);
  const cosines = new Float64Array(keep);
  const exps = new Float64Array(keep);
  return {
    tile(first, count) {
      const cols = new Int32Array(count * keep);
      const vals = new Float32Array(count * keep);
      const dropped = new Float64Array(count);
      for (let i = 0; i < count; i++) {
        const at = view.resultsAt(i);
        const c = new Float32Array(memory.buffer, at, a);
        const n = topIndexes(c, a, keep, order, (from, floor) => kernel.firstAbove(at, from, a, floor));
        // ‖c‖², its largest terms from the float64 cosines
        let norm = kernel.sumSquares(at, a);
        const x = view.rowVectorAt(first + i);
        for (let k = 0; k < n; k++) {
          const s = kernel.dot64(x, view.columnVectorAt(order[k]!), stride);
          cosines[k] = s;
          norm += s * s - c[order[k]!]! * c[order[k]!]!;
        }
        sortDescending(order, cosines, n);
        // R's row: softmax(T · c / ‖c‖), its largest entry at the largest cosine
        const scale = norm > 0 ? task.temperature / Math.sqrt(norm) : 0;
        const max = cosines[0]! * scale;
        let kept = 0;
        for (let k = 0; k < n; k++) kept += exps[k] = Math.exp(cosines[k]! * scale - max);
        // The mass outside the kept entries, summed with the kept ones masked out (e^-∞ = 0), so a
        // small dropped mass keeps its relative precision.
        let rest = a - n;
        if (scale > 0) {
          for (let k = 0; k < n; k++) c[order[k]!] = -Infinity;
          rest = kernel.expSum(at, a, scale, max);
        }
        dropped[i] = rest / (kept + rest);
        for (let k = 0; k < n; k++) {
          cols[i * keep + k] = order[k]!;
          vals[i * keep + k] = exps[k]! / kept;
        }
      }
      const result: RelativeTile = { cols, vals, dropped };
      return { result, transfer: [cols.buffer, vals.buffer, dropped.buffer] };
    },
    done: () => ({ result: undefined, transfer: [] }),
  };
}

/**
 * Sorts the kept anchors by their float64 cosines, largest first and ties by lower index, as
 * topIndexes orders the JavaScript path's row (the float32 order it starts from differs at most
 * between near-ties, so insertion sort has little to move).
 */
function sortDescending(order: Int32Array, cosines: Float64Array, n: number): void {
  for (let k = 1; k < n; k++) {
    const id = order[k]!;
    const value = cosines[k]!;
    let at = k;
    while (at > 0 && (cosines[at - 1]! < value || (cosines[at - 1] === value && order[at - 1]! > id))) {
      order[at] = order[at - 1]!;
      cosines[at] = cosines[at - 1]!;
      at--;
    }
    order[at] = id;
    cosines[at] = value;
  }
}
