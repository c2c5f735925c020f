/**
 * The ensemble's per-step log-probabilities in OpenAI's shapes. One "token" is one step's chosen
 * piece of text; its log-probability is the natural logarithm of the method's combined score,
 * and the alternatives are the pieces with the best combined scores at that step.
 */
import type { Step } from "../engine/ensemble.js";
import type { PieceLogprob } from "../engine/step-logprobs.js";
import { surfaceToText } from "../tokens/vocabulary.js";

/** OpenAI's stand-in for "impossible" (JSON has no -Infinity). */
const FLOOR = -9999;

const finite = (logprob: number) => (logprob > FLOOR ? logprob : FLOOR);
const bytesOf = (latin1: string) => Array.from(latin1, (c) => c.charCodeAt(0));

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** A chat answer's `logprobs.content` entry for one step. */
export function chatLogprob(step: Step): ChatTokenLogprob | undefined {
  const lp = step.logprobs;
  if (!lp || lp.bytes === "") return undefined;
  const piece = (p: PieceLogprob) => ({ token: surfaceToText(p.bytes), logprob: finite(p.logprob), bytes: bytesOf(p.bytes) });
  return { ...piece(lp), top_logprobs: lp.top.map(piece) };
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

/** Collects a completion's `logprobs` step by step; offsets count UTF-16 units of the answer's text. */
export class CompletionLogprobsBuilder {
  private readonly decoder = new TextDecoder();
  private offset = 0;

  /** The entries for one step (empty for the end of generation). */
  add(step: Step): CompletionLogprobs {
    const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    const lp = step.logprobs;
    if (!lp || lp.bytes === "") return out;
    out.tokens.push(surfaceToText(lp.bytes));
    out.token_logprobs.push(finite(lp.logprob));
    out.top_logprobs.push(Object.fromEntries(lp.top.map((t) => [surfaceToText(t.bytes), finite(t.logprob)])));
    out.text_offset.push(this.offset);
    this.offset += this.decoder.decode(Buffer.from(lp.bytes, "latin1"), { stream: true }).length;
    return out;
  }
}

export function mergeCompletionLogprobs(parts: readonly CompletionLogprobs[]): CompletionLogprobs {
  return {
    tokens: parts.flatMap((p) => p.tokens),
    token_logprobs: parts.flatMap((p) => p.token_logprobs),
    top_logprobs: parts.flatMap((p) => p.top_logprobs),
    text_offset: parts.flatMap((p) => p.text_offset),
  };
}

/** `ensemble.member_logprobs` entry for one step: each voting member's own log-probability of the piece. */
export function memberLogprobs(step: Step): { name: string; logprob: number | null }[] | undefined {
  return step.logprobs?.members?.map((m) => ({ name: m.name, logprob: m.logprob === null ? null : finite(m.logprob) }));
}
