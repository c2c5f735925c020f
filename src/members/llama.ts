import {
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
} from "node-llama-cpp";
import type { Vocabulary } from "../tokens/vocabulary.js";
import type { SparseDistribution } from "./distribution.js";
import { LlamaSequenceReader } from "./llama-sequence.js";
import { ggufModelProblem, readGgufHeader, type GgufHeader } from "./gguf-header.js";
import { MemberTokenizer, ggufTokenizerSource } from "./member-tokenizer.js";
import {
  MemberError,
  type DistributionReader,
  type Member,
  type MemberPlacement,
  type MemberSession,
  type PositionRequest,
  type Prompt,
  type PromptTokens,
  type TokenRun,
} from "./member.js";
import { lentSession, SessionPool } from "./session-pool.js";
import { deviceName, loadingRuntime, loadRuntime, type Runtime } from "./runtime.js";

export interface LlamaMemberOptions {
  readonly name: string;
  readonly modelPath: string;
  /** Context size in tokens; default: the model's training context, at most 4096. */
  readonly contextSize?: number;
  /** Threads for this member's context; default 1. */
  readonly threads?: number;
  /** Chat template overriding the GGUF's `tokenizer.chat_template`. */
  readonly chatTemplate?: string;
  /** Layers on the GPU, already placed (members/gpu-fit.ts); default 0. The CPU runtime has none. */
  readonly gpuLayers?: number;
  /** Decode one token per llama.cpp call, so reads never depend on batch sizes (see EnsembleSpec.exactReads). */
  readonly exactReads?: boolean;
  /** The llama.cpp runtime; default: the process's (see members/runtime.ts), the CPU when none is loaded. */
  readonly runtime?: Runtime;
  /**
   * Sequences of the context, each with its own KV cache of `contextSize` tokens (node-llama-cpp
   * gives every sequence the whole `contextSize`, so the cache takes `parallel` times the memory):
   * how many generations read this member at once. Default 1.
   */
  readonly parallel?: number;
  /**
   * A second sequence per generation for speculation (`EnsembleSpec.speculate`): a step off the
   * batch read ahead is decoded there, so the batch stays. Doubles the KV cache; used only with
   * chorus's patched binding (direct reads). Default false.
   */
  readonly sidePaths?: boolean;
}

/** The process's llama.cpp runtime (the CPU when none is loaded yet): for tokenizers and tests. */
export async function loadLlama(): Promise<Llama> {
  return (await (loadingRuntime() ?? loadRuntime(false))).llama;
}

/** A GGUF model running in-process through node-llama-cpp. */
export class LlamaMember implements Member {
  readonly vocabulary: Vocabulary;

  private constructor(
    readonly name: string,
    readonly contextSize: number,
    readonly placement: MemberPlacement,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    sequences: readonly (readonly [LlamaContextSequence, LlamaContextSequence | undefined])[],
    private readonly tokenizer: MemberTokenizer,
    exactReads: boolean,
  ) {
    this.vocabulary = tokenizer.vocabulary;
    this.sequenceReaders = sequences.map(([sequence, side]) => new LlamaSequenceReader(name, sequence, this.vocabulary, contextSize, model.trainContextSize, exactReads, side));
    this.readers = new SessionPool<DistributionReader>(this.sequenceReaders);
  }

  private readonly sequenceReaders: readonly LlamaSequenceReader[];

  /** One reader per sequence of the context, lent to sessions. */
  private readonly readers: SessionPool<DistributionReader>;

  /** Whether reads take the patched binding's direct path (see members/direct-reads.ts). */
  get directReads(): boolean {
    return this.sequenceReaders[0]?.directReads ?? false;
  }

  /** Generations that can read this member at once: its context's sequences. */
  get parallel(): number {
    return this.readers.size;
  }

  /** Sessions open now, and callers waiting for one. */
  get sessions(): { open: number; waiting: number } {
    return { open: this.readers.lent, waiting: this.readers.queued };
  }

