import { loadLlama } from "./llama.js";
import { MemberTokenizer, ggufTokenizerSource } from "./member-tokenizer.js";
import { HfTokenizerError, hfTokenizerSource, isHfTokenizerPath } from "./hf-tokenizer.js";
import type { Vocabulary } from "../tokens/vocabulary.js";
import type { SparseDistribution } from "./distribution.js";
import { MemberError, MemberUnavailableError, type Member, type PositionRequest, type Prompt, type PromptTokens, type TokenRun } from "./member.js";

export type RemoteApi = "vllm" | "llamacpp";

export interface RemoteMemberOptions {
  readonly name: string;
  /** Base URL of the server, e.g. http://gpu-box:8000 (a trailing /v1 is accepted). */
  readonly url: string;
  readonly api?: RemoteApi;
  /** The model name the server knows; default: the first model it lists. */
  readonly model?: string;
  /**
   * The served model's tokenizer, so tokenization stays here and exact: a GGUF with its vocabulary
   * (a vocab-only GGUF will do), or its Hugging Face `tokenizer.json` (or the folder holding it).
   */
  readonly tokenizerPath: string;
  readonly chatTemplate?: string;
  /** Context size; default: what the server reports. */
  readonly contextSize?: number;
  readonly timeoutMs?: number;
  readonly retries?: number;
  /** Most log-probabilities the server returns per position (vLLM's --max-logprobs, default 20). */
  readonly maxLogprobs?: number;
  /** API key sent as a bearer token. */
  readonly apiKey?: string;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_RETRIES = 2;
const BACKOFF_MS = 200;
/** Answers kept for repeated requests (a step asks for at most a few positions, a few times). */
const RECENT_ANSWERS = 16;

/** A failed HTTP exchange: `retry` when another try may succeed (network, timeout, 5xx, 429). */
class ExchangeError extends Error {
  constructor(message: string, readonly retry: boolean, readonly unreachable: boolean) {
    super(message);
  }
}

/**
 * A member whose model runs on an OpenAI-compatible server (vLLM or llama.cpp's server). Each
 * distribution is one request: the member's token ids as the prompt, one token to generate, and
 * the top-k log-probabilities by token id. The listed probabilities are exact; what the server
 * does not list is bounded by the smallest listed one and by the mass left over. A `full`
 * request gets as many log-probabilities as the server allows (`maxLogprobs`), which is the whole
 * vocabulary only when the server is started to allow it (vLLM: --max-logprobs ≥ vocabulary size).
 * Extra ids that are not in the top list stay unlisted (covered by the bounds), so a request to
 * `extend` an earlier answer returns that answer unchanged.
 */
export class RemoteMember implements Member {
  readonly vocabulary: Vocabulary;
  private readonly base: string;
  private readonly recent = new Map<string, Promise<SparseDistribution>>();

  private constructor(
    readonly name: string,
    readonly contextSize: number,
    private readonly options: RemoteMemberOptions,
    private readonly api: RemoteApi,
    private readonly servedModel: string | undefined,
    private readonly tokenizer: MemberTokenizer,
    private readonly release: () => Promise<void>,
  ) {
    this.vocabulary = tokenizer.vocabulary;
    this.base = baseUrl(options.url);
  }

  /** Loads the local tokenizer, asks the server for its model and context size, and checks both tokenize alike. */
  static async connect(options: RemoteMemberOptions): Promise<RemoteMember> {
    const { tokenizer, release } = await loadTokenizer(options);
    try {
      const api = options.api ?? "vllm";
      const probe = new RemoteMember(options.name, options.contextSize ?? 0, options, api, options.model, tokenizer, release);
      const { servedModel, contextSize } = await probe.describeServer();
      const member = new RemoteMember(options.name, options.contextSize ?? contextSize, options, api, servedModel, tokenizer, release);
      await member.checkTokenizer();
      return member;
    } catch (error) {
      await release();
      throw error;
    }
  }

  tokenizeContinuation(bytes: string): TokenRun {
    return this.tokenizer.tokenizeContinuation(bytes);
  }

  promptTokens(prompt: Prompt): PromptTokens {
    // 0 while the server has not said yet (connecting).
    return this.tokenizer.promptTokens(prompt, this.contextSize > 0 ? this.contextSize : Infinity);
  }

  async distributions(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]> {
    const limit = this.options.maxLogprobs ?? 20;
    return Promise.all(
      requests.map(async (request) => {
        const wanted = request.full ? this.vocabulary.size : request.topK;
        const k = Math.max(1, Math.min(wanted, limit, this.vocabulary.size));
        // The server lists only its top k, never chosen ids: asking again would repeat the same list.
        if (request.extend && !request.full && request.extend.topCount >= k) return request.extend;
        return this.answer(tokens.slice(0, request.position + 1), k);
      }),
    );
  }

  async dispose(): Promise<void> {
    await this.release();
  }

