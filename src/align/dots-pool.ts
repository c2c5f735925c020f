/**
 * Runs a dot-product job on worker threads: the job's rows are cut into tiles, which the workers
 * claim one at a time from a shared counter (so a core slowed by other work takes fewer), compute
 * with the WebAssembly kernel in the shared memory, and turn into per-row results (a tile task,
 * see dots-worker.ts) posted back here.
 */
import { availableParallelism } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { kernelModule } from "./dots-kernel.js";
import type { TileTask } from "./dots-worker.js";

/** Which dot-product code the alignment builders use: "auto" picks the kernel for large inputs when the runtime has it. */
export type DotsBackend = "auto" | "js" | "wasm";

/** Below this many multiply-adds, starting workers (about 0.2 s) costs more than the kernel saves. */
const AUTO_MIN_WORK = 2 ** 28;

/** The kernel to use, or undefined for the JavaScript path. `work`: the multiply-adds the dot products take (none: JavaScript). */
export function chooseKernel(backend: DotsBackend, work: number): WebAssembly.Module | undefined {
  if (backend === "js" || work === 0) return undefined;
  const module = kernelModule();
  if (backend === "wasm" && !module) throw new Error("this JavaScript runtime has no WebAssembly SIMD with shared memory; use the js backend");
  return backend === "auto" && work < AUTO_MIN_WORK ? undefined : module;
}

export interface DotsJob {
  /** Rows 0 .. rows-1; row i's vector is at rowBase + i · stride · 4. */
  readonly rows: number;
  readonly rowBase: number;
  /** Floats from one stored vector to the next, in both matrices (the width padded to a multiple of 4). */
  readonly stride: number;
  /** The columns' address list (columnsPadded entries, a multiple of 4), of which the first `columns` count. */
  readonly colAt: number;
  readonly columns: number;
  readonly columnsPadded: number;
  /** Rows per tile (even). */
  readonly tile: number;
  /** Per worker: room for a tile's row addresses (tile entries) and its results (tile × columnsPadded floats). */
  readonly scratch: readonly { readonly rowAt: number; readonly out: number }[];
  readonly task: TileTask;
}

/** Sent by a worker: a tile's per-row results, then once its share is done, the task's final result. */
export type WorkerMessage = { readonly type: "tile"; readonly first: number; readonly count: number; readonly result: unknown } | { readonly type: "done"; readonly result: unknown };

export interface WorkerData {
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
  readonly job: DotsJob;
  /** Int32Array on a SharedArrayBuffer: the next tile to claim. */
  readonly claim: Int32Array;
  readonly index: number;
}

/** Rows per tile: enough that the columns stream from memory once per many rows, few enough that the tile's rows stay in L2. */
export function tileRows(stride: number): number {
  const rows = Math.floor((512 * 1024) / (stride * 4));
  return Math.max(2, Math.min(64, rows - (rows % 2)));
}

export function workerCount(rows: number, tile: number): number {
  return Math.max(1, Math.min(availableParallelism(), Math.ceil(rows / tile)));
}

function spawn(workerData: WorkerData): Worker {
  const here = fileURLToPath(import.meta.url);
  const entry = new URL(`./dots-worker${path.extname(here)}`, import.meta.url);
  if (here.endsWith(".ts")) {
    // Running from the TypeScript sources (tests, bench: node --import tsx). Node 20 does not carry
    // module loaders into workers (nodejs/node#47747), so the worker registers tsx itself.
    const tsx = import.meta.resolve("tsx/esm/api");
    const code = `import(${JSON.stringify(tsx)}).then((tsx) => tsx.register()).then(() => import(${JSON.stringify(entry.href)}))`;
    return new Worker(code, { eval: true, workerData });
  }
  return new Worker(entry, { workerData });
}

/**
 * Runs `job` on `workers` threads; `onTile` gets each tile's results as it arrives (in no particular
 * order) and `onDone` each worker's final result. Rejects with the first error (a worker's, or one
 * thrown by the callbacks), after stopping every worker.
 */
export function runTiles(
  module: WebAssembly.Module,
  memory: WebAssembly.Memory,
  job: DotsJob,
  workers: number,
  onTile: (first: number, count: number, result: unknown) => void,
  onDone: (result: unknown) => void = () => {},
): Promise<void> {
  if (job.scratch.length < workers) throw new Error(`runTiles: scratch for ${job.scratch.length} workers, asked for ${workers}`);
  const claim = new Int32Array(new SharedArrayBuffer(4));
  return new Promise((resolve, reject) => {
    const pool: Worker[] = [];
    let finished = 0;
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      void Promise.allSettled(pool.map((w) => w.terminate())).then(() => reject(error));
    };
    for (let index = 0; index < workers; index++) {
      const worker = spawn({ module, memory, job, claim, index });
      let done = false;
      pool.push(worker);
      worker.on("message", (message: WorkerMessage) => {
        if (failed) return;
        try {
          if (message.type === "tile") {
            onTile(message.first, message.count, message.result);
          } else {
            done = true;
            onDone(message.result);
          }
        } catch (error) {
          fail(error);
        }
      });
      worker.on("error", fail);
      // Node delivers a worker's messages before its exit event.
      worker.on("exit", (code) => {
        if (failed) return;
        if (code !== 0 || !done) fail(new Error(`an alignment worker stopped early (exit code ${code})`));
        else if (++finished === workers) resolve();
      });
    }
  });
}
