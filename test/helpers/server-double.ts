import http from "node:http";
import type { AddressInfo } from "node:net";
import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { loadLlama } from "../../src/members/llama.js";

/**
 * A stand-in for an inference server that cannot run here (vLLM needs a GPU), in its wire format
 * exactly, backed by a real GGUF model through node-llama-cpp (greedy, full softmax):
 * - `vllm`: GET /v1/models with max_model_len, POST /tokenize, POST /v1/completions with token-id
 *   prompts, `logprobs: k`, `return_tokens_as_token_ids` keys "token_id:N", vLLM's error object
 *   and its max_logprobs check;
 * - `llamacpp` (llama.cpp's llama-server): GET /props with default_generation_settings.n_ctx,
 *   POST /tokenize {content}, POST /completion with `n_probs` → completion_probabilities
 *   [{id, token, bytes, logprob, top_logprobs: [{id, token, bytes, logprob}]}].
 */
export class ServerDouble {
  /** Completions answered, for tests that count round trips. */
  completions = 0;
  /** Answer completions without log-probabilities, as a server that dropped the field would. */
  omitLogprobs = false;
  private constructor(
    readonly url: string,
    private readonly server: http.Server,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
  ) {}

  static async start(options: { modelPath: string; servedName: string; maxLogprobs?: number; contextSize?: number; dialect?: "vllm" | "llamacpp"; apiKey?: string }): Promise<ServerDouble> {
    const dialect = options.dialect ?? "vllm";
    const llama = await loadLlama();
    const model = await llama.loadModel({ modelPath: options.modelPath });
    const context = await model.createContext({ contextSize: options.contextSize ?? 512, threads: 1 });
    const sequence = context.getSequence();
    const maxLogprobs = options.maxLogprobs ?? 20;
    const maxModelLen = context.contextSize;
    let busy = Promise.resolve();
    let double: ServerDouble | undefined;

    const error = (status: number, message: string) => ({ status, body: { object: "error", message, type: "BadRequestError", param: null, code: status } });

    const piece = (id: number) => {
      const text = model.detokenize([id as Token], true);
      return { id, token: text, bytes: [...Buffer.from(text, "utf8")] };
    };
    const handleLlamaCpp = async (method: string, url: string, body: Record<string, unknown>): Promise<{ status: number; body: unknown }> => {
      const llamaError = (status: number, message: string) => ({ status, body: { error: { code: status, message, type: "invalid_request_error" } } });
      if (method === "GET" && url === "/props") {
        return { status: 200, body: { default_generation_settings: { n_ctx: maxModelLen, params: {} }, total_slots: 1, model_path: options.modelPath, build_info: "double" } };
      }
      if (method === "POST" && url === "/tokenize") {
        if (typeof body.content !== "string") return llamaError(400, "\"content\" must be provided");
        const tokens = [...model.tokenize(body.content, false)] as number[];
        if (body.add_special === true && model.tokens.bos !== null && model.tokens.shouldPrependBosToken) tokens.unshift(model.tokens.bos);
        return { status: 200, body: { tokens } };
      }
      if (method === "POST" && url === "/completion") {
        const prompt = body.prompt;
        if (!Array.isArray(prompt) || prompt.some((t) => !Number.isInteger(t))) return llamaError(400, "this double takes token-id prompts only");
        if (body.n_predict !== 1) return llamaError(400, "this double generates n_predict: 1 only");
        if (prompt.length + 1 > maxModelLen) return llamaError(400, `the request exceeds the available context size (${maxModelLen} tokens)`);
        const probabilities = await evaluate(sequence, prompt as Token[]);
        const sorted = [...probabilities.entries()].sort((a, b) => b[1] - a[1]);
        const k = typeof body.n_probs === "number" ? body.n_probs : 0;
        const [best, bestP] = sorted[0]!;
        double!.completions++;
        return {
          status: 200,
          body: {
            index: 0,
            content: piece(best).token,
            tokens: [],
            id_slot: 0,
            stop: true,
            model: options.servedName,
            tokens_predicted: 1,
            tokens_evaluated: prompt.length,
            stop_type: "limit",
            stopping_word: "",
            tokens_cached: prompt.length,
            completion_probabilities: [
              { ...piece(best), logprob: Math.log(bestP), top_logprobs: sorted.slice(0, k).map(([id, p]) => ({ ...piece(id), logprob: Math.log(p) })) },
            ],
          },
        };
      }
      return llamaError(404, "File Not Found");
    };

    const handle = async (method: string, url: string, body: Record<string, unknown>): Promise<{ status: number; body: unknown }> => {
      if (dialect === "llamacpp") return handleLlamaCpp(method, url, body);
      if (method === "GET" && url === "/v1/models") {
        return {
          status: 200,
          body: {
            object: "list",
            data: [{ id: options.servedName, object: "model", created: 0, owned_by: "vllm", root: options.modelPath, parent: null, max_model_len: maxModelLen, permission: [] }],
          },
        };
      }
      if (method === "POST" && url === "/tokenize") {
        if (typeof body.prompt !== "string") return error(400, "prompt must be a string");
        const tokens = [...model.tokenize(body.prompt, false)] as number[];
        if (body.add_special_tokens !== false && model.tokens.bos !== null && model.tokens.shouldPrependBosToken) tokens.unshift(model.tokens.bos);
        return { status: 200, body: { count: tokens.length, max_model_len: maxModelLen, tokens, token_strs: null } };
      }
      if (method === "POST" && url === "/v1/completions") {
        if (body.model !== options.servedName) return { status: 404, body: { object: "error", message: `The model \`${String(body.model)}\` does not exist.`, type: "NotFoundError", param: null, code: 404 } };
        const prompt = body.prompt;
        if (!Array.isArray(prompt) || prompt.some((t) => !Number.isInteger(t))) return error(400, "this double takes token-id prompts only");
        if (body.max_tokens !== 1) return error(400, "this double generates max_tokens: 1 only");
        const k = body.logprobs;
        if (typeof k !== "number" || k < 0) return error(400, "logprobs must be a non-negative integer");
        if (k > maxLogprobs) return error(400, `Requested sample logprobs of ${k}, which is greater than max allowed: ${maxLogprobs}`);
        if (prompt.length + 1 > maxModelLen) {
          return error(400, `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${prompt.length + 1} tokens (${prompt.length} in the messages, 1 in the completion). Please reduce the length of the messages or completion.`);
        }
        const probabilities = await evaluate(sequence, prompt as Token[]);
        const sorted = [...probabilities.entries()].sort((a, b) => b[1] - a[1]);
        const [best, bestP] = sorted[0]!;
        const key = (id: number) => (body.return_tokens_as_token_ids ? `token_id:${id}` : model.detokenize([id as Token], true));
        // vLLM lists the k most probable and the sampled token (here the most probable: greedy).
        const top = Object.fromEntries(sorted.slice(0, Math.max(1, k)).map(([id, p]) => [key(id), Math.log(p)]));
        double!.completions++;
        return {
          status: 200,
          body: {
            id: `cmpl-${double!.completions}`,
            object: "text_completion",
            created: Math.floor(Date.now() / 1000),
            model: options.servedName,
            choices: [
              {
                index: 0,
                text: model.detokenize([best as Token], true),
                logprobs: double!.omitLogprobs ? null : { text_offset: [0], token_logprobs: [Math.log(bestP)], tokens: [key(best)], top_logprobs: [top] },
                finish_reason: "length",
                stop_reason: null,
                prompt_logprobs: null,
              },
            ],
            usage: { prompt_tokens: prompt.length, total_tokens: prompt.length + 1, completion_tokens: 1, prompt_tokens_details: null },
          },
        };
      }
      return { status: 404, body: { detail: "Not Found" } };
    };

    const server = http.createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (c: Buffer) => chunks.push(c));
      request.on("end", () => {
        // One request at a time on the model's one sequence, as a single vLLM slot would.
        busy = busy.then(async () => {
          let answer: { status: number; body: unknown };
          try {
            const text = Buffer.concat(chunks).toString("utf8");
            // vLLM's --api-key: every /v1 route needs the bearer token.
            if (options.apiKey !== undefined && request.url?.startsWith("/v1") && request.headers.authorization !== `Bearer ${options.apiKey}`) {
              response.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ error: "Unauthorized" }));
              return;
            }
            answer = await handle(request.method ?? "GET", request.url ?? "/", text ? (JSON.parse(text) as Record<string, unknown>) : {});
          } catch (e) {
            answer = { status: 500, body: { object: "error", message: (e as Error).message, type: "InternalServerError", param: null, code: 500 } };
          }
          response.writeHead(answer.status, { "content-type": "application/json" }).end(JSON.stringify(answer.body));
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    double = new ServerDouble(`http://127.0.0.1:${port}`, server, model, context);
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
