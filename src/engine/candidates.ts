import type { Vocabulary } from "../tokens/vocabulary.js";
import { TokenKind } from "../tokens/vocabulary.js";
import type { SparseDistribution } from "../members/distribution.js";
import { tokensExtending } from "../tokens/prefix-index.js";
import { END_TEXT, type MemberCandidates, type TokenPath } from "../methods/candidates.js";

class CandidateBuilder {
  readonly texts: string[] = [];
  readonly probs: number[] = [];
  readonly paths: TokenPath[] = [];
  private readonly best: number[] = [];
  readonly index = new Map<string, number>();

  add(text: string, p: number, path: TokenPath): void {
    let i = this.index.get(text);
    if (i === undefined) {
      i = this.texts.length;
      this.index.set(text, i);
      this.texts.push(text);
      this.probs.push(0);
      this.paths.push(path);
      this.best.push(-1);
    }
    this.probs[i]! += p;
    if (p > this.best[i]!) {
      this.best[i] = p;
      this.paths[i] = path;
    }
  }

  build(scale: number, lowerScale: number, extra: (text: string) => number, unlistedMax: number, complete: boolean, healedSurface?: string): MemberCandidates {
    const order = this.texts.map((_, i) => i).sort((a, b) => this.probs[b]! - this.probs[a]!);
    const texts = order.map((i) => this.texts[i]!);
    const probs = Float64Array.from(order, (i) => this.probs[i]! * scale);
    const paths = order.map((i) => this.paths[i]!);
    const hiExtra = Float64Array.from(texts, (t) => extra(t));
    const index = new Map(texts.map((t, i) => [t, i]));
    return { texts, probs, lowerScale, hiExtra, unlistedMax, paths, index, complete, healedSurface };
  }
}

/** Text of a token as a candidate: its exact bytes, END for end-of-generation, null for tokens that are never candidates. */
function candidateText(vocab: Vocabulary, id: number): string | null {
  if (vocab.eog.has(id)) return END_TEXT;
  const kind = vocab.kinds[id];
  if (kind === TokenKind.control || kind === TokenKind.unknown || kind === TokenKind.unused) return null;
  const surface = vocab.surfaces[id];
  return surface ? surface : null;
}

const multiplicityCache = new WeakMap<Vocabulary, Map<string, number>>();
/** Candidate texts that more than one token spells (EOG tokens count as END). */
function sharedSurfaces(vocab: Vocabulary): Map<string, number> {
  let shared = multiplicityCache.get(vocab);
  if (!shared) {
    const counts = new Map<string, number>();
    for (let id = 0; id < vocab.size; id++) {
      const text = candidateText(vocab, id);
      if (text !== null) counts.set(text, (counts.get(text) ?? 0) + 1);
    }
    shared = new Map([...counts].filter(([, n]) => n > 1));
    multiplicityCache.set(vocab, shared);
  }
  return shared;
}

/** Candidates where the text ends on the member's own token boundary: its plain next-token distribution. */
export function plainCandidates(vocab: Vocabulary, dist: SparseDistribution): MemberCandidates {
  const builder = new CandidateBuilder();
  for (let i = 0; i < dist.ids.length; i++) {
    const id = dist.ids[i]!;
    const text = candidateText(vocab, id);
    if (text !== null) builder.add(text, dist.probs[i]!, { kind: "append", id });
  }
  const shared = sharedSurfaces(vocab);
  const extra = (text: string) => (shared.has(text) ? (shared.get(text)! - 1) * dist.unlistedMax : 0);
  return builder.build(1, 1, extra, dist.unlistedMax, dist.complete);
}

/**
 * Candidates at a boundary foreign to the member ("token healing"). The member's last tokens `tail`
 * (usually one; more when its tokenizer split the last word oddly) spell the open end `r` of the
 * text; `dists[i]` is the distribution of the token at tail position i, `dists[tail.length]` the
 * one after the whole tail. Along that path, every token at position i that extends the rest of
 * `r` contributes its remainder, weighted by the path's probability up to i; the whole path's
 * probability spreads over the distribution after it; the result is renormalized over everything
 * consistent with `r`.
 */
/**
 * Another split of the healed tail: tokens `before` that are not the tail's own, spelling a proper
 * prefix of it, found at tail position `level` (the tail's first `level` tokens come first), with
 * the distribution after them. Healing along the tail alone leaves their mass out.
 */
export interface HealingBranch {
  readonly level: number;
  readonly before: readonly number[];
  /** Probability of `before` from the position before the tail. */
  readonly mass: number;
  /** The tail's bytes after `before`. */
  readonly rest: string;
  readonly dist: SparseDistribution;
}

