import { END_TEXT, type MemberCandidates } from "./candidates.js";
import { normalizeWeights, type Combined } from "./combined.js";
import { END_CHILD, SortedCandidates, ZERO_MASS, type Mass } from "./byte-trie.js";

/**
 * How members' byte probabilities are combined at a node of the byte trie:
 * - `mix`: the weighted mean of the members' probabilities that the next bytes start with the
 *   node's bytes (ByteSampler's and Phan et al.'s mixture); a child's score is its mass.
 * - `product`: the weighted geometric mean of the members' conditional probabilities of each
 *   child byte, renormalized over the children (a product of experts), each floored at `floor`
 *   times the members' mean conditional of that byte.
 */
export type ByteAggregate = "mix" | "product";

/**
 * When a descent stops and commits the node reached:
 * - `settled`: descend while the best child's lead over every other child exceeds the mass still
 *   undetermined at the node (candidates ending exactly there, whose continuation the next step
 *   reads); otherwise commit.
 * - `ending`: commit once the mass ending exactly at the node is at least the best child's.
 */
export type CommitRule = "settled" | "ending";

export interface BytesOptions {
  readonly aggregate?: ByteAggregate;
  readonly rule?: CommitRule;
  /** `product`: a member's conditional probability of a byte counts as at least this times the members' mean conditional of that byte (so a member with ~0 mass slows a path the others favour but cannot veto it forever). */
  readonly floor?: number;
}

export const BYTES_DEFAULTS: Required<BytesOptions> = { aggregate: "mix", rule: "settled", floor: 1e-4 };

/** One node of the descent: the bytes reached, the options there, and what was chosen. */
export interface ByteNode {
  /** Bytes from the start of the step to this node (latin1). */
  readonly prefix: string;
  /** Score of each child byte (END_CHILD for end of generation) and of the undetermined mass. */
  readonly children: readonly { readonly byte: number; readonly score: number }[];
  readonly undetermined: number;
  /** The child descended into, or null when the node was committed. */
  readonly chosen: number | null;
}

export interface ByteVote {
  /** The committed bytes (latin1), or END_TEXT. */
  readonly text: string;
  /**
   * The ensemble's probability of the committed bytes: `mix`, the weighted mass of every candidate
   * that starts with them; `product`, the product of the chosen bytes' scores along the path.
   */
  readonly probability: number;
  /** True when the decision provably equals the one over the members' full vocabularies. */
  readonly proven: boolean;
  /** The committed piece first, then every sibling subtree left along the path, with their scores (disjoint: they sum to at most 1). */
  readonly combined: Combined;
  readonly path: readonly ByteNode[];
  /** Each member's probability that its next bytes start with the committed bytes (point estimate). */
  readonly memberMass: readonly number[];
}

/**
 * Picks one option from non-negative scores (sampling); greedy decoding passes none and the rule
 * decides.
 */
export type ByteChooser = (scores: Float64Array) => number;

interface NodeScores {
  readonly bytes: number[];
  readonly children: Mass[];
  /** Upper bound on any one child no member listed. */
  readonly unlistedChild: number;
  readonly undetermined: Mass;
}

/**
 * Byte-level voting (`method: bytes`): walks down the trie of all members' candidate byte strings
 * from the current text, at each node scoring the child bytes by the aggregate of the members'
 * probabilities, and commits the node where the rule stops (always at least one byte, or END).
 * Bounds on what members did not list make the greedy decision provable; `proven` false asks the
 * engine for more candidates, as GaC does.
 */
export function bytesVote(members: readonly MemberCandidates[], weights: readonly number[], options: BytesOptions = {}, choose?: ByteChooser): ByteVote {
  const settings = { ...BYTES_DEFAULTS, ...options };
  // A member without weight has no say, not even in which bytes exist.
  const voting = members.flatMap((m, i) => (weights[i]! > 0 ? [i] : []));
  const w = normalizeWeights(voting.map((i) => weights[i]!));
  const all = members.map((m) => new SortedCandidates(m));
  const sorted = voting.map((i) => all[i]!);
  const exact = sorted.every((s) => s.complete);
  const path: ByteNode[] = [];
  const altTexts: string[] = [];
  const altScores: number[] = [];
  let prefix = "";
  let probability = 1;
  let proven = true;
  for (;;) {
    const root = prefix.length === 0;
    const node = settings.aggregate === "mix" ? mixScores(sorted, w, prefix) : productScores(sorted, w, prefix, settings.floor);
    const decision = choose ? sample(node, root, choose) : decide(node, root, settings.rule, exact);
    if (!decision.proven) proven = false;
    path.push({
      prefix,
      children: node.bytes.map((byte, k) => ({ byte, score: node.children[k]!.value })),
      undetermined: node.undetermined.value,
      chosen: decision.child === null ? null : node.bytes[decision.child]!,
    });
    const mass = (k: number) => (settings.aggregate === "mix" ? node.children[k]!.value : probability * node.children[k]!.value);
    if (decision.child === null) break; // the node's children lie inside the committed piece
    node.bytes.forEach((byte, k) => {
      if (k === decision.child) return;
      altTexts.push(byte === END_CHILD ? END_TEXT : prefix + String.fromCharCode(byte));
      altScores.push(mass(k));
    });
    const byte = node.bytes[decision.child]!;
    probability = mass(decision.child);
    if (byte === END_CHILD) {
      prefix = END_TEXT;
      break;
    }
    prefix += String.fromCharCode(byte);
  }
  const memberMass = all.map((s) => (prefix === END_TEXT ? s.exact(END_TEXT).value : s.mass(...s.range(prefix)).value));
  const texts = [prefix, ...altTexts];
  const scores = Float64Array.from([probability, ...altScores]);
  return { text: prefix, probability, proven, combined: { texts, scores, lower: scores, upper: scores, unlistedUpper: 0 }, path, memberMass };
}

