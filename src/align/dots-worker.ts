/**
 * A worker thread of dots-pool.ts: claims tiles of rows, computes each tile's dot products against
 * every column with the kernel, and hands the tile to the job's task, which turns each row into
 * its result (DeePEn's kept softmax entries, EVA's nearest-neighbour cosines or CSLS matches).
 */
import { parentPort, workerData } from "node:worker_threads";
import { instantiateKernel, type DotsKernel } from "./dots-kernel.js";
import type { WorkerData, WorkerMessage } from "./dots-pool.js";
import { relativeTiles, type RelativeTask } from "./deepen-tiles.js";
import { cslsTiles, nearestTiles, type CslsTask, type NearestTask } from "./eva-tiles.js";

export type TileTask = RelativeTask | NearestTask | CslsTask;

/** Where a task finds the tile it is given, and the vectors behind it. */
export interface TileView {
  readonly kernel: DotsKernel;
  readonly memory: WebAssembly.Memory;
  /** This worker's index among the job's workers. */
  readonly worker: number;
  /** The real columns of each result row (the padding after them is to be ignored), and all of them. */
  readonly columns: number;
  readonly columnsPadded: number;
  /** Floats from one stored vector to the next (a multiple of 4; zeros follow each vector's width). */
  readonly stride: number;
  /** Address of tile row i's dot products. */
  resultsAt(i: number): number;
  /** Addresses of the vectors of job row `row` and of column `j`. */
  rowVectorAt(row: number): number;
  columnVectorAt(j: number): number;
}

/** A task's results, with the buffers to transfer rather than copy. */
export interface Posted {
  readonly result: unknown;
  readonly transfer: ArrayBuffer[];
}

export interface TileHandler {
  /** Turns the tile's rows (job rows first .. first+count-1) into their results. */
  tile(first: number, count: number): Posted;
  /** The task's result once this worker has no tile left. */
  done(): Posted;
}

/** Columns per kernel call: short calls, so V8 moves the kernel from its baseline compiler to its optimizing one early. */
const COLUMN_BLOCK = 4096;

function handlerFor(task: TileTask, view: TileView): TileHandler {
  switch (task.kind) {
    case "relative":
      return relativeTiles(task, view);
    case "nearest":
      return nearestTiles(task, view);
    case "csls":
      return cslsTiles(task, view);
  }
}

function run({ module, memory, job, claim, index }: WorkerData, post: (message: WorkerMessage, transfer: ArrayBuffer[]) => void): void {
  const kernel = instantiateKernel(module, memory);
  const { rowAt, out } = job.scratch[index]!;
  const rowBytes = job.stride * 4;
  const outBytes = job.columnsPadded * 4;
  // Uint32: addresses reach 4 GiB
  const columnList = new Uint32Array(memory.buffer, job.colAt, job.columnsPadded);
  const handler = handlerFor(job.task, {
    kernel,
    memory,
    worker: index,
    columns: job.columns,
    columnsPadded: job.columnsPadded,
    stride: job.stride,
    resultsAt: (i) => out + i * outBytes,
    rowVectorAt: (row) => job.rowBase + row * rowBytes,
    columnVectorAt: (j) => columnList[j]!,
  });
  const rowList = new Uint32Array(memory.buffer, rowAt, job.tile);
  const tiles = Math.ceil(job.rows / job.tile);
  for (let t = Atomics.add(claim, 0, 1); t < tiles; t = Atomics.add(claim, 0, 1)) {
    const first = t * job.tile;
    const count = Math.min(job.tile, job.rows - first);
    // The kernel takes rows in pairs: an odd tile repeats its last row into the spare result row.
    const even = count + (count % 2);
    for (let i = 0; i < even; i++) rowList[i] = job.rowBase + Math.min(first + i, job.rows - 1) * rowBytes;
    for (let j = 0; j < job.columnsPadded; j += COLUMN_BLOCK) {
      kernel.dots(rowAt, even, job.colAt + 4 * j, Math.min(COLUMN_BLOCK, job.columnsPadded - j), job.stride, out + 4 * j, job.columnsPadded);
    }
    const { result, transfer } = handler.tile(first, count);
    post({ type: "tile", first, count, result }, transfer);
  }
  const { result, transfer } = handler.done();
  post({ type: "done", result }, transfer);
}

if (parentPort) {
  const port = parentPort;
  run(workerData as WorkerData, (message, transfer) => port.postMessage(message, transfer));
}