/** Whether a token can start or continue a healed path (ordinary text, not control tokens). */
export function isHealable(vocab: Vocabulary, id: number): boolean {
  const kind = vocab.kinds[id];
  return (kind === TokenKind.normal || kind === TokenKind.byte || kind === TokenKind.user) && (vocab.surfaces[id]?.length ?? 0) > 0;
}

export function healedCandidates(vocab: Vocabulary, tail: readonly number[], dists: readonly SparseDistribution[], branches: readonly HealingBranch[] = []): MemberCandidates {
  const levels = tail.length;
  const rests: string[] = [];
  for (let i = levels - 1, rest = ""; i >= 0; i--) rests[i] = rest = (vocab.surfaces[tail[i]!] ?? "") + rest;
  const builder = new CandidateBuilder();
  let pathMass = 1;
  let sameMass = 0;
  let extendingMass = 0;
  let unknownMass = 0;
  let unlistedFromLevels = 0;
  // A member that cannot look ids up may leave a tail token out of its answer: then the healed
  // path's probability is unknown, and the estimate without it can be far off (it drops the
  // path that spells the tail itself).
  let tailUnlisted = false;
  for (let level = 0; level < levels && pathMass > 0; level++) {
    const dist = dists[level]!;
    const rest = rests[level]!;
    let listedExtending = 0;
    let next = 0;
    let tailListed = false;
    for (let k = 0; k < dist.ids.length; k++) {
      const id = dist.ids[k]!;
      const p = dist.probs[k]!;
      if (id === tail[level]) {
        next = p;
        tailListed = true;
      }
      const text = candidateText(vocab, id);
      // Another split of the tail: its continuations come from its branch when it was followed
      // (a full distribution follows the same ones, so the bounds need not cover the others).
      if (text !== null && id !== tail[level] && text.length > 0 && text.length < rest.length && rest.startsWith(text) && isHealable(vocab, id)) continue;
      if (text === null || text.length === 0 || !text.startsWith(rest)) continue;
      if (text.length === rest.length) {
        // The tail token itself (last level), or one token spelling the whole rest: its future is the path's.
        sameMass += pathMass * p;
      } else {
        builder.add(text.slice(rest.length), pathMass * p, { kind: "replace", id, drop: levels - level });
        extendingMass += pathMass * p;
        listedExtending++;
      }
    }
    if (!dist.complete) {
      if (!tailListed) tailUnlisted = true;
      const unlisted = Math.max(0, tokensExtending(vocab, rest, 0).count - listedExtending);
      unknownMass += pathMass * Math.min(dist.unlistedMass, unlisted * dist.unlistedMax);
      if (unlisted > 0) unlistedFromLevels += pathMass * dist.unlistedMax;
    }
    if (level < levels - 1) pathMass *= next;
  }
  for (const branch of branches) {
    const { dist, rest, mass, before } = branch;
    let listedExtending = 0;
    for (let k = 0; k < dist.ids.length; k++) {
      const id = dist.ids[k]!;
      const text = candidateText(vocab, id);
      if (text === null || text.length === 0 || !text.startsWith(rest)) continue;
      const p = mass * dist.probs[k]!;
      if (text.length === rest.length) {
        // Spells the tail another way: its continuation is taken to be the tail's own.
        sameMass += p;
      } else {
        builder.add(text.slice(rest.length), p, { kind: "replace", id, drop: levels, before });
        extendingMass += p;
        listedExtending++;
      }
    }
    if (!dist.complete) {
      const unlisted = Math.max(0, tokensExtending(vocab, rest, 0).count - listedExtending);
      unknownMass += mass * Math.min(dist.unlistedMass, unlisted * dist.unlistedMax);
      if (unlisted > 0) unlistedFromLevels += mass * dist.unlistedMax;
    }
  }
  const after = dists[levels]!;
  // The member continues after its last token instead: its plain distribution, said in the trace.
  if (tailUnlisted) return { ...plainCandidates(vocab, after), fallback: "plain: the healed token's probability was not listed" };
  if (sameMass + extendingMass <= 0) return plainCandidates(vocab, after);
  for (let k = 0; k < after.ids.length; k++) {
    const id = after.ids[k]!;
    const text = candidateText(vocab, id);
    if (text !== null) builder.add(text, sameMass * after.probs[k]!, { kind: "append", id });
  }
  const zLow = sameMass + extendingMass;
  const zHigh = zLow + unknownMass;
  const unlistedMax = Math.min(1, (unlistedFromLevels + sameMass * after.unlistedMax) / zLow);
  const complete = dists.every((d) => d.complete);
  return builder.build(1 / zLow, zLow / zHigh, () => unlistedMax, unlistedMax, complete, rests[0]);
}
