/**
 * The WebAssembly SIMD kernel of the alignment builders (wasm/dots.wat, compiled to wasm/dots.wasm)
 * and the shared memory it works in: one WebAssembly.Memory holding the matrices, the column
 * address lists and each worker's scratch, laid out once by the main thread and shared by every
 * worker (never copied per worker).
 */
import { readFileSync } from "node:fs";

/** The kernel's exports (see dots.wat for the contracts). Addresses are byte offsets in the memory. */
export interface DotsKernel {
  dots(rowAt: number, rows: number, colAt: number, cols: number, width: number, out: number, outStride: number): void;
  sumSquares(at: number, n: number): number;
  expSum(at: number, n: number, scale: number, shift: number): number;
  dot64(x: number, y: number, n: number): number;
  firstAbove(at: number, from: number, n: number, floor: number): number;
  maxInto(into: number, v: number, n: number): void;
  csls(v: number, nearest: number, n: number): void;
}

let compiled: WebAssembly.Module | null | undefined;

/** The compiled kernel, or undefined where this runtime has no WebAssembly SIMD or shared memory. */
export function kernelModule(): WebAssembly.Module | undefined {
  if (compiled === undefined) {
    const bytes = readFileSync(new URL("./wasm/dots.wasm", import.meta.url));
    compiled = typeof SharedArrayBuffer === "function" && WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  }
  return compiled ?? undefined;
}

export function instantiateKernel(module: WebAssembly.Module, memory: WebAssembly.Memory): DotsKernel {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as DotsKernel;
}

const PAGE = 65536;
/** wasm32 addresses 4 GiB: 65536 pages. */
const MAX_PAGES = 65536;

/** Floats per stored row: the width rounded up to whole f32x4 vectors (the padding stays zero). */
export function paddedWidth(width: number): number {
  return Math.ceil(width / 4) * 4;
}

/** Lays out 16-byte-aligned regions, then allocates a shared memory that holds them all. */
export class MemoryPlan {
  // Address 0 stays unused, so a zero address in a job is always a mistake that shows.
  private end = 16;

  /** Reserves `bytes` and returns their address. */
  reserve(bytes: number): number {
    const at = this.end;
    this.end = Math.ceil((at + bytes) / 16) * 16;
    return at;
  }

  get bytes(): number {
    return this.end;
  }

  /** The memory, or undefined when the layout does not fit in wasm32's 4 GiB. */
  allocate(): WebAssembly.Memory | undefined {
    const pages = Math.ceil(this.end / PAGE);
    if (pages > MAX_PAGES) return undefined;
    return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  }
}

/** Copies `rows` rows of `width` floats into the memory at `at`, `paddedWidth(width)` floats apart. */
export function storeRows(memory: WebAssembly.Memory, at: number, data: Float32Array, rows: number, width: number): void {
  const stride = paddedWidth(width);
  const target = new Float32Array(memory.buffer, at, rows * stride);
  if (stride === width) {
    target.set(data.subarray(0, rows * width));
    return;
  }
  for (let r = 0; r < rows; r++) target.set(data.subarray(r * width, (r + 1) * width), r * stride);
}

/**
 * Writes the address list the kernel reads columns (or rows) through: entry j is
 * `base + ids[j] · stride · 4` (or `base + j · stride · 4` without ids), and the list is padded to
 * `padded` entries by repeating the last one, whose results the caller ignores.
 */
export function storeAddresses(memory: WebAssembly.Memory, at: number, base: number, stride: number, count: number, padded: number, ids?: Int32Array): void {
  const list = new Uint32Array(memory.buffer, at, padded);
  for (let j = 0; j < padded; j++) list[j] = base + (ids ? ids[Math.min(j, count - 1)]! : Math.min(j, count - 1)) * stride * 4;
}