  static async load(options: LlamaMemberOptions): Promise<LlamaMember> {
    await assertGguf(options.name, options.modelPath);
    const runtime = options.runtime ?? (await (loadingRuntime() ?? loadRuntime(false)));
    const gpuLayers = runtime.device === "cpu" ? 0 : (options.gpuLayers ?? 0);
    const onGpu = gpuLayers > 0 ? ` with ${gpuLayers} layers on ${deviceName(runtime.device)}` : "";
    const lowerGpu = gpuLayers > 0 ? "; lower this member's gpuLayers or contextSize, or set gpu: false" : "";
    let model: LlamaModel;
    try {
      model = await runtime.llama.loadModel({ modelPath: options.modelPath, gpuLayers });
    } catch (error) {
      throw new MemberError(options.name, `cannot load model ${options.modelPath}${onGpu}: ${(error as Error).message}${lowerGpu}`);
    }
    try {
      const trainContext = model.trainContextSize;
      const contextSize = options.contextSize ?? Math.min(trainContext, 4096);
      const threads = options.threads ?? 1;
      const parallel = options.parallel ?? 1;
      if (!Number.isInteger(parallel) || parallel < 1) throw new MemberError(options.name, `parallel must be an integer ≥ 1, got ${parallel}`);
      // node-llama-cpp sizes the context at contextSize × sequences cells: each sequence holds contextSize tokens.
      const sides = options.sidePaths === true;
      const context = await model.createContext({ contextSize, threads, sequences: parallel * (sides ? 2 : 1) });
      const tokenizer = new MemberTokenizer(options.name, ggufTokenizerSource(model), options.chatTemplate);
      const placement: MemberPlacement = {
        device: model.gpuLayers > 0 ? runtime.device : "cpu",
        gpuLayers: model.gpuLayers,
        totalLayers: model.fileInsights.totalLayers,
        threads,
      };
      const sequences = Array.from({ length: parallel }, () => [context.getSequence(), sides ? context.getSequence() : undefined] as const);
      return new LlamaMember(options.name, context.contextSize, placement, model, context, sequences, tokenizer, options.exactReads ?? false);
    } catch (error) {
      await model.dispose();
      if (error instanceof MemberError) throw error;
      throw new MemberError(options.name, `cannot create a context for ${options.modelPath}${onGpu}: ${(error as Error).message}${lowerGpu}`);
    }
  }

  /** Whether the GGUF carries a chat template (otherwise chat prompts fall back to plain text). */
  get hasChatTemplate(): boolean {
    return this.tokenizer.hasChatTemplate;
  }

  tokenizeContinuation(bytes: string): TokenRun {
    return this.tokenizer.tokenizeContinuation(bytes);
  }

  promptTokens(prompt: Prompt): PromptTokens {
    return this.tokenizer.promptTokens(prompt, this.contextSize);
  }

  async openSession(signal?: AbortSignal): Promise<MemberSession> {
    const reader = await this.readers.take(signal);
    return lentSession(reader, () => this.readers.give(reader));
  }

  /** Reads through a session of its own for the call: the sequence used last, when it is free. */
  distributions(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]> {
    return this.withSession((session) => session.distributions(tokens, requests));
  }

  /** Runs `use` on a session opened for it and closes the session after, however `use` ends. */
  private async withSession<T>(use: (session: MemberSession) => Promise<T>): Promise<T> {
    const session = await this.openSession();
    try {
      return await use(session);
    } finally {
      await session.close();
    }
  }

  /**
   * Forgets every kept read and clears the sequences' KV caches, so that a repeated prompt is
   * evaluated again (benchmarks comparing runs of the same prompts). Call between generations.
   */
  async forgetReads(): Promise<void> {
    for (const reader of this.sequenceReaders) await reader.forget();
  }

  /** Positions served from kept reads, positions decoded, llama.cpp evaluations and those on side sequences, since load (benchmarks). */
  get readCounts(): { readonly served: number; readonly decoded: number; readonly evaluations: number; readonly sideEvaluations: number } {
    const sum = { served: 0, decoded: 0, evaluations: 0, sideEvaluations: 0 };
    for (const reader of this.sequenceReaders) {
      sum.served += reader.counts.served;
      sum.decoded += reader.counts.decoded;
      sum.evaluations += reader.counts.evaluations;
      sum.sideEvaluations += reader.counts.sideEvaluations;
    }
    return sum;
  }

  /** Prefetches through a session of its own for the call, as `distributions` reads (the sequence used last, when free). */
  prefetch(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<void> {
    return this.withSession((session) => session.prefetch!(tokens, requests));
  }

  async dispose(): Promise<void> {
    this.readers.close(new MemberError(this.name, "the member was disposed"));
    await this.context.dispose();
    await this.model.dispose();
  }
}

/** llama.cpp is given only files that start with the GGUF magic: a clear message instead of a loader failure. */
async function assertGguf(name: string, modelPath: string): Promise<void> {
  let header: GgufHeader;
  try {
    header = readGgufHeader(modelPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "it is a directory" : (error as Error).message;
    throw new MemberError(name, `cannot read model ${modelPath}: ${why}; check the path (relative paths start at the config file's folder)`);
  }
  const problem = ggufModelProblem(modelPath, header);
  if (problem !== undefined) throw new MemberError(name, problem);
}
