import http from "node:http";
import type { AddressInfo } from "node:net";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { loadLlama } from "../../src/members/llama.js";

/**
 * A stand-in for vLLM, which cannot run here (it needs a GPU), in today's wire format, backed by a
 * real GGUF model through node-llama-cpp (greedy, full softmax). Checked against vLLM's source
 * and docs (0.8 – 0.30, see README "Remote members"):
 * - GET /v1/models: cards with `max_model_len`; POST /tokenize {model?, prompt, add_special_tokens};
 * - POST /v1/completions with token-id prompts, one or several (`[[ids], [ids]]`, one choice per
 *   prompt), `model` optional, `logprobs: k` (−1 = the whole vocabulary, both checked against
 *   `--max-logprobs`), `return_tokens_as_token_ids` keys "token_id:N", the sampled token's
 *   log-probability beside the top k, zero probabilities as -9999.0, `allowed_token_ids` (sampling
 *   restricted, log-probabilities raw as vLLM's default `--logprobs-mode raw_logprobs`) and
 *   `logprob_token_ids` (the sampled token plus exactly those ids, replacing the top k);
 * - errors nested under `error` (vLLM ≥ 0.10.1), or flat (`legacyErrors`, older vLLM);
 * - `--api-key`: every route it serves needs the bearer token, except /health.
 */
export class ServerDouble {
  /** Completion requests answered, for tests that count round trips. */
  completions = 0;
  /** Those that asked for chosen ids (`logprob_token_ids` or `allowed_token_ids` alone on one prompt without a healed read). */
  lookupRequests = 0;
  /** The prompts those requests carried. */
  prompts = 0;
  /** Answer completions without log-probabilities, as a server that dropped the field would. */
  omitLogprobs = false;
  /** The name it serves its model under (change it to play a restart with another model). */
  servedName = "";
  /** After this many completion requests, reset every connection, as a machine that went away mid-generation. */
  refuseAfter = Infinity;
  private constructor(
    readonly url: string,
    private readonly server: http.Server,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
  ) {}

