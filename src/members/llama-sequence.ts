import type { LlamaContextSequence, Token } from "node-llama-cpp";
import type { Vocabulary } from "../tokens/vocabulary.js";
import { commonPrefixLength } from "../tokens/token-lists.js";
import { extendWithLogits, fromFullProbabilities, isExtensible, type SparseDistribution } from "./distribution.js";
import { MemberError, type PositionRequest } from "./member.js";
import { answer, covers, PositionReadCache, rowRead, topRead } from "./position-reads.js";

/**
 * Vocabularies up to this size are read a whole row of logits at a time: the row costs about what
 * a top-k read costs (llama.cpp sorts the vocabulary for either) and answers any later request at
 * that position — healing's second look, UniTE's look-ups, an escalation — without decoding again.
 */
const ROW_VOCABULARY = 8192;

type GenerateNext =
  | { logits: true; totalLogitWeight: true }
  | { probabilities: true }
  | { logits: { filter: { tokens: Token[]; includeTop?: number } }; totalLogitWeight?: true };

/** What one evaluated position is asked for: the union of the requests at it. */
interface PositionAsk {
  readonly position: number;
  readonly topK: number;
  readonly extraIds: Set<number>;
  readonly full: boolean;
  /** Only look-ups that extend an earlier read (no top list, no total: cheap). */
  readonly extendOnly: boolean;
}

/**
 * One llama.cpp context sequence (its KV cache) of a member, read position by position: brings
 * the sequence to a token list, reusing the longest common prefix, and reads the requested
 * positions' distributions. What was read stays readable while the tokens up to it stay the same,
 * so a position is decoded once, however often it is asked about.
 */
export class LlamaSequenceReader {
  private readonly cache = new PositionReadCache();
  private readonly rows: boolean;
  /** Positions answered from earlier reads, and positions decoded (for benchmarks and tests). */
  readonly counts = { served: 0, decoded: 0, evaluations: 0 };

  constructor(
    private readonly memberName: string,
    private readonly sequence: LlamaContextSequence,
    private readonly vocabulary: Vocabulary,
    private readonly contextSize: number,
    private readonly trainContextSize: number,
    private readonly exactReads = false,
  ) {
    this.rows = vocabulary.size <= ROW_VOCABULARY;
  }

  async distributions(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]> {
    this.checkLength(tokens);
    if (requests.length === 0) return [];
    return this.read(tokens, requests);
  }