  /**
   * One position's top-k, remembered for a while: when the server caps k (vLLM's --max-logprobs),
   * GaC's requests for more at the same position would fetch the same list again.
   */
  private answer(prompt: readonly number[], k: number): Promise<SparseDistribution> {
    const key = `${k}:${prompt.join(",")}`;
    let answer = this.recent.get(key);
    if (answer === undefined) {
      answer = this.topLogprobs(prompt, k).then((logprobs) => sparseFromLogprobs(logprobs, k, this.vocabulary.size));
      answer.catch(() => this.recent.delete(key));
      this.recent.set(key, answer);
      if (this.recent.size > RECENT_ANSWERS) this.recent.delete(this.recent.keys().next().value!);
    }
    return answer;
  }

  /** Top-k (id, log-probability) pairs of the token after `prompt`, in the server's dialect. */
  private async topLogprobs(prompt: readonly number[], k: number): Promise<Map<number, number>> {
    if (this.api === "llamacpp") {
      const body = await this.post("/completion", {
        prompt,
        n_predict: 1,
        n_probs: k,
        cache_prompt: true,
        // llama.cpp: a negative temperature samples greedily and reports the plain softmax of the logits.
        temperature: -1,
        post_sampling_probs: false,
      });
      const step = (body as { completion_probabilities?: { top_logprobs?: { id: number; logprob: number }[] }[] }).completion_probabilities?.[0];
      if (!step?.top_logprobs) throw this.badAnswer("no completion_probabilities[0].top_logprobs in the answer of /completion");
      return new Map(step.top_logprobs.map((t) => [t.id, t.logprob]));
    }
    const body = await this.post("/v1/completions", {
      model: this.servedModel,
      prompt,
      max_tokens: 1,
      temperature: 0,
      logprobs: k,
      return_tokens_as_token_ids: true,
    });
    const top = (body as { choices?: { logprobs?: { top_logprobs?: (Record<string, number> | null)[] } }[] }).choices?.[0]?.logprobs?.top_logprobs?.[0];
    if (!top) throw this.badAnswer("no choices[0].logprobs.top_logprobs[0] in the answer of /v1/completions");
    const result = new Map<number, number>();
    for (const [key, logprob] of Object.entries(top)) {
      const match = /^token_id:(\d+)$/.exec(key);
      if (!match) throw this.badAnswer(`log-probabilities are keyed by text ("${key}"), not "token_id:N": the server ignores return_tokens_as_token_ids; use vLLM ≥ 0.6`);
      result.set(Number(match[1]), logprob);
    }
    return result;
  }

  private async describeServer(): Promise<{ servedModel: string | undefined; contextSize: number }> {
    if (this.api === "llamacpp") {
      const props = (await this.get("/props")) as { default_generation_settings?: { n_ctx?: number } };
      const nCtx = props.default_generation_settings?.n_ctx;
      if (typeof nCtx !== "number") throw this.badAnswer("GET /props has no default_generation_settings.n_ctx");
      return { servedModel: undefined, contextSize: nCtx };
    }
    const list = (await this.get("/v1/models")) as { data?: { id: string; max_model_len?: number }[] };
    const models = list.data ?? [];
    const card = this.options.model === undefined ? models[0] : models.find((m) => m.id === this.options.model);
    if (!card) {
      const known = models.map((m) => m.id).join(", ") || "none";
      throw new MemberError(this.name, `the server at ${this.options.url} does not serve model '${this.options.model ?? "(any)"}' (it serves: ${known}); fix \`model\``);
    }
    const contextSize = this.options.contextSize ?? card.max_model_len;
    if (typeof contextSize !== "number") throw new MemberError(this.name, `the server reports no max_model_len for '${card.id}'; set contextSize for this member`);
    return { servedModel: card.id, contextSize };
  }

  /** A tokenizer file that is not the served model's would make every distribution wrong: compare on a probe text. */
  private async checkTokenizer(): Promise<void> {
    const probe = "Hello world, 1234 tokens!";
    const local = this.tokenizer.promptTokens({ text: probe }).text.ids;
    let remote: number[] | undefined;
    if (this.api === "llamacpp") {
      remote = ((await this.post("/tokenize", { content: probe, add_special: false })) as { tokens?: number[] }).tokens;
    } else {
      remote = ((await this.post("/tokenize", { model: this.servedModel, prompt: probe, add_special_tokens: false })) as { tokens?: number[] }).tokens;
    }
    if (!Array.isArray(remote)) throw this.badAnswer("/tokenize answered without `tokens`");
    if (remote.join(",") !== local.join(",")) {
      throw new MemberError(
        this.name,
        `the tokenizer file ${this.options.tokenizerPath} does not tokenize like the served model (${JSON.stringify(probe)}: here [${local.join(",")}], server [${remote.join(",")}]); point \`tokenizer\` at the served model's GGUF or its vocab GGUF`,
      );
    }
  }

  private get(path: string): Promise<unknown> {
    return this.exchange(path, { method: "GET" });
  }

