/**
 * DeePEn (Huang et al. 2024), one step: every member's distribution is carried into the shared
 * anchor space through its relative representation (align/deepen-relative.ts), the weighted sum is
 * the target, and the main member's logits are moved toward it by a few AdamW steps on
 * KL(target ‖ softmax(z)·R_main) — then the main member's best token is taken.
 *
 * As in the reference: start from the main logits, 5 steps, lr 0.15 with a cosine schedule down to
 * lr/4, AdamW (β 0.9/0.999, ε 1e-8, weight decay 0.01). Unlike the reference (autograd over the whole
 * vocabulary on dense R), the gradient is analytic, on typed arrays, over the main member's listed
 * candidates and the anchors their sparse rows touch. Pure: no I/O.
 */
import type { MemberCandidates } from "./candidates.js";
import type { SparseRows } from "../align/sparse-rows.js";
import { exactCombined, listedProbabilities } from "./id-space.js";
import { normalizeWeights, type Combined } from "./combined.js";

export interface DeepenSearch {
  readonly steps: number;
  readonly learningRate: number;
  /** The cosine schedule ends here (the reference: learningRate / 4). */
  readonly finalLearningRate: number;
}

export const DEEPEN_SEARCH_DEFAULTS: DeepenSearch = { steps: 5, learningRate: 0.15, finalLearningRate: 0.15 / 4 };

/** One member's relative representation, with each row's sum (rows are used as exactly normalized). */
export interface RelativeSpace {
  readonly relative: SparseRows;
  readonly rowSums: Float64Array;
}

export function relativeSpace(relative: SparseRows): RelativeSpace {
  const rowSums = new Float64Array(relative.rows);
  for (let r = 0; r < relative.rows; r++) {
    let s = 0;
    for (let e = relative.rowStart[r]!; e < relative.rowStart[r + 1]!; e++) s += relative.vals[e]!;
    rowSums[r] = s;
  }
  return { relative, rowSums };
}

export interface DeepenVoter {
  readonly candidates: MemberCandidates;
  readonly ids: Int32Array;
  readonly space: RelativeSpace;
  readonly weight: number;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const EPSILON = 1e-8;
const WEIGHT_DECAY = 0.01;
/** Floor for q where the target has mass but the main member's rows have none. */
const Q_FLOOR = 1e-12;

/** Adds `scale` × row `id` of the space (normalized) into `into`, marking touched anchors. */
function addRow(space: RelativeSpace, id: number, scale: number, into: Float64Array, touched: Uint8Array, list: number[]): void {
  const { relative, rowSums } = space;
  if (id < 0 || id >= relative.rows || rowSums[id]! <= 0) return;
  const s = scale / rowSums[id]!;
  for (let e = relative.rowStart[id]!; e < relative.rowStart[id + 1]!; e++) {
    const a = relative.cols[e]!;
    into[a]! += s * relative.vals[e]!;
    if (!touched[a]) {
      touched[a] = 1;
      list.push(a);
    }
  }
}

/** The target Σ_m w_m · p_m · R_m in anchor space (weights normalized to sum to 1). */
export function deepenTarget(voters: readonly DeepenVoter[], anchors: number): Float64Array {
  const target = new Float64Array(anchors);
  const touched = new Uint8Array(anchors);
  const list: number[] = [];
  const weights = normalizeWeights(voters.map((v) => v.weight));
  for (const [m, v] of voters.entries()) {
    const p = listedProbabilities(v.candidates);
    const w = weights[m]!;
    for (let k = 0; k < p.length; k++) if (p[k]! > 0) addRow(v.space, v.ids[k]!, w * p[k]!, target, touched, list);
  }
  return target;
}

/**
 * The search's loss KL(target ‖ softmax(z)·R) over the anchors where the target has mass, and its
 * gradient with respect to z (written into `grad`).
 */
export function klLossAndGradient(z: Float64Array, ids: Int32Array, space: RelativeSpace, target: Float64Array, grad: Float64Array): number {
  const n = z.length;
  const { relative, rowSums } = space;
  const p = new Float64Array(n);
  softmaxInto(z, p);
  const q = new Float64Array(target.length);
  const touched = new Uint8Array(target.length);
  const list: number[] = [];
  for (let k = 0; k < n; k++) addRow(space, ids[k]!, p[k]!, q, touched, list);
  let loss = 0;
  for (let a = 0; a < target.length; a++) {
    const t = target[a]!;
    if (t > 0) loss += t * Math.log(t / Math.max(q[a]!, Q_FLOOR));
  }
  // dL/dp_k = Σ_a R[k,a] · (−t_a / q_a), over the anchors of row k; then through the softmax.
  let mean = 0;
  for (let k = 0; k < n; k++) {
    const id = ids[k]!;
    let gk = 0;
    if (id >= 0 && id < relative.rows && rowSums[id]! > 0) {
      for (let e = relative.rowStart[id]!; e < relative.rowStart[id + 1]!; e++) {
        const a = relative.cols[e]!;
        const t = target[a]!;
        if (t > 0) gk -= (relative.vals[e]! / rowSums[id]!) * (t / Math.max(q[a]!, Q_FLOOR));
      }
    }
    grad[k] = gk;
    mean += p[k]! * gk;
  }
  for (let k = 0; k < n; k++) grad[k] = p[k]! * (grad[k]! - mean);
  return loss;
}

export function deepenStep(voters: readonly DeepenVoter[], mainAt: number, search: DeepenSearch = DEEPEN_SEARCH_DEFAULTS): Combined {
  const main = voters[mainAt]!;
  const target = deepenTarget(voters, main.space.relative.columns);
  const n = main.candidates.texts.length;
  const start = listedProbabilities(main.candidates);
  const z = Float64Array.from(start, (p) => (p > 0 ? Math.log(p) : -1e4));
  const m1 = new Float64Array(n);
  const m2 = new Float64Array(n);
  const p = new Float64Array(n);
  const g = new Float64Array(n);

  for (let step = 0; step < search.steps; step++) {
    klLossAndGradient(z, main.ids, main.space, target, g);
    const lr = search.finalLearningRate + ((search.learningRate - search.finalLearningRate) * (1 + Math.cos((Math.PI * step) / search.steps))) / 2;
    const t = step + 1;
    for (let k = 0; k < n; k++) {
      const grad = g[k]!;
      z[k]! -= lr * WEIGHT_DECAY * z[k]!;
      m1[k] = BETA1 * m1[k]! + (1 - BETA1) * grad;
      m2[k] = BETA2 * m2[k]! + (1 - BETA2) * grad * grad;
      const mHat = m1[k]! / (1 - BETA1 ** t);
      const vHat = m2[k]! / (1 - BETA2 ** t);
      z[k]! -= (lr * mHat) / (Math.sqrt(vHat) + EPSILON);
    }
  }
  softmaxInto(z, p);
  return exactCombined(main.candidates.texts, p);
}

function softmaxInto(z: Float64Array, out: Float64Array): void {
  let max = -Infinity;
  for (const v of z) if (v > max) max = v;
  let sum = 0;
  for (let k = 0; k < z.length; k++) sum += out[k] = Math.exp(z[k]! - max);
  for (let k = 0; k < z.length; k++) out[k]! /= sum;
}
