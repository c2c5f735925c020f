import type { LlamaContextSequence, Token } from "node-llama-cpp";
import type { Vocabulary } from "../tokens/vocabulary.js";
import { commonPrefixLength } from "../tokens/token-lists.js";
import { extendWithLogits, fromFullProbabilities, isExtensible, type SparseDistribution } from "./distribution.js";
import { MemberError, type PositionRequest } from "./member.js";
import { answer, covers, directRowRead, directTopRead, PositionReadCache, rowRead, topRead } from "./position-reads.js";
import { copySequencePrefix, directEvaluator, type DirectEvaluate, type RawPositionAsk, type RawPositionRead } from "./direct-reads.js";

/**
 * Under node-llama-cpp's stock binding, vocabularies up to this size are read a whole row of logits
 * at a time: the row costs about what a top-k read costs (llama.cpp sorts the vocabulary for
 * either) and answers any later request at that position — healing's second look, UniTE's
 * look-ups, an escalation — without decoding again. The direct path (patched binding) reads a
 * whole row at every size: a copy of the row costs a fraction of a millisecond even at 152k tokens,
 * while decoding a position again costs a forward pass (a healed step asks again for the position
 * before its tail, which the step before read).
 */
const ROW_VOCABULARY = 8192;

/** A row read also lists this many top ids in order (later requests rarely ask for more). */
const ROW_TOP = 256;

/** Kept reads per sequence: positions behind the end, and at most this many bytes of rows. */
const KEEP_BEHIND = 64;
const KEPT_ROW_BYTES = 16 * 1024 * 1024;
/** At least a healed tail (the engine heals up to 4 tokens) and the positions before it. */
const MIN_KEPT_ROWS = 8;

/** A side path further than this many tokens behind the main one is brought up by copying KV cells rather than decoding. */
const SIDE_COPY_GAP = 8;

/** One KV sequence and what was read on it. */
interface SequencePath {
  readonly sequence: LlamaContextSequence;
  readonly cache: PositionReadCache;
  readonly direct: DirectEvaluate | undefined;
}

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
  /** Every request here said it will not ask again. */
  readonly once: boolean;
}

/**
 * One llama.cpp context sequence (its KV cache) of a member, read position by position: brings
 * the sequence to a token list, reusing the longest common prefix, and reads the requested
 * positions' distributions. What was read stays readable while the tokens up to it stay the same,
 * so a position is decoded once, however often it is asked about.
 */
export class LlamaSequenceReader {
  private readonly rows: boolean;
  /** The sequence reads follow. */
  private readonly main: SequencePath;
  /**
   * A second sequence for requests off a path read ahead on the main one (speculation's batch):
   * a step whose tokens leave that path (a healed tail the batch does not contain) is decoded here,
   * so the batch stays for the steps after it.
   */
  private readonly side: SequencePath | undefined;
  /** The read in progress: the direct path bypasses node-llama-cpp's per-sequence lock, so reads queue here. */
  private busy: Promise<unknown> = Promise.resolve();
  /** Positions answered from earlier reads, and positions decoded (for benchmarks and tests). */
  readonly counts = { served: 0, decoded: 0, evaluations: 0, sideEvaluations: 0 };

  constructor(
    private readonly memberName: string,
    sequence: LlamaContextSequence,
    private readonly vocabulary: Vocabulary,
    private readonly contextSize: number,
    private readonly trainContextSize: number,
    private readonly exactReads = false,
    /** A second sequence of the same context (see `side`); used only with the direct path. */
    sideSequence?: LlamaContextSequence,
  ) {
    const direct = directEvaluator(sequence);
    this.rows = direct !== undefined || vocabulary.size <= ROW_VOCABULARY;
    const rowsKept = Math.floor(KEPT_ROW_BYTES / (4 * Math.max(1, vocabulary.size)));
    const keep = this.rows ? Math.max(MIN_KEPT_ROWS, Math.min(KEEP_BEHIND, rowsKept)) : KEEP_BEHIND;
    this.main = { sequence, cache: new PositionReadCache(keep), direct };
    const sideDirect = sideSequence && direct ? directEvaluator(sideSequence) : undefined;
    this.side = sideSequence && sideDirect ? { sequence: sideSequence, cache: new PositionReadCache(keep), direct: sideDirect } : undefined;
  }

