import { loadLlama } from "./llama.js";
import { MemberTokenizer, ggufTokenizerSource } from "./member-tokenizer.js";
import { HfTokenizerError, hfTokenizerSource, isHfTokenizerPath } from "./hf-tokenizer.js";
import type { Vocabulary } from "../tokens/vocabulary.js";
import type { SparseDistribution } from "./distribution.js";
import { tokensExtending } from "../tokens/prefix-index.js";
import { MemberError, MemberRejectedError, type Member, type MemberSession, type PositionRequest, type Prompt, type PromptTokens, type TokenRun } from "./member.js";
import { RemoteHttp } from "./remote-http.js";
import { API_NAMES, type Anchor, type PositionLogprobs, type RemoteApi, type RemoteDialect } from "./remote-dialect.js";
import { LlamaCppDialect } from "./remote-llamacpp.js";
import { VllmDialect } from "./remote-vllm.js";

export type { RemoteApi } from "./remote-dialect.js";

export interface RemoteMemberOptions {
  readonly name: string;
  /** Base URL of the server, e.g. http://gpu-box:8000 (a trailing /v1 is accepted). */
  readonly url: string;
  /** The server's kind; left out, chorus asks the server (llama.cpp answers GET /props, vLLM lists max_model_len). */
  readonly api?: RemoteApi;
  /** The model name the server knows (vLLM); default: the first model it lists. */
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
  /** Most log-probabilities the server lists per position (vLLM's --max-logprobs, default 20; llama.cpp: the vocabulary). */
  readonly maxLogprobs?: number;
  /** API key sent as a bearer token. */
  readonly apiKey?: string;
}

/** Most tokens extending a healed text looked up at one position when the server's list is capped. */
const HEALED_LOOKUPS = 512;

/**
 * A step's first list, where the engine's bound proves the choice (see `Member.firstFetch`): the
 * server writes each entry as JSON (llama-server ~10 µs each on loopback, bench/remote-profile.ts),
 * and 32 seldom leaves the bound short: ts656k next to s260k, GaC with healing, asks again on 39
 * of 234 steps (15 at 128), and one member alone never does.
 */
const FIRST_FETCH = 32;

/** Answers kept for repeated requests (GaC asks again at the same place when a capped list cannot grow). */
const RECENT_ANSWERS = 16;

/**
 * A member whose model runs on an inference server (vLLM, or llama.cpp's llama-server). Each
 * evaluation is one request (see the dialects) for the top-k log-probabilities by token id at the
 * positions asked, plus the exact probability of the next token at every position but the last
 * (the healed path). The listed probabilities are exact; what the server does not list is bounded
 * by the smallest listed one and by the mass left over. Ids asked for by `extend` that the list
 * left out are looked up one by one (llama.cpp) or in one request (vLLM's `logprob_token_ids`).
 */
export class RemoteMember implements Member {
  readonly vocabulary: Vocabulary;
  readonly firstFetch = FIRST_FETCH;
  private readonly recent = new Map<string, Promise<unknown>>();

  private constructor(
    readonly name: string,
    readonly contextSize: number,
    private readonly options: RemoteMemberOptions,
    readonly dialect: RemoteDialect,
    private readonly tokenizer: MemberTokenizer,
    private readonly release: () => Promise<void>,
  ) {
    this.vocabulary = tokenizer.vocabulary;
  }

  /** Which server this is, which model it serves, its context size; then a check that it tokenizes as the local tokenizer does. */
  static async connect(options: RemoteMemberOptions): Promise<RemoteMember> {
    const loaded = await loadTokenizer(options);
    const tokenizer = loaded.tokenizer;
    const http = new RemoteHttp(options.name, baseUrl(options.url), { timeoutMs: options.timeoutMs, retries: options.retries, apiKey: options.apiKey });
    const release = async () => {
      http.close();
      await loaded.release();
    };
    try {
      const { dialect, contextSize } = await identifyServer(http, options, tokenizer.vocabulary.size);
      const member = new RemoteMember(options.name, contextSize, options, dialect, tokenizer, release);
      await member.checkTokenizer();
      return member;
    } catch (error) {
      await release();
      throw error;
    }
  }

  /** The server's kind, as given or detected. */
  get api(): RemoteApi {
    return this.dialect.api;
  }

  tokenizeContinuation(bytes: string): TokenRun {
    return this.tokenizer.tokenizeContinuation(bytes);
  }

