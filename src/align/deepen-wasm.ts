/**
 * DeePEn's relative representation on the WebAssembly kernel and worker threads: the normalized
 * embedding matrix is copied once into a shared memory, each worker takes tiles of rows against
 * every anchor (deepen-tiles.ts does the softmax and the cut), and the rows come back here.
 */
import { MemoryPlan, paddedWidth, storeAddresses, storeRows } from "./dots-kernel.js";
import { runTiles, tileRows, workerCount } from "./dots-pool.js";
import type { RelativeTile } from "./deepen-tiles.js";
import type { EmbeddingMatrix } from "./eva-map.js";
import type { SparseRows } from "./sparse-rows.js";

/**
 * The first `rows` rows of R (each keeps exactly `keep` ≤ anchors entries) and each row's dropped
 * mass; undefined when the matrix does not fit in a WebAssembly memory (4 GiB).
 */
export async function relativeWasm(
  module: WebAssembly.Module,
  e: EmbeddingMatrix,
  anchorIds: Int32Array,
  temperature: number,
  keep: number,
  rows: number,
  onProgress?: (done: number, total: number) => void,
): Promise<{ relative: SparseRows; dropped: Float64Array } | undefined> {
  const a = anchorIds.length;
  const stride = paddedWidth(e.width);
  const columnsPadded = Math.ceil(a / 4) * 4;
  const tile = tileRows(stride);
  const workers = workerCount(rows, tile);
  const plan = new MemoryPlan();
  const matrixAt = plan.reserve(e.rows * stride * 4);
  const colAt = plan.reserve(columnsPadded * 4);
  const scratch = Array.from({ length: workers }, () => ({ rowAt: plan.reserve(tile * 4), out: plan.reserve(tile * columnsPadded * 4) }));
  const memory = plan.allocate();
  if (!memory) return undefined;
  storeRows(memory, matrixAt, e.data, e.rows, e.width);
  storeAddresses(memory, colAt, matrixAt, stride, a, columnsPadded, anchorIds);

  const cols = new Int32Array(rows * keep);
  const vals = new Float32Array(rows * keep);
  const dropped = new Float64Array(rows);
  let done = 0;
  const job = { rows, rowBase: matrixAt, stride, colAt, columns: a, columnsPadded, tile, scratch, task: { kind: "relative", temperature, keep } as const };
  await runTiles(module, memory, job, workers, (first, count, result) => {
    const t = result as RelativeTile;
    cols.set(t.cols, first * keep);
    vals.set(t.vals, first * keep);
    dropped.set(t.dropped, first);
    done += count;
    if (done < rows) onProgress?.(done, rows);
  });
  const rowStart = new Uint32Array(rows + 1);
  for (let r = 0; r <= rows; r++) rowStart[r] = r * keep;
  return { relative: { rows, columns: a, rowStart, cols, vals }, dropped };
}
