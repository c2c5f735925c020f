import { MemberRejectedError } from "./member.js";
import type { RemoteHttp } from "./remote-http.js";
import { logprobValue, type LookupQuery, type PositionLogprobs, type RemoteDialect } from "./remote-dialect.js";

/** What GET /props tells about a llama.cpp server. */
export interface LlamaCppProps {
  readonly modelName: string;
  /** Context per slot. */
  readonly contextSize: number;
}

interface Completion {
  model?: unknown;
  completion_probabilities?: { id?: unknown; logprob?: unknown; top_logprobs?: { id?: unknown; logprob?: unknown }[] }[];
}

/** Ids measured per look-up request (below the server's cap), and the bias that lifts them above every other token. */
const LOOKUP_CHUNK = 256;
const LOOKUP_BIAS = 100;

/** Lifts a healed tail's forced tokens above every other token in the sampler (the reported probabilities are the raw logits'). */
const FORCE_BIAS = 100;

/** Only what chorus reads: llama.cpp otherwise echoes the prompt and every setting. */
const RESPONSE_FIELDS = ["model", "completion_probabilities"];

/**
 * llama.cpp's llama-server (`/completion`). A step's positions are read in one request: the prompt
 * runs up to the first position and the tokens after it up to the last are generated, forced by a
 * token-id grammar (`<[id]>`; see `forcingGrammar`). The server reports each generated token's probability and the top
 * list before sampling (`post_sampling_probs: false`), so the forced tokens' own probabilities —
 * the healed path's — come out exact whatever the cap. The slot's prompt cache keeps the prefix.
 */
export class LlamaCppDialect implements RemoteDialect {
  readonly api = "llamacpp" as const;

  constructor(
    private readonly http: RemoteHttp,
    readonly servedModel: string,
    readonly maxListed: number,
  ) {}

  /** GET /props, when the server is llama.cpp's (its `default_generation_settings.n_ctx`). */
  static readProps(body: unknown): LlamaCppProps | undefined {
    const props = body as { default_generation_settings?: { n_ctx?: unknown }; model_alias?: unknown; model_path?: unknown };
    const nCtx = props?.default_generation_settings?.n_ctx;
    if (typeof nCtx !== "number") return undefined;
    const name = typeof props.model_alias === "string" ? props.model_alias : typeof props.model_path === "string" ? props.model_path : "";
    return { modelName: name, contextSize: nCtx };
  }

  async tokenize(text: string): Promise<number[]> {
    const body = (await this.http.post("/tokenize", { content: text, add_special: false })) as { tokens?: unknown };
    if (!Array.isArray(body?.tokens)) throw this.badAnswer("POST /tokenize answered without `tokens`");
    return body.tokens as number[];
  }

  async read(tokens: readonly number[], positions: readonly number[], k: number): Promise<PositionLogprobs[]> {
    const first = positions[0]!;
    const last = positions[positions.length - 1]!;
    const forced = tokens.slice(first + 1, last + 1);
    const steps = await this.complete(tokens.slice(0, first + 1), forced, k);
    return positions.map((position) => {
      const at = position - first;
      const step = steps[at]!;
      const extra = new Map<number, number>();
      if (at < forced.length) extra.set(forced[at]!, step.logprob);
      return { top: step.top, extra };
    });
  }

  /**
   * llama.cpp lists no chosen ids, but its list after sampling (`post_sampling_probs`) is the
   * softmax of the logits plus `logit_bias`: the same large bias on the ids and on the anchor puts
   * them at the top of that list with their ratios unchanged, and the anchor's known probability
   * turns the ratios into probabilities. Chunks keep each list within the server's cap.
   */
  lookUp(queries: readonly LookupQuery[]): Promise<Map<number, number>[]> {
    return Promise.all(queries.map((q) => this.lookUpOne(q)));
  }

  private async lookUpOne({ prompt, ids, anchor }: LookupQuery): Promise<Map<number, number>> {
    const chunk = Math.max(1, Math.min(this.maxListed, LOOKUP_CHUNK) - 1);
    const chunks: number[][] = [];
    for (let start = 0; start < ids.length; start += chunk) chunks.push(ids.slice(start, start + chunk).filter((id) => id !== anchor.id));
    const found = new Map<number, number>();
    if (ids.includes(anchor.id)) found.set(anchor.id, anchor.logprob);
    await Promise.all(
      chunks.map(async (group) => {
        const biased = [...group, anchor.id];
        const body = (await this.whyRefused(
          this.http.post("/completion", {
            prompt,
            n_predict: 1,
            n_probs: biased.length,
            cache_prompt: true,
            // Only the bias and a plain softmax: no truncating sampler between the logits and the list.
            samplers: ["temperature"],
            temperature: 1,
            seed: 0,
            logit_bias: biased.map((id) => [id, LOOKUP_BIAS]),
            post_sampling_probs: true,
            response_fields: RESPONSE_FIELDS,
          }),
        )) as { model?: unknown; completion_probabilities?: { top_probs?: { id?: unknown; prob?: unknown }[] }[] };
        this.checkModel(body?.model);
        const list = body?.completion_probabilities?.[0]?.top_probs;
        if (!Array.isArray(list)) throw this.badAnswer("POST /completion with post_sampling_probs answered without completion_probabilities[0].top_probs");
        const probs = new Map(list.filter((e) => typeof e.id === "number" && typeof e.prob === "number").map((e) => [e.id as number, e.prob as number]));
        const anchorProb = probs.get(anchor.id);
        if (anchorProb === undefined || !(anchorProb > 0)) throw this.badAnswer("a biased look-up left out its anchor token");
        // An id missing from the list is below the float resolution of the biased softmax: probability 0.
        for (const id of group) found.set(id, probs.has(id) && probs.get(id)! > 0 ? Math.log(probs.get(id)! / anchorProb) + anchor.logprob : -Infinity);
      }),
    );
    return found;
  }