  promptTokens(prompt: Prompt): PromptTokens {
    // 0 while the server has not said yet (connecting).
    return this.tokenizer.promptTokens(prompt, this.contextSize > 0 ? this.contextSize : Infinity);
  }

  /** Stateless HTTP: a session reads through the member itself (the server keeps its own caches per slot). */
  async openSession(signal?: AbortSignal): Promise<MemberSession> {
    signal?.throwIfAborted();
    return { distributions: (tokens, requests) => this.distributions(tokens, requests), close: async () => {} };
  }

  async distributions(tokens: readonly number[], requests: readonly PositionRequest[]): Promise<SparseDistribution[]> {
    if (tokens.length > this.contextSize) {
      throw new MemberError(this.name, `the text is ${tokens.length} tokens but this member's context holds ${this.contextSize}; shorten the prompt or raise the server's context size`);
    }
    const size = this.vocabulary.size;
    const fresh = requests.filter((r) => !r.extend);
    const answers = new Map<number, PositionLogprobs>();
    const queries: { position: number; ids: number[]; anchor: Anchor }[] = [];
    const valid = (id: number) => Number.isInteger(id) && id >= 0 && id < size;
    let k = 1;
    if (fresh.length > 0) {
      const wanted = Math.max(...fresh.map((r) => (r.full ? size : r.topK)));
      k = Math.max(1, Math.min(wanted, this.dialect.maxListed, size));
      const positions = [...new Set(fresh.map((r) => r.position))].sort((a, b) => a - b);
      const read = await this.read(tokens, positions, k);
      positions.forEach((p, i) => answers.set(p, read[i]!));
      const last = positions[positions.length - 1]!;
      const healed = k < wanted && positions.length > 1 ? this.healedSpellings(tokens, positions) : undefined;
      for (const request of fresh) {
        const answer = answers.get(request.position)!;
        const ids = new Set<number>();
        // The next token of a healed path weighs that path: always exact.
        if (request.position < last) ids.add(tokens[request.position + 1]!);
        // A capped list leaves out ids the caller needs exactly, and the tokens that spell the
        // healed candidates, whose mass weighs every one of them.
        if (k < wanted) {
          for (const id of request.extraIds ?? []) ids.add(id);
          for (const id of healed?.get(request.position) ?? []) ids.add(id);
        }
        const missing = [...ids].filter((id) => valid(id) && !answer.top.has(id) && !answer.extra.has(id));
        if (missing.length > 0) queries.push({ position: request.position, ids: missing, anchor: anchorOf(answer) });
      }
    }
    for (const request of requests) {
      if (!request.extend || request.extend.complete) continue;
      const listed = new Set(request.extend.ids);
      const missing = [...new Set(request.extraIds ?? [])].filter((id) => valid(id) && !listed.has(id));
      if (missing.length > 0) queries.push({ position: request.position, ids: missing, anchor: { id: request.extend.ids[0]!, logprob: Math.log(request.extend.probs[0]!) } });
    }
    const found = queries.length > 0 ? await this.lookUp(tokens, queries) : [];
    const foundAt = new Map<number, Map<number, number>>();
    queries.forEach((q, i) => foundAt.set(q.position, new Map([...(foundAt.get(q.position) ?? []), ...found[i]!])));
    return requests.map((request) => {
      const more = foundAt.get(request.position) ?? new Map<number, number>();
      if (request.extend) return more.size > 0 ? extendWithLogprobs(request.extend, more) : request.extend;
      const answer = answers.get(request.position)!;
      return sparseFromLogprobs(answer.top, k, size, new Map([...answer.extra, ...more]));
    });
  }

  async dispose(): Promise<void> {
    await this.release();
  }

  /** One read of a step's positions, remembered for a while (a capped list asked again would repeat itself). */
  private read(tokens: readonly number[], positions: readonly number[], k: number): Promise<PositionLogprobs[]> {
    return this.remember(`read ${k}:${positions.join(",")}:${tokens.join(",")}`, () => this.dialect.read(tokens, positions, k));
  }

  /** Look-ups of a step, in one go (vLLM takes them in one request), remembered like reads. */
  private lookUp(tokens: readonly number[], queries: readonly { position: number; ids: number[]; anchor: Anchor }[]): Promise<Map<number, number>[]> {
    const key = `ids ${queries.map((q) => `${q.position}:${q.ids.join(",")}`).join(";")}:${tokens.join(",")}`;
    return this.remember(key, () => this.dialect.lookUp(queries.map((q) => ({ prompt: tokens.slice(0, q.position + 1), ids: q.ids, anchor: q.anchor }))));
  }

