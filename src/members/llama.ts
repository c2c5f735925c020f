import {
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import type { Vocabulary } from "../tokens/vocabulary.js";
import { extendWithLogits, fromFullProbabilities, fromLogits, isExtensible, type SparseDistribution } from "./distribution.js";
import { ggufModelProblem, readGgufHeader, type GgufHeader } from "./gguf-header.js";
import { MemberTokenizer, ggufTokenizerSource } from "./member-tokenizer.js";
import { MemberError, type Member, type MemberPlacement, type PositionRequest, type Prompt, type PromptTokens, type TokenRun } from "./member.js";
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
  /** The llama.cpp runtime; default: the process's (see members/runtime.ts), the CPU when none is loaded. */
  readonly runtime?: Runtime;
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
    private readonly sequence: LlamaContextSequence,
    private readonly tokenizer: MemberTokenizer,
  ) {
    this.vocabulary = tokenizer.vocabulary;
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
      const context = await model.createContext({ contextSize, threads, sequences: 1 });
      const tokenizer = new MemberTokenizer(options.name, ggufTokenizerSource(model), options.chatTemplate);
      const placement: MemberPlacement = {
        device: model.gpuLayers > 0 ? runtime.device : "cpu",
        gpuLayers: model.gpuLayers,
        totalLayers: model.fileInsights.totalLayers,
        threads,
      };
      return new LlamaMember(options.name, context.contextSize, placement, model, context, context.getSequence(), tokenizer);
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

  async distributions(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]> {
    if (tokens.length > this.contextSize) {
      throw new MemberError(
        this.name,
        `the text is ${tokens.length} tokens but this member's context holds ${this.contextSize}; ` +
          `shorten the prompt or raise contextSize (up to the model's training context, ${this.model.trainContextSize})`,
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
        if (!next?.probabilities) throw new MemberError(this.name, "llama.cpp returned no probabilities");
        return fromFullProbabilities(next.probabilities, request.topK);
      }
      if (request.extend && isExtensible(request.extend)) {
        return next?.logits ? extendWithLogits(request.extend, next.logits) : request.extend;
      }
      if (!next?.logits || next.totalLogitWeight === undefined) {
        throw new MemberError(this.name, "llama.cpp returned no logits");
      }
      return fromLogits(next.logits, next.totalLogitWeight, request.topK, this.vocabulary.size);
    });
  }

  async dispose(): Promise<void> {
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