  private post(path: string, body: unknown): Promise<unknown> {
    return this.exchange(path, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  }

  /** One request with timeout, retried with exponential backoff when the failure may pass. */
  private async exchange(path: string, init: RequestInit): Promise<unknown> {
    const retries = this.options.retries ?? DEFAULT_RETRIES;
    const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    let last: ExchangeError | undefined;
    let attempts = 0;
    for (let attempt = 0; attempt <= retries; attempt++) {
      attempts++;
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, BACKOFF_MS * 2 ** (attempt - 1)));
      try {
        return await this.once(path, { ...init, headers });
      } catch (error) {
        if (!(error instanceof ExchangeError)) throw error;
        last = error;
        if (!error.retry) break;
      }
    }
    const tries = attempts > 1 ? ` (after ${attempts} tries)` : "";
    throw new MemberUnavailableError(this.name, `${init.method} ${this.base}${path}: ${last!.message}${tries}`, last!.unreachable);
  }

  private async once(path: string, init: RequestInit): Promise<unknown> {
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let response: Response;
    try {
      response = await fetch(this.base + path, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      const e = error as Error & { cause?: { code?: string; message?: string; errors?: { code?: string }[] } };
      if (e.name === "TimeoutError") throw new ExchangeError(`no answer within ${timeoutMs} ms (raise timeoutMs)`, true, true);
      // Node reports a refused connection tried over IPv4 and IPv6 as an AggregateError.
      const code = e.cause?.code ?? e.cause?.errors?.find((x) => x.code)?.code;
      if (e.cause?.message === "bad port") {
        throw new ExchangeError("Node's fetch refuses this port (a port the Fetch standard blocks); run the server on another port", false, true);
      }
      throw new ExchangeError(`cannot reach the server: ${code ?? e.cause?.message ?? e.message}`, true, true);
    }
    const text = await response.text();
    if (!response.ok) {
      const retry = response.status >= 500 || response.status === 429;
      throw new ExchangeError(`HTTP ${response.status}: ${text.slice(0, 300)}`, retry, response.status === 503);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new ExchangeError(`the answer is not JSON: ${text.slice(0, 120)}`, false, false);
    }
  }

  private badAnswer(what: string): MemberUnavailableError {
    return new MemberUnavailableError(this.name, `${what} (is this a ${this.api === "vllm" ? "vLLM" : "llama.cpp"} server? set \`api\`)`, false);
  }
}

/** The member's local tokenizer: a tokenizer.json (read in JS), or a GGUF loaded vocabulary-only by llama.cpp. */
async function loadTokenizer(options: RemoteMemberOptions): Promise<{ tokenizer: MemberTokenizer; release: () => Promise<void> }> {
  if (isHfTokenizerPath(options.tokenizerPath)) {
    try {
      const source = hfTokenizerSource(options.tokenizerPath);
      return { tokenizer: new MemberTokenizer(options.name, source, options.chatTemplate), release: async () => {} };
    } catch (error) {
      if (error instanceof HfTokenizerError) throw new MemberError(options.name, error.message);
      throw error;
    }
  }
  const llama = await loadLlama();
  const model = await llama.loadModel({ modelPath: options.tokenizerPath, vocabOnly: true }).catch((error: Error) => {
    throw new MemberError(options.name, `cannot load tokenizer ${options.tokenizerPath}: ${error.message}; point \`tokenizer\` at a GGUF file or a tokenizer.json`);
  });
  try {
    return { tokenizer: new MemberTokenizer(options.name, ggufTokenizerSource(model), options.chatTemplate), release: () => model.dispose() };
  } catch (error) {
    // A vocabulary chorus cannot read exactly: nothing else holds the model.
    await model.dispose();
    throw error;
  }
}

/** The server's root: `http://h:8000/v1/` and `http://h:8000` both give `http://h:8000`. */
function baseUrl(url: string): string {
  return url.replace(/\/+$/, "").replace(/\/v1$/, "");
}

/**
 * A sparse distribution from a server's top log-probabilities: the k most probable are exact;
 * every unlisted token is at most the k-th probability and all of them together are the rest.
 */
export function sparseFromLogprobs(logprobs: ReadonlyMap<number, number>, k: number, vocabularySize: number): SparseDistribution {
  const entries = [...logprobs.entries()].filter(([id]) => id >= 0 && id < vocabularySize).sort((a, b) => b[1] - a[1]);
  const ids = Int32Array.from(entries, ([id]) => id);
  const probs = Float64Array.from(entries, ([, lp]) => Math.exp(lp));
  const topCount = Math.min(k, entries.length);
  const listed = probs.reduce((sum, p) => sum + p, 0);
  const complete = entries.length >= vocabularySize;
  const unlistedMass = complete ? 0 : Math.max(0, 1 - listed);
  const kth = topCount > 0 ? probs[topCount - 1]! : 1;
  return { ids, probs, topCount, unlistedMax: complete ? 0 : Math.min(kth, unlistedMass), unlistedMass, complete };
}
