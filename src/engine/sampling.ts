/** Decoding settings: greedy when temperature is 0. */
export interface SamplingOptions {
  readonly temperature: number;
  readonly topP: number;
  /** Keep only the k best candidates before sampling; 0 keeps all. */
  readonly topK: number;
  readonly seed: number;
}

/** A small seeded generator (mulberry32): the same seed gives the same text. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Picks an index from non-negative scores: the best one when greedy, otherwise a draw after
 * top-k, top-p and temperature.
 */
export function pickIndex(scores: ArrayLike<number>, options: SamplingOptions, random: () => number): number {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
  if (order.length === 0) throw new Error("no candidates to choose from");
  if (options.temperature <= 0) return order[0]!;
  const kept = options.topK > 0 ? order.slice(0, options.topK) : order;
  const weights = kept.map((i) => Math.pow(Math.max(0, scores[i]!), 1 / options.temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return order[0]!;
  if (options.topP < 1) {
    let cumulative = 0;
    let cut = kept.length;
    for (let j = 0; j < kept.length; j++) {
      cumulative += weights[j]! / total;
      if (cumulative >= options.topP) {
        cut = j + 1;
        break;
      }
    }
    kept.length = cut;
    weights.length = cut;
    total = weights.reduce((a, b) => a + b, 0);
  }
  let r = random() * total;
  for (let j = 0; j < kept.length; j++) {
    r -= weights[j]!;
    if (r < 0) return kept[j]!;
  }
  return kept[kept.length - 1]!;
}
