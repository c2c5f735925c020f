import { MemberRejectedError } from "./member.js";
import type { RemoteHttp } from "./remote-http.js";
import { logprobValue, type LookupQuery, type PositionLogprobs, type RemoteDialect } from "./remote-dialect.js";

/** A model card of vLLM's GET /v1/models. */
export interface VllmModelCard {
  readonly id: string;
  readonly max_model_len?: number;
  readonly owned_by?: string;
}

interface CompletionChoice {
  index?: unknown;
  logprobs?: { tokens?: unknown[]; token_logprobs?: unknown[]; top_logprobs?: (Record<string, unknown> | null)[] } | null;
}

/** vLLM's limit on `logprob_token_ids` per request. */
const MAX_LOOKUP_IDS = 128;

/**
 * vLLM's OpenAI-compatible `/v1/completions` with token-id prompts. A step's positions are one
 * request, a prompt per position (vLLM batches them). The token after a healed position must be
 * weighed exactly: a one-token healed path is forced with `allowed_token_ids`, whose sampled
 * token's log-probability vLLM reports from the raw logits (its default `--logprobs-mode
 * raw_logprobs`) beside the unchanged top list; ids beyond the list are looked up for all
 * positions at once with `logprob_token_ids` where the server takes it (vLLM's OpenAI routes since
 * mid-2026), else with one `allowed_token_ids` request per id.
 */
export class VllmDialect implements RemoteDialect {
  readonly api = "vllm" as const;
  /** Whether the server honours `logprob_token_ids` (unknown until tried). */
  private lookupsById: boolean | undefined;

  constructor(
    private readonly http: RemoteHttp,
    readonly servedModel: string,
    readonly maxListed: number,
  ) {}

  /** GET /v1/models, when the server is vLLM's (cards with `max_model_len`). */
  static readModels(body: unknown): VllmModelCard[] | undefined {
    const data = (body as { data?: unknown })?.data;
    if (!Array.isArray(data)) return undefined;
    return data.filter((card): card is VllmModelCard => typeof (card as VllmModelCard)?.id === "string");
  }

  async tokenize(text: string): Promise<number[]> {
    const body = (await this.http.post("/tokenize", { model: this.servedModel, prompt: text, add_special_tokens: false })) as { tokens?: unknown };
    if (!Array.isArray(body?.tokens)) throw this.badAnswer("POST /tokenize answered without `tokens`");
    return body.tokens as number[];
  }

  async read(tokens: readonly number[], positions: readonly number[], k: number): Promise<PositionLogprobs[]> {
    const last = positions[positions.length - 1]!;
    // A healed path of one token (the usual case) is forced to it, which makes its probability
    // exact in the same request; a longer one is left to the look-ups (sampling params are per request).
    const next = new Set(positions.filter((p) => p < last).map((p) => tokens[p + 1]!));
    const forced = next.size === 1 ? [...next][0]! : undefined;
    const choices = await this.complete(positions.map((p) => tokens.slice(0, p + 1)), k, forced === undefined ? undefined : { allowed_token_ids: [forced] });
    return positions.map((position, i) => {
      const { sampled, top } = choices[i]!;
      if (forced !== undefined && position < last && sampled.id !== forced) throw this.badAnswer(`allowed_token_ids [${forced}] was not honoured (sampled ${sampled.id})`);
      // The sampled token's log-probability is exact whatever it is.
      return { top, extra: new Map([[sampled.id, sampled.logprob]]) };
    });
  }

  async lookUp(queries: readonly LookupQuery[]): Promise<Map<number, number>[]> {
    const found = queries.map(() => new Map<number, number>());
    if (this.lookupsById !== false) {
      const union = [...new Set(queries.flatMap((q) => q.ids))];
      for (let start = 0; start < union.length; start += MAX_LOOKUP_IDS) {
        const chunk = union.slice(start, start + MAX_LOOKUP_IDS);
        const asking = queries.map((_, i) => i).filter((i) => chunk.some((id) => queries[i]!.ids.includes(id)));
        const answers = await this.complete(asking.map((i) => queries[i]!.prompt), 1, { logprob_token_ids: chunk });
        asking.forEach((i, j) => {
          for (const id of queries[i]!.ids) if (answers[j]!.top.has(id)) found[i]!.set(id, answers[j]!.top.get(id)!);
        });
      }
      // An older vLLM ignores the field (it logs it as unknown) and lists its natural top instead.
      this.lookupsById = queries.every((q, i) => q.ids.every((id) => found[i]!.has(id)));
    }
    // Else one request per id, its prompts forced to it with allowed_token_ids.
    const missing = new Map<number, number[]>();
    queries.forEach((q, i) => q.ids.filter((id) => !found[i]!.has(id)).forEach((id) => missing.set(id, [...(missing.get(id) ?? []), i])));
    await Promise.all(
      [...missing].map(async ([id, asking]) => {
        const answers = await this.complete(asking.map((i) => queries[i]!.prompt), 1, { allowed_token_ids: [id] });
        asking.forEach((i, j) => {
          const { sampled } = answers[j]!;
          if (sampled.id !== id) throw this.badAnswer(`allowed_token_ids [${id}] was not honoured (sampled ${sampled.id})`);
          found[i]!.set(id, sampled.logprob);
        });
      }),
    );
    return found;
  }