/** Children of a node across members, each member's ranges per child byte (END at the root). */
function childRanges(sorted: readonly SortedCandidates[], prefix: string): { bytes: number[]; ranges: Map<number, [number, number][]>; nodes: [number, number][] } {
  const ranges = new Map<number, [number, number][]>();
  const nodes = sorted.map((s, m) => {
    const range = s.range(prefix);
    s.children(prefix, range[0], range[1], ranges, m);
    return range;
  });
  const bytes = [...ranges.keys()].sort((a, b) => a - b);
  if (prefix.length === 0 && sorted.some((s) => s.exact(END_TEXT).hi > 0)) bytes.unshift(END_CHILD);
  return { bytes, ranges, nodes };
}

function childMass(s: SortedCandidates, m: number, byte: number, ranges: Map<number, [number, number][]>): Mass {
  if (byte === END_CHILD) return s.exact(END_TEXT);
  const range = ranges.get(byte)?.[m];
  return range ? s.mass(range[0], range[1]) : s.mass(0, 0);
}

function mixScores(sorted: readonly SortedCandidates[], w: readonly number[], prefix: string): NodeScores {
  const { bytes, ranges } = childRanges(sorted, prefix);
  const children = bytes.map((byte) => weightedSum(sorted.map((s, m) => childMass(s, m, byte, ranges)), w));
  const unlistedChild = sorted.reduce((sum, s, m) => sum + w[m]! * s.unlisted, 0);
  const undetermined = prefix.length === 0 ? ZERO_MASS : weightedSum(sorted.map((s) => s.exact(prefix)), w);
  return { bytes, children, unlistedChild, undetermined };
}

function productScores(sorted: readonly SortedCandidates[], w: readonly number[], prefix: string, floor: number): NodeScores {
  const { bytes, ranges, nodes } = childRanges(sorted, prefix);
  // Members without mass at this node count as uniform: they have no say here.
  const voices = sorted.flatMap((s, m) => {
    const here = s.mass(nodes[m]![0], nodes[m]![1]);
    return w[m]! > 0 && here.hi > 0 ? [{ s, m, here, weight: w[m]! }] : [];
  });
  const voiceWeight = voices.reduce((sum, v) => sum + v.weight, 0);
  const conditionals = voices.map((v) => bytes.map((byte) => conditional(childMass(v.s, v.m, byte, ranges), v.here, 0)));
  // The floor is relative to the members' mean conditional of the byte: a byte the others favour
  // cannot be vetoed by one member's ~0, and a byte nobody favours stays negligible.
  const mean = bytes.map((_, k) => weightedSum(conditionals.map((c) => c[k]!), voices.map((v) => v.weight / voiceWeight)));
  const numerators = bytes.map(() => ({ lo: 1, value: 1, hi: 1 }));
  let unlistedNumerator = 1;
  let meanUnlisted = 0;
  for (const v of voices) meanUnlisted += (v.weight / voiceWeight) * (v.here.lo > 0 ? Math.min(1, v.s.unlisted / v.here.lo) : 1);
  voices.forEach((v, j) => {
    const wm = v.weight;
    bytes.forEach((_, k) => {
      const c = conditionals[j]![k]!;
      const f = mean[k]!;
      const n = numerators[k]!;
      n.lo *= Math.pow(Math.max(c.lo, floor * f.lo), wm);
      n.value *= Math.pow(Math.max(c.value, floor * f.value), wm);
      n.hi *= Math.pow(Math.max(c.hi, floor * f.hi), wm);
    });
    // Hölder: the unlisted children together weigh at most Π (Σ their floored conditionals)^w.
    const unlisted = v.here.lo > 0 ? Math.min(1, v.s.unlisted / v.here.lo) : 1;
    unlistedNumerator *= Math.pow(unlisted + floor * meanUnlisted, wm);
  });
  const incomplete = sorted.some((s) => !s.complete);
  const unlistedTotal = incomplete ? unlistedNumerator * Math.pow(256 - bytes.length, Math.max(0, 1 - voiceWeight)) : 0;
  const loSum = numerators.reduce((a, n) => a + n.lo, 0);
  const valueSum = numerators.reduce((a, n) => a + n.value, 0);
  const hiSum = numerators.reduce((a, n) => a + n.hi, 0);
  const children = numerators.map((n) => ({
    lo: n.lo / (n.lo + (hiSum - n.hi) + unlistedTotal),
    value: valueSum > 0 ? n.value / valueSum : 0,
    hi: n.hi / Math.max(Number.MIN_VALUE, n.hi + (loSum - n.lo)),
  }));
  const unlistedChild = incomplete ? unlistedTotal / Math.max(Number.MIN_VALUE, unlistedTotal + loSum) : 0;
  const undetermined = prefix.length > 0 && voiceWeight > 0 ? weightedSum(voices.map((v) => conditional(v.s.exact(prefix), v.here, 0)), voices.map((v) => v.weight / voiceWeight)) : ZERO_MASS;
  return { bytes, children, unlistedChild, undetermined };
}

