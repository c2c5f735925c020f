/**
 * EVA's per-row work on the kernel's cosines (worker side), in two passes over the auxiliary rows:
 * each main token's nearest auxiliary cosine r_T, then each auxiliary row's CSLS scores
 * 2·cos − r_T and its matches (eva-rows.ts), as buildEvaMap's JavaScript path finds them.
 */
import { cslsRows, matchRow, type CslsRows } from "./eva-rows.js";
import type { EvaParams } from "./eva-map.js";
import type { TileHandler, TileView } from "./dots-worker.js";

export interface NearestTask {
  readonly kind: "nearest";
  /** Per worker, the address of its share of r_T (columnsPadded floats, filled with -∞). */
  readonly shares: readonly number[];
}

export interface CslsTask {
  readonly kind: "csls";
  /** Address of r_T (columnsPadded floats), from the first pass. */
  readonly nearestAt: number;
  readonly params: EvaParams;
}

/** Pass 1: the maximum of every column over the rows this worker is given, into its share. */
export function nearestTiles(task: NearestTask, view: TileView): TileHandler {
  const share = task.shares[view.worker]!;
  return {
    tile(_first, count) {
      for (let i = 0; i < count; i++) view.kernel.maxInto(share, view.resultsAt(i), view.columnsPadded);
      return { result: undefined, transfer: [] };
    },
    done: () => ({ result: undefined, transfer: [] }),
  };
}

/** Pass 2: each tile's matches, as CslsRows of the tile's rows. */
export function cslsTiles(task: CslsTask, view: TileView): TileHandler {
  const { kernel, memory, columns: n } = view;
  const { nearestAt, params } = task;
  const order = new Int32Array(params.topK + 1);
  return {
    tile(_first, count) {
      const rows = cslsRows(count, params.topK);
      for (let i = 0; i < count; i++) {
        const at = view.resultsAt(i);
        kernel.csls(at, nearestAt, view.columnsPadded);
        const scores = new Float32Array(memory.buffer, at, n);
        matchRow(scores, n, params, order, rows, i, (from, floor) => kernel.firstAbove(at, from, n, floor));
      }
      return { result: rows, transfer: [rows.counts.buffer, rows.uniform.buffer, rows.cols.buffer, rows.vals.buffer] };
    },
    done: () => ({ result: undefined, transfer: [] }),
  };
}