  private async complete(
    prompts: readonly (readonly number[])[],
    k: number,
    extra: Record<string, unknown> | undefined,
  ): Promise<{ sampled: { id: number; logprob: number }; top: Map<number, number> }[]> {
    const body = (await this.whyRefused(
      this.http.post("/v1/completions", {
        model: this.servedModel,
        prompt: prompts,
        max_tokens: 1,
        temperature: 0,
        logprobs: k,
        return_tokens_as_token_ids: true,
        ...extra,
      }),
    )) as { model?: unknown; choices?: CompletionChoice[] };
    if (body?.model !== this.servedModel) {
      throw new MemberRejectedError(this.http.member, `the server at ${this.http.base} answered for model '${String(body?.model)}', not '${this.servedModel}'; its distributions are another model's — check \`model\`, or restart chorus`);
    }
    const choices = Array.isArray(body.choices) ? body.choices : [];
    return prompts.map((_, i) => {
      const choice = choices.find((c) => c.index === i) ?? choices[i];
      const logprobs = choice?.logprobs;
      const topEntry = logprobs?.top_logprobs?.[0];
      if (!logprobs || !topEntry) throw this.badAnswer(`no choices[${i}].logprobs.top_logprobs[0] in the answer of POST /v1/completions`);
      const top = new Map<number, number>();
      for (const [key, value] of Object.entries(topEntry)) top.set(this.tokenId(key), this.logprob(value));
      const sampledKey = logprobs.tokens?.[0];
      const sampled = typeof sampledKey === "string" ? this.tokenId(sampledKey) : undefined;
      const sampledLogprob = logprobValue(logprobs.token_logprobs?.[0]);
      if (sampled === undefined || sampledLogprob === undefined) throw this.badAnswer(`no choices[${i}].logprobs.tokens[0] / token_logprobs[0] in the answer of POST /v1/completions`);
      return { sampled: { id: sampled, logprob: sampledLogprob }, top };
    });
  }

  /** A refused request may mean the server was restarted with another model (vLLM then answers 404 for the old name): ask it. */
  private async whyRefused<T>(request: Promise<T>): Promise<T> {
    try {
      return await request;
    } catch (error) {
      if (!(error instanceof MemberRejectedError)) throw error;
      const probe = await this.http.probe("/v1/models").catch(() => undefined);
      const cards = probe?.ok ? VllmDialect.readModels(probe.body) : undefined;
      if (cards && !cards.some((card) => card.id === this.servedModel)) {
        throw new MemberRejectedError(this.http.member, `the server at ${this.http.base} now serves ${cards.map((c) => `'${c.id}'`).join(", ") || "no model"}, not '${this.servedModel}' it served when chorus connected; restart the server with the original model, or fix \`model\` and restart chorus`);
      }
      throw error;
    }
  }

  private tokenId(key: string): number {
    const match = /^token_id:(\d+)$/.exec(key);
    if (!match) {
      throw this.badAnswer(`log-probabilities are keyed by text ("${key}"), not "token_id:N": the server ignores the per-request return_tokens_as_token_ids, which came with vLLM 0.8; use vLLM ≥ 0.8`);
    }
    return Number(match[1]);
  }

  private logprob(value: unknown): number {
    const logprob = logprobValue(value);
    if (logprob === undefined) throw this.badAnswer(`a log-probability is ${JSON.stringify(value)}, not a number`);
    return logprob;
  }

  private badAnswer(what: string): MemberRejectedError {
    return new MemberRejectedError(this.http.member, `${what} (is this a vLLM server? set \`api\` to the server's kind, or leave it out to detect it)`);
  }
}