  /**
   * The tokens healing over the tail after `positions[0]` can take, by position: at each healed
   * position the tokens spelling the rest of the tail or extending it, and, for every such token
   * that goes past the tail by some text, the token spelling the same text at each later position
   * (both paths end in that candidate, and its probability is their sum).
   */
  private healedSpellings(tokens: readonly number[], positions: readonly number[]): Map<number, Set<number>> {
    const vocab = this.vocabulary;
    const last = positions[positions.length - 1]!;
    const rest = (p: number) => tokens.slice(p + 1, last + 1).map((id) => vocab.surfaces[id] ?? "").join("");
    const byPosition = new Map(positions.map((p) => [p, new Set<number>()]));
    for (const [level, position] of positions.entries()) {
      const own = rest(position);
      if (own.length === 0) continue;
      const same = vocab.bySurface.get(own);
      if (same !== undefined) byPosition.get(position)!.add(same);
      for (const id of tokensExtending(vocab, own, HEALED_LOOKUPS).ids) {
        byPosition.get(position)!.add(id);
        const beyond = vocab.surfaces[id]!.slice(own.length);
        for (const later of positions.slice(level + 1)) {
          const spelled = vocab.bySurface.get(rest(later) + beyond);
          if (spelled !== undefined) byPosition.get(later)!.add(spelled);
        }
      }
    }
    return byPosition;
  }

  private remember<T>(key: string, ask: () => Promise<T>): Promise<T> {
    let answer = this.recent.get(key) as Promise<T> | undefined;
    if (answer === undefined) {
      answer = ask();
      answer.catch(() => this.recent.delete(key));
      this.recent.set(key, answer);
      if (this.recent.size > RECENT_ANSWERS) this.recent.delete(this.recent.keys().next().value!);
    }
    return answer;
  }

  /** A tokenizer file that is not the served model's would make every distribution wrong: compare on a probe text. */
  private async checkTokenizer(): Promise<void> {
    const probe = "Hello world, 1234 tokens!";
    const local = this.tokenizer.promptTokens({ text: probe }).text.ids;
    const remote = await this.dialect.tokenize(probe);
    if (remote.join(",") !== local.join(",")) {
      throw new MemberError(
        this.name,
        `the tokenizer file ${this.options.tokenizerPath} does not tokenize like the served model (${JSON.stringify(probe)}: here [${local.join(",")}], server [${remote.join(",")}]); point \`tokenizer\` at the served model's GGUF or its vocab GGUF`,
      );
    }
  }
}

/**
 * Asks the server what it is: llama.cpp's llama-server answers GET /props with its context per
 * slot; vLLM lists its models with `max_model_len` at GET /v1/models. A given `api` that the
 * server contradicts, or a server that is neither, is refused with the setting to change.
 */