  /** Whether reads take the patched binding's direct path. */
  get directReads(): boolean {
    return this.main.direct !== undefined;
  }

  /** Drops every kept read and the sequences' KV caches. */
  forget(): Promise<void> {
    return this.queued(async () => {
      for (const path of this.paths()) {
        path.cache.dropFrom(0);
        await path.sequence.clearHistory();
      }
    });
  }

  private paths(): SequencePath[] {
    return this.side ? [this.main, this.side] : [this.main];
  }

  /** Runs `work` after the reader's earlier work has settled (see `busy`). */
  private queued<T>(work: () => Promise<T>): Promise<T> {
    const done = this.busy.then(work);
    this.busy = done.catch(() => undefined);
    return done;
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

  private read(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]> {
    return this.queued(() => this.readNow(tokens, requests));
  }

  private async readNow(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]> {
    const paths = this.paths();
    const commons = paths.map((path) => commonPrefixLength(path.sequence.contextTokens, tokens));
    // A read at position p is of tokens[0..p]: it answers while those are what was evaluated.
    const fromPath = (path: SequencePath, r: PositionRequest): SparseDistribution | undefined => {
      const read = path.cache.get(r.position);
      return read && covers(read, r) ? answer(read, r, this.vocabulary.size) : undefined;
    };
    const fromAny = (r: PositionRequest): SparseDistribution | undefined => {
      for (let k = 0; k < paths.length; k++) {
        const found = r.position < commons[k]! ? fromPath(paths[k]!, r) : undefined;
        if (found) return found;
      }
      return undefined;
    };
    const answers = requests.map(fromAny);
    const missing = requests.filter((_, k) => answers[k] === undefined);
    this.counts.served += requests.length - missing.length;
    if (missing.length > 0) {
      // Off a path read ahead on the main sequence (longer than these tokens, with reads past where
      // they part): decode on the side one and keep the main one's reads for the steps after.
      const onSide = this.side !== undefined && this.main.sequence.nextTokenIndex > tokens.length && this.main.cache.hasFrom(commons[0]!);
      const path = onSide ? this.side! : this.main;
      const common = onSide ? await this.bringSide(tokens, commons[0]!, commons[1]!) : commons[0]!;
      if (onSide) this.counts.sideEvaluations++;
      const uncached = await this.evaluate(path, tokens, common, missing);
      requests.forEach((r, k) => (answers[k] ??= uncached.get(r) ?? fromPath(path, r)));
    }
    for (const path of paths) path.cache.trim(tokens.length);
    return answers.map((a) => {
      if (!a) throw new MemberError(this.memberName, "llama.cpp returned no logits");
      return a;
    });
  }

  /**
   * Readies the side sequence for `tokens`: when it is far behind the main one's common prefix, the
   * main one's KV cells are copied over (reads at positions where the two differed are dropped).
   * Returns the side's common prefix with `tokens`.
   */
  private async bringSide(tokens: readonly number[], commonMain: number, commonSide: number): Promise<number> {
    const side = this.side!;
    if (commonMain - commonSide <= SIDE_COPY_GAP) return commonSide;
    side.cache.dropFrom(commonSide);
    // If the copy did not take, the side is decoded from where it stands.
    await copySequencePrefix(side.sequence, this.main.sequence, commonMain);
    return commonPrefixLength(side.sequence.contextTokens, tokens);
  }

  /**
   * Decodes from the first position a request needs (logits are kept only for what was asked) and
   * reads every asked position into the cache. Returns the answers that are not cached (a full
   * distribution of a large vocabulary, a look-up at a position with nothing else read).
   */
  private async evaluate(path: SequencePath, tokens: readonly number[], common: number, missing: readonly PositionRequest[]): Promise<Map<PositionRequest, SparseDistribution>> {
    const { sequence, cache } = path;
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
        once: (ask?.once ?? true) && r.once === true,
      });
    }
    const start = Math.min(common, ...asks.keys());
    // Evaluated tokens from `common` on are replaced: what was read there is of another text.
    cache.dropFrom(common);
    if (start < sequence.nextTokenIndex) {
      await sequence.eraseContextTokenRanges([{ start, end: sequence.nextTokenIndex }]);
    }
    if (path.direct) return this.evaluateDirect(path.direct, cache, tokens.slice(start) as Token[], start, asks);
    const input = tokens.slice(start).map((id, i) => {
      const ask = asks.get(start + i);
      return ask ? ([id as Token, { generateNext: this.generateNext(ask) }] as [Token, { generateNext: GenerateNext }]) : (id as Token);
    });
    const results = this.exactReads ? await this.oneByOne(sequence, input) : await sequence.controlledEvaluate(input);
    this.counts.decoded += asks.size;
    this.counts.evaluations++;
    const uncached = new Map<PositionRequest, SparseDistribution>();
    for (const ask of asks.values()) {
      const next = results[ask.position - start]?.next;
      if (this.rows || (!ask.full && !ask.extendOnly)) {
        if (!next?.logits || next.totalLogitWeight === undefined) throw new MemberError(this.memberName, "llama.cpp returned no logits");
        cache.set(ask.position, this.rows ? rowRead(next.logits, next.totalLogitWeight) : topRead(next.logits, ask.topK, next.totalLogitWeight));
        continue;
      }
      if (ask.extendOnly && next?.logits) cache.addLookups(ask.position, next.logits);
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

  /** `evaluate` through the patched binding: every asked position read as a whole row in node-llama-cpp's batch callback. */
  private async evaluateDirect(
    direct: DirectEvaluate,
    cache: PositionReadCache,
    tokens: readonly Token[],
    start: number,
    asks: ReadonlyMap<number, PositionAsk>,
  ): Promise<Map<PositionRequest, SparseDistribution>> {
    const rawAsks = new Map<number, RawPositionAsk>();
    // A position asked once on a large vocabulary is read as its top and ids (a row would be copied for nothing).
    const rowFor = (ask: PositionAsk) => ask.full || !ask.once || this.vocabulary.size <= ROW_VOCABULARY;
    for (const ask of asks.values()) {
      const row = rowFor(ask);
      rawAsks.set(ask.position - start, { topK: row ? Math.max(ROW_TOP, ask.topK) : ask.topK, ids: Uint32Array.from(ask.extraIds), row });
    }
    const reads = this.exactReads ? await this.directOneByOne(direct, tokens, rawAsks) : await direct(tokens, rawAsks);
    this.counts.decoded += asks.size;
    this.counts.evaluations++;
    for (const ask of asks.values()) {
      const raw = reads[ask.position - start];
      if (!raw || (rowFor(ask) && !raw.row)) throw new MemberError(this.memberName, "llama.cpp returned no logits");
      cache.set(ask.position, raw.row ? directRowRead({ ...raw, row: raw.row }) : directTopRead(raw));
    }
    // Every asked position is now a kept read that answers its requests.
    return new Map();
  }

  private async directOneByOne(direct: DirectEvaluate, tokens: readonly Token[], asks: ReadonlyMap<number, RawPositionAsk>): Promise<(RawPositionRead | undefined)[]> {
    const reads: (RawPositionRead | undefined)[] = [];
    for (let i = 0; i < tokens.length; i++) {
      const ask = asks.get(i);
      reads.push((await direct([tokens[i]!], ask ? new Map([[0, ask]]) : new Map()))[0]);
    }
    return reads;
  }

  /** One llama.cpp decode per token: a position's logits then never depend on what was batched with it. */
  private async oneByOne(sequence: LlamaContextSequence, input: Parameters<LlamaContextSequence["controlledEvaluate"]>[0]): ReturnType<LlamaContextSequence["controlledEvaluate"]> {
    const results: Awaited<ReturnType<LlamaContextSequence["controlledEvaluate"]>> = [];
    for (const item of input) results.push((await sequence.controlledEvaluate([item]))[0]);
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
