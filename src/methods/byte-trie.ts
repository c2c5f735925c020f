import type { MemberCandidates } from "./candidates.js";

/** Bounds on a probability mass: the exact value lies in [lo, hi]; `value` is the point estimate. */
export interface Mass {
  readonly lo: number;
  readonly value: number;
  readonly hi: number;
}

export const ZERO_MASS: Mass = { lo: 0, value: 0, hi: 0 };

/** Byte value standing for the end-of-generation candidate among the root's children. */
export const END_CHILD = -1;

/**
 * One member's candidates sorted by their bytes, so the candidates that start with a byte string
 * (a node of the byte trie) are one contiguous range.
 */
export class SortedCandidates {
  private readonly texts: string[];
  private readonly loOf: Float64Array;
  private readonly valueOf: Float64Array;
  private readonly hiOf: Float64Array;
  /** Upper bound on the total probability of every text the member did not list. */
  readonly unlisted: number;
  /** Lower bound on the total probability of the listed texts. */
  private readonly listedLo: number;
  readonly complete: boolean;
  private readonly unlistedMax: number;

  constructor(candidates: MemberCandidates) {
    const order = candidates.texts.map((_, i) => i).sort((a, b) => compare(candidates.texts[a]!, candidates.texts[b]!));
    const n = order.length;
    this.texts = order.map((i) => candidates.texts[i]!);
    this.loOf = new Float64Array(n);
    this.valueOf = new Float64Array(n);
    this.hiOf = new Float64Array(n);
    this.complete = candidates.complete;
    const scale = candidates.complete ? 1 : candidates.lowerScale;
    let listedLo = 0;
    for (let k = 0; k < n; k++) {
      const i = order[k]!;
      const p = candidates.probs[i]!;
      this.valueOf[k] = p;
      this.loOf[k] = p * scale;
      this.hiOf[k] = candidates.complete ? p : Math.min(1, p + candidates.hiExtra[i]!);
      listedLo += p * scale;
    }
    this.listedLo = listedLo;
    this.unlisted = candidates.complete ? 0 : Math.max(0, 1 - this.listedLo);
    this.unlistedMax = candidates.complete ? 0 : Math.min(candidates.unlistedMax, this.unlisted);
  }

  /** Range [from, to) of the texts that start with `prefix`. */
  range(prefix: string): [number, number] {
    return [this.lowerBound(prefix), this.lowerBound(prefix + "\u0100")];
  }

  /**
   * Mass of the texts in [from, to), with room for unlisted texts that would sort there. Summed
   * directly, not from prefix sums: a deep node's small mass would lose its digits to the
   * difference of two large sums.
   */
  mass(from: number, to: number): Mass {
    if (from >= to && this.unlisted === 0) return ZERO_MASS;
    let lo = 0;
    let value = 0;
    let hiListed = 0;
    for (let k = from; k < to; k++) {
      lo += this.loOf[k]!;
      value += this.valueOf[k]!;
      hiListed += this.hiOf[k]!;
    }
    const hi = Math.min(1 - (this.listedLo - lo), hiListed + this.unlisted);
    return { lo, value, hi: Math.max(hi, lo) };
  }

  /** Mass of the one text equal to `text` (listed or not). */
  exact(text: string): Mass {
    const at = this.lowerBound(text);
    if (at < this.texts.length && this.texts[at] === text) return { lo: this.loOf[at]!, value: this.valueOf[at]!, hi: this.hiOf[at]! };
    return this.unlistedMax > 0 ? { lo: 0, value: 0, hi: this.unlistedMax } : ZERO_MASS;
  }

  /** The children bytes of the node `prefix` among the texts in its range, each with its range. */
  children(prefix: string, from: number, to: number, into: Map<number, [number, number][]>, member: number): void {
    const depth = prefix.length;
    let i = from;
    if (i < to && this.texts[i]!.length === depth) i++; // the text ending exactly here
    while (i < to) {
      const byte = this.texts[i]!.charCodeAt(depth);
      const end = this.lowerBound(prefix + String.fromCharCode(byte + 1), i, to);
      let ranges = into.get(byte);
      if (!ranges) into.set(byte, (ranges = []));
      ranges[member] = [i, end];
      i = end;
    }
  }

  private lowerBound(text: string, from = 0, to = this.texts.length): number {
    let lo = from;
    let hi = to;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(this.texts[mid]!, text) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Byte-wise order of latin1 strings (every char code is below 256), END_TEXT first. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
