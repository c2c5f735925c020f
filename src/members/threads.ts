/**
 * CPU threads per local member, when the config does not set `threads`.
 *
 * llama.cpp's threads wait for each other at every operation of a forward pass, spinning: a thread
 * that finds no free core stalls all of them. Measured on a loaded 2-core machine
 * (`bench/threads.ts`, README): a model alone on 2 threads decoded 2–220× slower than on 1, the pair
 * on 2 threads each up to 4× slower than on 1 each. So the members' threads together stay below the
 * cores (one core is left to the engine, the server and the rest of the machine), a model gets
 * another thread only per MIN_BYTES_PER_THREAD of weights computed on the CPU (tiny models decode
 * fastest on one thread), and a member whose layers all run on the GPU gets one thread.
 */

/** Weights on the CPU that make another thread worth its synchronization: about 5 ms of work per token on one core. */
export const MIN_BYTES_PER_THREAD = 64 * 2 ** 20;

export interface ThreadDemand {
  /** Bytes of weights this member computes on the CPU per token (0 when every layer is on the GPU). */
  readonly cpuBytes: number;
}

/** Threads all members may use together: every core but one, at least one. */
export function threadBudget(cores: number): number {
  return Math.max(1, Math.floor(cores) - 1);
}

/** Threads for each member: what its CPU work is worth, scaled down to share the budget; at least 1 each. */
export function defaultThreads(demands: readonly ThreadDemand[], cores: number): number[] {
  const wanted = demands.map((d) => Math.max(1, Math.floor(d.cpuBytes / MIN_BYTES_PER_THREAD)));
  const threads = [...wanted];
  let budget = threadBudget(cores);
  let sharing = wanted.map((_, i) => i);
  // Members whose share of the budget rounds below one thread get one; the rest share what is left.
  for (;;) {
    const total = sharing.reduce((sum, i) => sum + wanted[i]!, 0);
    if (total <= budget) return threads;
    const small = sharing.filter((i) => (budget * wanted[i]!) / total < 1);
    if (small.length === 0) {
      for (const i of sharing) threads[i] = Math.floor((budget * wanted[i]!) / total);
      return threads;
    }
    for (const i of small) threads[i] = 1;
    budget = Math.max(0, budget - small.length);
    sharing = sharing.filter((i) => !small.includes(i));
  }
}