/** Bounds on part / whole, each at least `floor`. */
function conditional(part: Mass, whole: Mass, floor: number): Mass {
  const lo = whole.hi > 0 ? part.lo / whole.hi : 0;
  const value = whole.value > 0 ? part.value / whole.value : whole.hi > 0 ? 0 : 1;
  const hi = whole.lo > 0 ? Math.min(1, part.hi / whole.lo) : 1;
  return { lo: Math.max(floor, lo), value: Math.max(floor, Math.min(1, value)), hi: Math.max(floor, hi) };
}

function weightedSum(masses: readonly Mass[], w: readonly number[]): Mass {
  let lo = 0;
  let value = 0;
  let hi = 0;
  masses.forEach((x, m) => {
    lo += w[m]! * x.lo;
    value += w[m]! * x.value;
    hi += w[m]! * x.hi;
  });
  return { lo, value, hi };
}

interface Decision {
  /** Index into the node's children, or null to commit the node. */
  readonly child: number | null;
  readonly proven: boolean;
}

/** Greedy: the rule's decision on the point estimates, and whether the bounds prove it. */
function decide(node: NodeScores, root: boolean, rule: CommitRule, exact: boolean): Decision {
  const { children, undetermined: e } = node;
  if (children.length === 0) return { child: null, proven: exact || node.unlistedChild <= e.lo };
  const order = children.map((_, k) => k).sort((a, b) => children[b]!.value - children[a]!.value || a - b);
  const best = order[0]!;
  const second = order.length > 1 ? children[order[1]!]!.value : 0;
  const top = children[best]!.value;
  const descend = root || (rule === "settled" ? top > second + e.value : e.value < top);
  if (exact) return { child: descend ? best : null, proven: true };
  // Bounds: the best's floor against every other child's ceiling (and any unlisted child's).
  let othersHi = node.unlistedChild;
  for (const k of order) if (k !== best) othersHi = Math.max(othersHi, children[k]!.hi);
  const bestLo = children[best]!.lo;
  if (root) return { child: best, proven: bestLo > othersHi };
  if (rule === "settled") {
    if (descend) return { child: best, proven: bestLo > othersHi + e.hi };
    // Commit: no child can lead every other by more than the undetermined mass.
    const byLo = children.map((_, k) => k).sort((a, b) => children[b]!.lo - children[a]!.lo);
    const l1 = children[byLo[0]!]!.lo;
    const l2 = byLo.length > 1 ? children[byLo[1]!]!.lo : 0;
    const ok = children.every((c, k) => c.hi <= (k === byLo[0] ? l2 : l1) + e.lo) && node.unlistedChild <= l1 + e.lo;
    return { child: null, proven: ok };
  }
  if (descend) return { child: best, proven: e.hi < bestLo && bestLo > othersHi };
  return { child: null, proven: e.lo >= Math.max(othersHi, children[best]!.hi) };
}

/** Sampling: one draw among the children and, below the root, committing here (the undetermined mass). */
function sample(node: NodeScores, root: boolean, choose: ByteChooser): Decision {
  const n = node.children.length;
  if (n === 0) return { child: null, proven: true };
  const scores = new Float64Array(root ? n : n + 1);
  node.children.forEach((c, k) => (scores[k] = c.value));
  if (!root) scores[n] = node.undetermined.value;
  const picked = choose(scores);
  return { child: picked < n ? picked : null, proven: true };
}