async function identifyServer(http: RemoteHttp, options: RemoteMemberOptions, vocabularySize: number): Promise<{ dialect: RemoteDialect; contextSize: number }> {
  const propsProbe = await http.probe("/props");
  const props = propsProbe.ok ? LlamaCppDialect.readProps(propsProbe.body) : undefined;
  const modelsProbe = await http.probe("/v1/models");
  const cards = modelsProbe.ok ? VllmDialect.readModels(modelsProbe.body) : undefined;
  const detected: RemoteApi | undefined = props ? "llamacpp" : cards?.some((c) => typeof c.max_model_len === "number") ? "vllm" : undefined;
  const said = (probe: typeof propsProbe, what: string) => (probe.ok ? `answered without ${what}` : `answered ${probe.message}`);
  const evidence = `GET /props ${props ? "describes a llama.cpp server" : said(propsProbe, "default_generation_settings.n_ctx")}; GET /v1/models ${cards ? (detected === "vllm" ? "lists max_model_len" : "lists no max_model_len") : said(modelsProbe, "a `data` list")}`;
  if (options.api !== undefined && detected !== undefined && detected !== options.api) {
    throw new MemberRejectedError(options.name, `the server at ${http.base} is ${API_NAMES[detected]}, not ${API_NAMES[options.api]} (${evidence}): set \`api: ${detected}\`, or leave \`api\` out to detect it`);
  }
  const api = options.api ?? detected;
  if (api === undefined) {
    throw new MemberRejectedError(options.name, `cannot tell which server answers at ${http.base} (${evidence}); chorus speaks vLLM (\`api: vllm\`) and llama.cpp's llama-server (\`api: llamacpp\`): check \`url\`, or set \`api\` if the server is one of them`);
  }
  if (api === "llamacpp") {
    if (!props) {
      const answer = propsProbe.ok ? "answered without default_generation_settings.n_ctx" : propsProbe.message;
      throw new MemberRejectedError(options.name, `GET ${http.base}/props: ${answer}, where llama.cpp's llama-server describes itself; check \`url\`, \`api\` and \`apiKeyEnv\``);
    }
    const served = (cards?.[0] as { meta?: { n_vocab?: unknown } } | undefined)?.meta?.n_vocab;
    if (typeof served === "number" && served !== vocabularySize) {
      throw new MemberError(options.name, `the served model has ${served} tokens but the tokenizer file ${options.tokenizerPath} has ${vocabularySize}; point \`tokenizer\` at the served model's GGUF`);
    }
    return { dialect: new LlamaCppDialect(http, props.modelName, options.maxLogprobs ?? vocabularySize), contextSize: options.contextSize ?? props.contextSize };
  }
  if (!cards) {
    const answer = modelsProbe.ok ? "answered without a `data` list of models" : modelsProbe.message;
    throw new MemberRejectedError(options.name, `GET ${http.base}/v1/models: ${answer}; check \`url\`, \`api\` and \`apiKeyEnv\``);
  }
  const card = options.model === undefined ? cards[0] : cards.find((m) => m.id === options.model);
  if (!card) {
    const known = cards.map((m) => m.id).join(", ") || "none";
    throw new MemberError(options.name, `the server at ${options.url} does not serve model '${options.model ?? "(any)"}' (it serves: ${known}); fix \`model\``);
  }
  const contextSize = options.contextSize ?? card.max_model_len;
  if (typeof contextSize !== "number") throw new MemberError(options.name, `the server reports no max_model_len for '${card.id}' (${evidence}); set contextSize for this member, or \`api\` if it is not vLLM`);
  return { dialect: new VllmDialect(http, card.id, options.maxLogprobs ?? 20), contextSize };
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
 * A sparse distribution from a server's answer at one position: its `k` most probable tokens are
 * exact, and so are `extra` ids (the forced next token, looked-up ids); every unlisted token is at
 * most the k-th probability, and all of them together are the mass left over.
 */
export function sparseFromLogprobs(
  top: ReadonlyMap<number, number>,
  k: number,
  vocabularySize: number,
  extra: ReadonlyMap<number, number> = new Map(),
): SparseDistribution {
  const valid = ([id]: [number, number]) => Number.isInteger(id) && id >= 0 && id < vocabularySize;
  // vLLM adds the sampled token to its top list: sorted, it falls after the k most probable.
  const ranked = [...top].filter(valid).sort((a, b) => b[1] - a[1]);
  const more = [...extra].filter((entry) => valid(entry) && !top.has(entry[0]));
  const entries = ranked.concat(more);
  const ids = Int32Array.from(entries, ([id]) => id);
  const probs = Float64Array.from(entries, ([, lp]) => Math.exp(lp));
  const topCount = Math.min(k, ranked.length);
  const listed = probs.reduce((sum, p) => sum + p, 0);
  const complete = ranked.length >= vocabularySize;
  const unlistedMass = complete ? 0 : Math.max(0, 1 - listed);
  const kth = topCount > 0 ? probs[topCount - 1]! : 1;
  return { ids, probs, topCount, unlistedMax: complete ? 0 : Math.min(kth, unlistedMass), unlistedMass, complete };
}

/** The most probable listed token of an answer, whose exact probability anchors look-ups relative to it. */
function anchorOf(answer: PositionLogprobs): Anchor {
  let best: [number, number] | undefined;
  for (const entry of answer.top) if (best === undefined || entry[1] > best[1]) best = entry;
  return { id: best![0], logprob: best![1] };
}

/** `base` with the exact probabilities of more ids at the same position. */
function extendWithLogprobs(base: SparseDistribution, found: ReadonlyMap<number, number>): SparseDistribution {
  const listed = new Set(base.ids);
  const added = [...found].filter(([id]) => !listed.has(id));
  const ids = new Int32Array(base.ids.length + added.length);
  const probs = new Float64Array(ids.length);
  ids.set(base.ids);
  probs.set(base.probs);
  let addedMass = 0;
  added.forEach(([id, logprob], i) => {
    const p = Math.exp(logprob);
    ids[base.ids.length + i] = id;
    probs[base.ids.length + i] = p;
    addedMass += p;
  });
  return { ...base, ids, probs, unlistedMass: Math.max(0, base.unlistedMass - addedMass) };
}