  /**
   * Generates `forced` after `prompt` and one more token, returning for each
   * generated position the sampled token's log-probability and the top `k`.
   */
  private async complete(prompt: readonly number[], forced: readonly number[], k: number): Promise<{ logprob: number; top: Map<number, number> }[]> {
    const generated = forced.length + 1;
    const body = (await this.whyRefused(this.http.post("/completion", {
      prompt,
      n_predict: generated,
      n_probs: k,
      cache_prompt: true,
      // A negative temperature samples greedily; the probabilities reported are the plain softmax of the logits.
      temperature: -1,
      post_sampling_probs: false,
      ...(forced.length > 0 ? { grammar: forcingGrammar(forced), logit_bias: [...new Set(forced)].map((id) => [id, FORCE_BIAS]) } : {}),
      response_fields: RESPONSE_FIELDS,
    }))) as Completion;
    this.checkModel(body?.model);
    const steps = body?.completion_probabilities;
    if (!Array.isArray(steps) || steps.length < generated) {
      throw this.badAnswer(`POST /completion answered ${Array.isArray(steps) ? steps.length : "no"} completion_probabilities for ${generated} generated tokens`);
    }
    return steps.slice(0, generated).map((step, i) => {
      if (i < forced.length && step.id !== forced[i]) {
        throw this.badAnswer(`POST /completion generated token ${String(step.id)} where the grammar forces ${forced[i]} (does this llama.cpp take token grammars <[id]>?)`);
      }
      const logprob = logprobValue(step.logprob);
      if (logprob === undefined || !Array.isArray(step.top_logprobs)) throw this.badAnswer("POST /completion answered without completion_probabilities[].{logprob, top_logprobs}");
      const top = new Map<number, number>();
      for (const entry of step.top_logprobs) {
        const value = logprobValue(entry.logprob);
        if (typeof entry.id !== "number" || value === undefined) throw this.badAnswer("a top_logprobs entry has no numeric id and logprob");
        top.set(entry.id, value);
      }
      return { logprob, top };
    });
  }

  private checkModel(model: unknown): void {
    if (model !== this.servedModel) throw this.modelChanged(model);
  }

  private modelChanged(model: unknown): MemberRejectedError {
    return new MemberRejectedError(
      this.http.member,
      `the server at ${this.http.base} now serves '${String(model)}', not '${this.servedModel}' it served when chorus connected; its distributions are another model's — restart the server with the original model, or restart chorus`,
    );
  }

  /** A refused request may mean the server was restarted with another model (whose vocabulary lacks chorus's ids): ask it. */
  private async whyRefused<T>(request: Promise<T>): Promise<T> {
    try {
      return await request;
    } catch (error) {
      if (!(error instanceof MemberRejectedError)) throw error;
      const probe = await this.http.probe("/props").catch(() => undefined);
      const props = probe?.ok ? LlamaCppDialect.readProps(probe.body) : undefined;
      if (props && props.modelName !== this.servedModel) throw this.modelChanged(props.modelName);
      throw error;
    }
  }

  private badAnswer(what: string): MemberRejectedError {
    return new MemberRejectedError(this.http.member, `${what} (is this llama.cpp's llama-server? set \`api\` to the server's kind, or leave it out to detect it)`);
  }
}

/**
 * A grammar that forces `forced` and then takes any token. llama.cpp checks the sampled token
 * against a grammar alone and applies the grammar to the whole vocabulary (decoding every token)
 * only when that token is refused: a bias on the forced tokens makes them the sampled ones, and
 * the open end lets the free last token pass — on a 32k vocabulary, a third less per healed read.
 * (`!<[0]>` is any token but id 0; one that is refused only costs that one application.)
 */
export function forcingGrammar(forced: readonly number[]): string {
  return `root ::= ${forced.map((id) => `<[${id}]>`).join(" ")} !<[0]>`;
}
