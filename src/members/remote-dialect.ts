/** What chorus needs from an inference server, whatever its wire format (see remote-vllm.ts, remote-llamacpp.ts). */

export type RemoteApi = "vllm" | "llamacpp";

export const API_NAMES: Record<RemoteApi, string> = { vllm: "vLLM", llamacpp: "llama.cpp's llama-server" };

/** One position's answer, as log-probabilities by token id. */
export interface PositionLogprobs {
  /** The server's most probable tokens; may hold one more entry than asked (vLLM adds the sampled token). */
  readonly top: ReadonlyMap<number, number>;
  /** Exact log-probabilities of further ids: the next token of the list (forced), or ids looked up. */
  readonly extra: ReadonlyMap<number, number>;
}

/** A token whose log-probability at a position is already known (a dialect may measure others relative to it). */
export interface Anchor {
  readonly id: number;
  readonly logprob: number;
}

export interface LookupQuery {
  readonly prompt: readonly number[];
  readonly ids: readonly number[];
  readonly anchor: Anchor;
}

export interface RemoteDialect {
  readonly api: RemoteApi;
  /** The model the server named when chorus connected; every answer must name it too. */
  readonly servedModel: string;
  /** Largest top list one position may get (the server's cap, or the vocabulary). */
  readonly maxListed: number;
  tokenize(text: string): Promise<number[]>;
  /**
   * The top-`k` at each of `positions` (ascending) of `tokens`, and at every position but the
   * last the exact probability of the token that follows it in `tokens` — what token healing
   * needs to weigh the healed path. One request where the server allows it.
   */
  read(tokens: readonly number[], positions: readonly number[], k: number): Promise<PositionLogprobs[]>;
  /** Exact log-probabilities of each query's `ids` as the token after its `prompt`, in one go where the server allows. */
  lookUp(queries: readonly LookupQuery[]): Promise<Map<number, number>[]>;
}

/** A log-probability as servers write it: vLLM floors zero at -9999.0, llama.cpp at the lowest float; `null` is zero too. */
export function logprobValue(value: unknown): number | undefined {
  if (value === null) return -Infinity;
  if (typeof value !== "number" || Number.isNaN(value)) return undefined;
  return value <= -9999 ? -Infinity : value;
}
