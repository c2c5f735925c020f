import type { Vocabulary } from "./vocabulary.js";

/** Token ids sorted by exact surface (byte order), for finding every token that extends a prefix. */
const sortedCache = new WeakMap<Vocabulary, Int32Array>();

function sortedBySurface(vocab: Vocabulary): Int32Array {
  let sorted = sortedCache.get(vocab);
  if (!sorted) {
    const ids: number[] = [];
    for (let id = 0; id < vocab.size; id++) if (vocab.surfaces[id]) ids.push(id);
    const surfaces = vocab.surfaces;
    ids.sort((a, b) => (surfaces[a]! < surfaces[b]! ? -1 : surfaces[a]! > surfaces[b]! ? 1 : a - b));
    sorted = Int32Array.from(ids);
    sortedCache.set(vocab, sorted);
  }
  return sorted;
}

function lowerBound(vocab: Vocabulary, sorted: Int32Array, key: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (vocab.surfaces[sorted[mid]!]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Ids of the tokens whose surface starts with `prefix` and is longer than it, at most `limit` of
 * them, and how many there are in all.
 */
export function tokensExtending(vocab: Vocabulary, prefix: string, limit: number): { ids: number[]; count: number } {
  const sorted = sortedBySurface(vocab);
  const from = lowerBound(vocab, sorted, prefix);
  // Surfaces are byte strings (char codes < 256), so prefix + U+0100 sorts after all its extensions.
  const to = lowerBound(vocab, sorted, prefix + "\u0100");
  // Tokens spelling exactly `prefix` sort first in the range; the rest extend it.
  let first = from;
  while (first < to && vocab.surfaces[sorted[first]!]!.length === prefix.length) first++;
  return { ids: Array.from(sorted.subarray(first, Math.min(to, first + limit))), count: to - first };
}
