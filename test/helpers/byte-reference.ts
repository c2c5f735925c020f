/**
 * A brute-force reference for byte-level voting over complete candidate lists: every mass is a
 * plain sum over every candidate text (no sorting, no prefix sums, no bounds), following the
 * definitions in src/methods/bytes.ts.
 */
import { END_TEXT, type MemberCandidates } from "../../src/methods/candidates.js";
import type { ByteAggregate, CommitRule } from "../../src/methods/bytes.js";

const END = -1;

function massStartingWith(m: MemberCandidates, prefix: string): number {
  let sum = 0;
  m.texts.forEach((t, i) => {
    if (t !== END_TEXT && t.startsWith(prefix)) sum += m.probs[i]!;
  });
  return sum;
}

function massExactly(m: MemberCandidates, text: string): number {
  const i = m.texts.indexOf(text);
  return i < 0 ? 0 : m.probs[i]!;
}

function childBytes(members: readonly MemberCandidates[], prefix: string): number[] {
  const bytes = new Set<number>();
  for (const m of members) for (const t of m.texts) if (t !== END_TEXT && t.length > prefix.length && t.startsWith(prefix)) bytes.add(t.charCodeAt(prefix.length));
  const sorted = [...bytes].sort((a, b) => a - b);
  if (prefix === "" && members.some((m) => massExactly(m, END_TEXT) > 0)) sorted.unshift(END);
  return sorted;
}

function childMass(m: MemberCandidates, prefix: string, byte: number): number {
  return byte === END ? massExactly(m, END_TEXT) : massStartingWith(m, prefix + String.fromCharCode(byte));
}

export interface ReferenceVote {
  readonly text: string;
  readonly probability: number;
  /** The smallest margin of any decision on the path (near-ties can flip on rounding). */
  readonly margin: number;
}

export function referenceBytesVote(members: readonly MemberCandidates[], weights: readonly number[], aggregate: ByteAggregate, rule: CommitRule, floor = 1e-4): ReferenceVote {
  const total = weights.reduce((a, b) => a + b, 0);
  const w = weights.map((x) => x / total);
  let prefix = "";
  let probability = 1;
  let margin = Infinity;
  for (;;) {
    const bytes = childBytes(members, prefix);
    if (bytes.length === 0) break;
    let scores: number[];
    let undetermined = 0;
    if (aggregate === "mix") {
      scores = bytes.map((b) => members.reduce((s, m, k) => s + w[k]! * childMass(m, prefix, b), 0));
      if (prefix !== "") undetermined = members.reduce((s, m, k) => s + w[k]! * massExactly(m, prefix), 0);
    } else {
      const numerators = bytes.map(() => 1);
      const voices = members.flatMap((m, k) => {
        const here = prefix === "" ? m.probs.reduce((a, b) => a + b, 0) : massStartingWith(m, prefix);
        return w[k]! > 0 && here > 0 ? [{ m, here, weight: w[k]! }] : [];
      });
      const voiceWeight = voices.reduce((s, v) => s + v.weight, 0);
      const mean = bytes.map((b) => voices.reduce((s, v) => s + (v.weight / voiceWeight) * (childMass(v.m, prefix, b) / v.here), 0));
      for (const v of voices) {
        bytes.forEach((b, j) => (numerators[j]! *= Math.pow(Math.max(childMass(v.m, prefix, b) / v.here, floor * mean[j]!), v.weight)));
        if (prefix !== "") undetermined += (v.weight / voiceWeight) * (massExactly(v.m, prefix) / v.here);
      }
      const z = numerators.reduce((a, b) => a + b, 0);
      scores = numerators.map((n) => n / z);
    }
    const order = bytes.map((_, j) => j).sort((a, b) => scores[b]! - scores[a]! || a - b);
    const best = order[0]!;
    const top = scores[best]!;
    const second = order.length > 1 ? scores[order[1]!]! : 0;
    let descend: boolean;
    if (prefix === "") {
      descend = true;
      margin = Math.min(margin, top - second);
    } else if (rule === "settled") {
      descend = top > second + undetermined;
      margin = Math.min(margin, Math.abs(top - second - undetermined));
    } else {
      descend = undetermined < top;
      margin = Math.min(margin, Math.abs(top - undetermined));
    }
    if (!descend) break;
    probability = aggregate === "mix" ? top : probability * top;
    if (bytes[best] === END) return { text: END_TEXT, probability, margin };
    prefix += String.fromCharCode(bytes[best]!);
  }
  return { text: prefix, probability, margin };
}