  static async start(options: {
    modelPath: string;
    servedName: string;
    maxLogprobs?: number;
    contextSize?: number;
    apiKey?: string;
    /** Errors as older vLLM wrote them: `{object: "error", message, …}` at the top level. */
    legacyErrors?: boolean;
    /** Ignore `logprob_token_ids`, as a vLLM from before it reached the OpenAI routes does. */
    withoutLogprobTokenIds?: boolean;
  }): Promise<ServerDouble> {
    const llama = await loadLlama();
    const model = await llama.loadModel({ modelPath: options.modelPath });
    const context = await model.createContext({ contextSize: options.contextSize ?? 512, threads: 1 });
    const sequence = context.getSequence();
    const maxLogprobs = options.maxLogprobs ?? 20;
    const maxModelLen = context.contextSize;
    const vocabularySize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    let busy = Promise.resolve();
    let double: ServerDouble | undefined;

    const error = (status: number, message: string, type = "BadRequestError", param: string | null = null) => ({
      status,
      body: options.legacyErrors ? { object: "error", message, type, param, code: status } : { error: { message, type, param, code: status } },
    });
    const key = (id: number) => `token_id:${id}`;
    const floor = (p: number) => Math.max(Math.log(p), -9999.0);

    const completion = async (body: Record<string, unknown>): Promise<{ status: number; body: unknown }> => {
      if (body.model !== undefined && body.model !== double!.servedName) return error(404, `The model \`${String(body.model)}\` does not exist.`, "NotFoundError", "model");
      const raw = body.prompt;
      const prompts = Array.isArray(raw) && raw.every(Array.isArray) ? (raw as unknown[][]) : [raw as unknown[]];
      if (prompts.some((p) => !Array.isArray(p) || p.length === 0 || p.some((t) => !Number.isInteger(t) || (t as number) < 0 || (t as number) >= vocabularySize))) {
        return error(400, "this double takes token-id prompts only");
      }
      if (body.max_tokens !== 1) return error(400, "this double generates max_tokens: 1 only");
      if (body.return_tokens_as_token_ids !== true) return error(400, "this double answers with return_tokens_as_token_ids only");
      const requested = body.logprobs;
      if (typeof requested !== "number" || !Number.isInteger(requested) || requested < -1) return error(400, "logprobs must be a non-negative integer or -1");
      const k = requested === -1 ? vocabularySize : requested;
      if (k > maxLogprobs) return error(400, `Requested sample logprobs of ${k}, which is greater than max allowed: ${maxLogprobs}`);
      const allowed = body.allowed_token_ids as number[] | undefined;
      const lookups = options.withoutLogprobTokenIds ? undefined : (body.logprob_token_ids as number[] | undefined);
      if (lookups !== undefined && lookups.length > 128) return error(400, "logprob_token_ids may list at most 128 token ids");
      for (const prompt of prompts) {
        if (prompt.length + 1 > maxModelLen) {
          return error(400, `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${prompt.length + 1} tokens (${prompt.length} in the messages, 1 in the completion). Please reduce the length of the messages or completion.`);
        }
      }
      double!.completions++;
      if (lookups !== undefined || (allowed !== undefined && requested === 1)) double!.lookupRequests++;
      const choices = [];
      for (const [index, prompt] of prompts.entries()) {
        double!.prompts++;
        const probabilities = await evaluate(sequence, prompt as Token[]);
        const sorted = [...probabilities.entries()].sort((a, b) => b[1] - a[1]);
        const candidates = allowed && allowed.length > 0 ? sorted.filter(([id]) => allowed.includes(id)) : sorted;
        const [sampled, sampledP] = candidates[0]!;
        const listed = lookups && lookups.length > 0 ? lookups.map((id) => [id, probabilities.get(id as Token) ?? 0] as const) : sorted.slice(0, k);
        const top = Object.fromEntries([[sampled, sampledP] as const, ...listed].map(([id, p]) => [key(id), floor(p)]));
        choices.push({
          index,
          text: key(sampled),
          logprobs: double!.omitLogprobs ? null : { text_offset: [0], token_logprobs: [floor(sampledP)], tokens: [key(sampled)], top_logprobs: [top] },
          finish_reason: "length",
          stop_reason: null,
          prompt_logprobs: null,
        });
      }
      const promptTokens = prompts.reduce((n, p) => n + p.length, 0);
      return {
        status: 200,
        body: {
          id: `cmpl-${double!.completions}`,
          object: "text_completion",
          created: Math.floor(Date.now() / 1000),
          model: double!.servedName,
          choices,
          usage: { prompt_tokens: promptTokens, total_tokens: promptTokens + prompts.length, completion_tokens: prompts.length, prompt_tokens_details: null },
        },
      };
    };

    const handle = async (method: string, url: string, body: Record<string, unknown>): Promise<{ status: number; body: unknown }> => {
      if (method === "GET" && url === "/v1/models") {
        return {
          status: 200,
          body: {
            object: "list",
            data: [{ id: double!.servedName, object: "model", created: 0, owned_by: "vllm", root: options.modelPath, parent: null, max_model_len: maxModelLen, permission: [] }],
          },
        };
      }
      if (method === "POST" && url === "/tokenize") {
        if (typeof body.prompt !== "string") return error(400, "prompt must be a string");
        const tokens = [...model.tokenize(body.prompt, false)] as number[];
        if (body.add_special_tokens !== false && model.tokens.bos !== null && model.tokens.shouldPrependBosToken) tokens.unshift(model.tokens.bos);
        return { status: 200, body: { count: tokens.length, max_model_len: maxModelLen, tokens, token_strs: null } };
      }
      if (method === "POST" && url === "/v1/completions") return completion(body);
      return { status: 404, body: { detail: "Not Found" } };
    };

    const routes = new Set(["/v1/models", "/tokenize", "/v1/completions", "/v1/chat/completions", "/detokenize"]);
    const server = http.createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (c: Buffer) => chunks.push(c));
      request.on("end", () => {
        if (request.url === "/v1/completions" && double!.completions >= double!.refuseAfter) {
          request.socket.destroy();
          return;
        }
        // One request at a time on the model's one sequence.
        busy = busy.then(async () => {
          let answer: { status: number; body: unknown };
          try {
            const text = Buffer.concat(chunks).toString("utf8");
            const path = request.url ?? "/";
            if (options.apiKey !== undefined && routes.has(path) && request.headers.authorization !== `Bearer ${options.apiKey}`) {
              response.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ error: "Unauthorized" }));
              return;
            }
            answer = await handle(request.method ?? "GET", path, text ? (JSON.parse(text) as Record<string, unknown>) : {});
          } catch (e) {
            answer = error(500, (e as Error).message, "InternalServerError");
          }
          response.writeHead(answer.status, { "content-type": "application/json" }).end(JSON.stringify(answer.body));
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    double = new ServerDouble(`http://127.0.0.1:${port}`, server, model, context);
    double.servedName = options.servedName;
    return double;
  }

  /** Stops answering: later connections are refused, as when the machine goes away. */
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async dispose(): Promise<void> {
    if (this.server.listening) await this.stop();
    await this.context.dispose();
    await this.model.dispose();
  }
}

/** The model's full next-token distribution after `prompt`, evaluated from scratch on the sequence. */
async function evaluate(sequence: LlamaContextSequence, prompt: readonly Token[]): Promise<Map<Token, number>> {
  await sequence.clearHistory();
  const input = prompt.map((id, i) => (i === prompt.length - 1 ? ([id, { generateNext: { probabilities: true } }] as [Token, { generateNext: { probabilities: true } }]) : id));
  const result = await sequence.controlledEvaluate(input);
  return result[result.length - 1]!.next!.probabilities!;
}
