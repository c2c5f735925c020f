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
 * What sampling draws from: the candidates kept by top-k and top-p in descending order, with their
 * temperature-scaled weights. `undefined` when greedy or when nothing has weight (the best wins).
 */
function sampledWeights(order: readonly number[], scores: ArrayLike<number>, options: SamplingOptions): { kept: number[]; weights: number[]; total: number } | undefined {
  if (options.temperature <= 0) return undefined;
  const kept = options.topK > 0 ? order.slice(0, options.topK) : [...order];
  const weights = kept.map((i) => Math.pow(Math.max(0, scores[i]!), 1 / options.temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return undefined;
  if (options.topP < 1) {
    let cumulative = 0;
    for (let j = 0; j < kept.length; j++) {
      cumulative += weights[j]! / total;
      if (cumulative >= options.topP) {
        kept.length = j + 1;
        weights.length = j + 1;
        break;
      }
    }
    total = weights.reduce((a, b) => a + b, 0);
  }
  return { kept, weights, total };
}

function descending(scores: ArrayLike<number>): number[] {
  return Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
}

/**
 * Picks an index from non-negative scores: the best one when greedy, otherwise a draw after
 * top-k, top-p and temperature.
 */
export function pickIndex(scores: ArrayLike<number>, options: SamplingOptions, random: () => number): number {
  const order = descending(scores);
  if (order.length === 0) throw new Error("no candidates to choose from");
  const sampled = sampledWeights(order, scores, options);
  if (!sampled) return order[0]!;
  const { kept, weights, total } = sampled;
  let r = random() * total;
  for (let j = 0; j < kept.length; j++) {
    r -= weights[j]!;
    if (r < 0) return kept[j]!;
  }
  return kept[kept.length - 1]!;
}

/**
 * The distribution `pickIndex` draws from: top-k, top-p and temperature applied to `scores`,
 * normalized (one-hot on the best index when greedy or when nothing has weight).
 */
export function samplingDistribution(scores: ArrayLike<number>, options: SamplingOptions): Float64Array {
  const out = new Float64Array(scores.length);
  if (scores.length === 0) return out;
  const order = descending(scores);
  const sampled = sampledWeights(order, scores, options);
  if (!sampled) out[order[0]!] = 1;
  else sampled.kept.forEach((i, j) => (out[i] = sampled.weights[j]! / sampled.total));
  return out;
}

/** A draw from a normalized distribution. */
export function drawIndex(distribution: ArrayLike<number>, random: () => number): number {
  let r = random();
  let last = -1;
  for (let i = 0; i < distribution.length; i++) {
    if (!(distribution[i]! > 0)) continue;
    last = i;
    r -= distribution[i]!;
    if (r < 0) return i;
  }
  if (last < 0) throw new Error("no candidates to choose from");
  return last;
}

/**
 * Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): `draft` was drawn from `q`;
 * keep it with probability min(1, p/q), else draw from max(0, p − q) renormalized. The result is
 * distributed exactly as `p`. `draft` is -1 when the drafted text is not among p's candidates
 * (p = 0 there: always redrawn). `p` and `q` are over the same candidates.
 */
export function speculativePick(p: ArrayLike<number>, q: ArrayLike<number>, draft: number, random: () => number): number {
  if (draft >= 0 && q[draft]! > 0 && random() * q[draft]! < p[draft]!) return draft;
  const residual = new Float64Array(p.length);
  let total = 0;
  for (let i = 0; i < p.length; i++) total += residual[i] = Math.max(0, p[i]! - (q[i] ?? 0));
  if (!(total > 0)) return drawIndex(p, random);
  for (let i = 0; i < residual.length; i++) residual[i]! /= total;
  return drawIndex(residual, random);
}
