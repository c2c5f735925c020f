import type { LlamaContextSequence, Token } from "node-llama-cpp";
import type { Vocabulary } from "../tokens/vocabulary.js";
import { extendWithLogits, fromFullProbabilities, fromLogits, isExtensible, type SparseDistribution } from "./distribution.js";
import { MemberError, type PositionRequest } from "./member.js";

/**
 * One llama.cpp context sequence (its KV cache) of a member, read position by position: brings
 * the sequence to a token list, reusing the longest common prefix, and reads the requested
 * positions' distributions.
 */
export class LlamaSequenceReader {
  constructor(
    private readonly memberName: string,
    private readonly sequence: LlamaContextSequence,
    private readonly vocabulary: Vocabulary,
    private readonly contextSize: number,
    private readonly trainContextSize: number,
  ) {}

  async distributions(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]> {
    if (tokens.length > this.contextSize) {
      throw new MemberError(
        this.memberName,
        `the text is ${tokens.length} tokens but this member's context holds ${this.contextSize}; ` +
          `shorten the prompt or raise contextSize (up to the model's training context, ${this.trainContextSize})`,
      );
    }
    if (requests.length === 0) return [];
    const firstPosition = Math.min(...requests.map((r) => r.position));
    const evaluated = this.sequence.contextTokens;
    let common = 0;
    const limit = Math.min(evaluated.length, tokens.length);
    while (common < limit && evaluated[common] === tokens[common]) common++;
    // Logits are not cached: a position already evaluated is evaluated again.
    const start = Math.min(common, firstPosition);
    if (start < this.sequence.nextTokenIndex) {
      await this.sequence.eraseContextTokenRanges([{ start, end: this.sequence.nextTokenIndex }]);
    }
    const byPosition = new Map(requests.map((r) => [r.position, r]));
    const input = tokens.slice(start).map((id, i) => {
      const request = byPosition.get(start + i);
      if (!request) return id as Token;
      const generateNext = request.full
        ? { probabilities: true }
        : request.extend && isExtensible(request.extend)
          ? { logits: { filter: { tokens: (request.extraIds ?? []) as Token[] } } }
          : {
              logits: { filter: { tokens: (request.extraIds ?? []) as Token[], includeTop: request.topK } },
              totalLogitWeight: true,
            };
      return [id as Token, { generateNext }] as [Token, { generateNext: typeof generateNext }];
    });
    const results = await this.sequence.controlledEvaluate(input);
    return requests.map((request) => {
      const next = results[request.position - start]?.next;
      if (request.full) {
        if (!next?.probabilities) throw new MemberError(this.memberName, "llama.cpp returned no probabilities");
        return fromFullProbabilities(next.probabilities, request.topK);
      }
      if (request.extend && isExtensible(request.extend)) {
        return next?.logits ? extendWithLogits(request.extend, next.logits) : request.extend;
      }
      if (!next?.logits || next.totalLogitWeight === undefined) {
        throw new MemberError(this.memberName, "llama.cpp returned no logits");
      }
      return fromLogits(next.logits, next.totalLogitWeight, request.topK, this.vocabulary.size);
    });
  }
}