  /** Evaluates `tokens` and reads `requests` into the kept reads, for later `distributions` calls. */
  async prefetch(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<void> {
    this.checkLength(tokens);
    if (requests.length > 0) await this.read(tokens, requests);
  }

  private checkLength(tokens: readonly number[]): void {
    if (tokens.length > this.contextSize) {
      throw new MemberError(
        this.memberName,
        `the text is ${tokens.length} tokens but this member's context holds ${this.contextSize}; ` +
          `shorten the prompt or raise contextSize (up to the model's training context, ${this.trainContextSize})`,
      );
    }
  }

  private async read(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]> {
    const common = commonPrefixLength(this.sequence.contextTokens, tokens);
    // A read at position p is of tokens[0..p]: it answers while those are what was evaluated.
    const fromCache = (r: PositionRequest): SparseDistribution | undefined => {
      const read = this.cache.get(r.position);
      return read && covers(read, r) ? answer(read, r, this.vocabulary.size) : undefined;
    };
    const answers = requests.map((r) => (r.position < common ? fromCache(r) : undefined));
    const missing = requests.filter((_, k) => answers[k] === undefined);
    this.counts.served += requests.length - missing.length;
    if (missing.length > 0) {
      const uncached = await this.evaluate(tokens, common, missing);
      requests.forEach((r, k) => (answers[k] ??= uncached.get(r) ?? fromCache(r)));
    }
    this.cache.trim(tokens.length);
    return answers.map((a) => {
      if (!a) throw new MemberError(this.memberName, "llama.cpp returned no logits");
      return a;
    });
  }

  /**
   * Decodes from the first position a request needs (logits are kept only for what was asked) and
   * reads every asked position into the cache. Returns the answers that are not cached (a full
   * distribution of a large vocabulary, a look-up at a position with nothing else read).
   */
  private async evaluate(tokens: readonly number[], common: number, missing: readonly PositionRequest[]): Promise<Map<PositionRequest, SparseDistribution>> {
    const asks = new Map<number, PositionAsk>();
    for (const r of missing) {
      const ask = asks.get(r.position);
      const extendOnly = r.extend !== undefined && isExtensible(r.extend);
      asks.set(r.position, {
        position: r.position,
        topK: Math.max(ask?.topK ?? 0, extendOnly ? 0 : r.topK),
        extraIds: new Set([...(ask?.extraIds ?? []), ...(r.extraIds ?? [])]),
        full: (ask?.full ?? false) || (r.full ?? false),
        extendOnly: (ask?.extendOnly ?? true) && extendOnly,
      });
    }
    const start = Math.min(common, ...asks.keys());
    // Evaluated tokens from `common` on are replaced: what was read there is of another text.
    this.cache.dropFrom(common);
    if (start < this.sequence.nextTokenIndex) {
      await this.sequence.eraseContextTokenRanges([{ start, end: this.sequence.nextTokenIndex }]);
    }
    const input = tokens.slice(start).map((id, i) => {
      const ask = asks.get(start + i);
      return ask ? ([id as Token, { generateNext: this.generateNext(ask) }] as [Token, { generateNext: GenerateNext }]) : (id as Token);
    });
    const results = this.exactReads ? await this.oneByOne(input) : await this.sequence.controlledEvaluate(input);
    this.counts.decoded += asks.size;
    this.counts.evaluations++;
    const uncached = new Map<PositionRequest, SparseDistribution>();
    for (const ask of asks.values()) {
      const next = results[ask.position - start]?.next;
      if (this.rows || (!ask.full && !ask.extendOnly)) {
        if (!next?.logits || next.totalLogitWeight === undefined) throw new MemberError(this.memberName, "llama.cpp returned no logits");
        this.cache.set(ask.position, this.rows ? rowRead(next.logits, next.totalLogitWeight) : topRead(next.logits, ask.topK, next.totalLogitWeight));
        continue;
      }
      if (ask.extendOnly && next?.logits) this.cache.addLookups(ask.position, next.logits);
      for (const r of missing.filter((m) => m.position === ask.position)) {
        if (ask.full) {
          // A full read of a large vocabulary is kept out of the cache (it is rare and big).
          if (!next?.probabilities) throw new MemberError(this.memberName, "llama.cpp returned no probabilities");
          uncached.set(r, fromFullProbabilities(next.probabilities, r.topK));
        } else {
          uncached.set(r, next?.logits ? extendWithLogits(r.extend!, next.logits) : r.extend!);
        }
      }
    }
    return uncached;
  }

  /** One llama.cpp decode per token: a position's logits then never depend on what was batched with it. */
  private async oneByOne(input: Parameters<LlamaContextSequence["controlledEvaluate"]>[0]): ReturnType<LlamaContextSequence["controlledEvaluate"]> {
    const results: Awaited<ReturnType<LlamaContextSequence["controlledEvaluate"]>> = [];
    for (const item of input) results.push((await this.sequence.controlledEvaluate([item]))[0]);
    return results;
  }

  private generateNext(ask: PositionAsk): GenerateNext {
    if (this.rows) return { logits: true, totalLogitWeight: true };
    if (ask.full) return { probabilities: true };
    const tokens = [...ask.extraIds] as Token[];
    if (ask.extendOnly) return { logits: { filter: { tokens } } };
    return { logits: { filter: { tokens, includeTop: ask.topK } }, totalLogitWeight: true };
  }
}
