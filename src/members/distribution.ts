/**
 * A member's next-token distribution at one position, kept sparse: the exact probabilities of the
 * top tokens plus any ids the caller asked for, and exact bounds on everything left out.
 */
export interface SparseDistribution {
  /** Listed token ids: the first `topCount` are the most probable, in descending order; requested extras follow. */
  readonly ids: Int32Array;
  /** Exact probability of each listed id. */
  readonly probs: Float64Array;
  readonly topCount: number;
  /** Every token that is not listed has at most this probability (0 when the list is complete). */
  readonly unlistedMax: number;
  /** Exact total probability of the tokens that are not listed. */
  readonly unlistedMass: number;
  /** True when every token of the vocabulary with non-zero probability is listed. */
  readonly complete: boolean;
  /** The largest logit and Σ exp(logit − maxLogit) over the vocabulary, when built from logits: they turn more logits at the same position into exact probabilities. */
  readonly maxLogit?: number;
  readonly totalLogitWeight?: number;
}

/** What a caller wants to know about one position. */
export interface DistributionRequest {
  /** Number of most probable tokens to list. */
  readonly topK: number;
  /** Token ids whose exact probabilities are needed, listed or not. */
  readonly extraIds?: readonly number[];
  /** List the whole vocabulary (costly on large vocabularies; for small ones and for checks). */
  readonly full?: boolean;
  /**
   * An earlier answer for the same tokens and position: return it with `extraIds` added, read
   * without ranking the vocabulary again (cheap), instead of a new top list.
   */
  readonly extend?: SparseDistribution;
  /**
   * The caller will not ask about this position again (a member generating alone never heals over
   * its own boundary): a reader need not keep more of it than the answer.
   */
  readonly once?: boolean;
}

/**
 * Builds a sparse distribution from raw logits of the listed tokens and the total logit weight
 * `Σ exp(logit − maxLogit)` over the whole vocabulary, as llama.cpp's sampler reports them.
 * `logits` must hold the top tokens first in descending order (llama.cpp returns them so).
 */
export function fromLogits(
  logits: ReadonlyMap<number, number>,
  totalLogitWeight: number,
  topCount: number,
  vocabularySize: number,
): SparseDistribution {
  const n = logits.size;
  const ids = new Int32Array(n);
  const probs = new Float64Array(n);
  let maxLogit = -Infinity;
  for (const value of logits.values()) if (value > maxLogit) maxLogit = value;
  let i = 0;
  let listedMass = 0;
  for (const [id, logit] of logits) {
    ids[i] = id;
    const p = Math.exp(logit - maxLogit) / totalLogitWeight;
    probs[i] = p;
    listedMass += p;
    i++;
  }
  const top = Math.min(topCount, n);
  const complete = n >= vocabularySize;
  const unlistedMass = complete ? 0 : Math.max(0, 1 - listedMass);
  const kth = top > 0 ? probs[top - 1]! : 1;
  return {
    ids,
    probs,
    topCount: top,
    unlistedMax: complete ? 0 : Math.min(kth, unlistedMass),
    unlistedMass,
    complete,
    maxLogit,
    totalLogitWeight,
  };
}

/** Whether `base` can be extended with more logits read at the same position. */
export function isExtensible(base: SparseDistribution): boolean {
  return base.maxLogit !== undefined && base.totalLogitWeight !== undefined && !base.complete;
}

/** `base` with the probabilities of more tokens, from their logits at the same position. */
export function extendWithLogits(base: SparseDistribution, logits: ReadonlyMap<number, number>): SparseDistribution {
  const listed = new Set(base.ids);
  const added = [...logits].filter(([id]) => !listed.has(id));
  const ids = new Int32Array(base.ids.length + added.length);
  const probs = new Float64Array(ids.length);
  ids.set(base.ids);
  probs.set(base.probs);
  let addedMass = 0;
  added.forEach(([id, logit], k) => {
    const p = Math.exp(logit - base.maxLogit!) / base.totalLogitWeight!;
    ids[base.ids.length + k] = id;
    probs[base.ids.length + k] = p;
    addedMass += p;
  });
  return { ...base, ids, probs, unlistedMass: Math.max(0, base.unlistedMass - addedMass) };
}

/** Builds a complete distribution from a probability map over the whole vocabulary. */
export function fromFullProbabilities(probabilities: ReadonlyMap<number, number>, topCount: number): SparseDistribution {
  const entries = [...probabilities.entries()].sort((a, b) => b[1] - a[1]);
  const ids = new Int32Array(entries.length);
  const probs = new Float64Array(entries.length);
  for (let i = 0; i < entries.length; i++) {
    ids[i] = entries[i]![0];
    probs[i] = entries[i]![1];
  }
  return { ids, probs, topCount: Math.min(topCount, entries.length), unlistedMax: 0, unlistedMass: 0, complete: true };
}
