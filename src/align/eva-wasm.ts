/**
 * EVA's CSLS passes on the WebAssembly kernel and worker threads. Both spaces are projected
 * straight into the shared memory (no other copy of the projected matrices exists); each worker
 * takes tiles of auxiliary rows against every main token, first for r_T, then for the matches.
 */
import { MemoryPlan, paddedWidth, storeAddresses } from "./dots-kernel.js";
import { runTiles, tileRows, workerCount } from "./dots-pool.js";
import { normalizeRows, project } from "./embedding-math.js";
import { cslsRows, type CslsRows } from "./eva-rows.js";
import type { EmbeddingMatrix, EvaParams } from "./eva-map.js";

/**
 * Every auxiliary row's matches, from the spaces rotated by `u` (aux) and `v` (main) onto their
 * `r` shared directions; undefined when they do not fit in a WebAssembly memory (4 GiB).
 */
export async function cslsWasm(
  module: WebAssembly.Module,
  aux: EmbeddingMatrix,
  main: EmbeddingMatrix,
  rotation: { readonly u: Float64Array; readonly v: Float64Array; readonly r: number },
  params: EvaParams,
  onProgress?: (done: number, total: number) => void,
): Promise<CslsRows | undefined> {
  const { u, v, r } = rotation;
  const stride = paddedWidth(r);
  const columnsPadded = Math.ceil(main.rows / 4) * 4;
  const tile = tileRows(stride);
  const workers = workerCount(aux.rows, tile);
  const plan = new MemoryPlan();
  const xAt = plan.reserve(aux.rows * stride * 4);
  const zAt = plan.reserve(main.rows * stride * 4);
  const colAt = plan.reserve(columnsPadded * 4);
  const nearestAt = plan.reserve(columnsPadded * 4);
  const shares = Array.from({ length: workers }, () => plan.reserve(columnsPadded * 4));
  const scratch = Array.from({ length: workers }, () => ({ rowAt: plan.reserve(tile * 4), out: plan.reserve(tile * columnsPadded * 4) }));
  const memory = plan.allocate();
  if (!memory) return undefined;
  // Padded rows: the zeros after each row's r floats change neither the sums nor the norms.
  for (const [m, at, p] of [[aux, xAt, u], [main, zAt, v]] as const) {
    const projected = new Float32Array(memory.buffer, at, m.rows * stride);
    project(m.data, m.width, p, r, projected, stride);
    normalizeRows(projected, stride);
  }
  storeAddresses(memory, colAt, zAt, stride, main.rows, columnsPadded);
  const job = { rows: aux.rows, rowBase: xAt, stride, colAt, columns: main.rows, columnsPadded, tile, scratch };

  const total = 2 * aux.rows;
  let done = 0;
  const progress = (count: number) => {
    done += count;
    if (done < total) onProgress?.(done, total);
  };
  onProgress?.(0, total);
  for (const at of shares) new Float32Array(memory.buffer, at, columnsPadded).fill(-Infinity);
  await runTiles(module, memory, { ...job, task: { kind: "nearest", shares } }, workers, (_first, count) => progress(count));
  // r_T: the largest of the workers' shares
  const nearest = new Float32Array(memory.buffer, nearestAt, columnsPadded).fill(-Infinity);
  for (const at of shares) {
    const share = new Float32Array(memory.buffer, at, columnsPadded);
    for (let j = 0; j < columnsPadded; j++) if (share[j]! > nearest[j]!) nearest[j] = share[j]!;
  }
  const rows = cslsRows(aux.rows, params.topK);
  await runTiles(module, memory, { ...job, task: { kind: "csls", nearestAt, params } }, workers, (first, count, result) => {
    const tile = result as CslsRows;
    rows.counts.set(tile.counts, first);
    rows.uniform.set(tile.uniform, first);
    rows.cols.set(tile.cols, first * params.topK);
    rows.vals.set(tile.vals, first * params.topK);
    progress(count);
  });
  return rows;
}
