import type { LlamaContextSequence, Token } from "node-llama-cpp";

/**
 * What one evaluated position was read for, straight from llama.cpp's logits by chorus's patched
 * binding (`chorusReadLogits`, native/addon-fast-reads.patch).
 */
export interface RawPositionRead {
  /** Σ exp(logit − maxLogit) over the whole vocabulary, summed in double. */
  readonly totalLogitWeight: number;
  /** The most probable ids in descending logit order (ties: lower id first). */
  readonly topIds: Int32Array;
  readonly topLogits: Float32Array;
  /** The requested ids and their logits (NaN for an id outside the vocabulary). */
  readonly ids: Uint32Array;
  readonly idLogits: Float32Array;
  /** Every logit by id, when the row was asked for. */
  readonly row?: Float32Array;
}

/** What to read at one position of the evaluated tokens. */
export interface RawPositionAsk {
  readonly topK: number;
  readonly ids: Uint32Array;
  readonly row: boolean;
}

type NativeRead = [number, Int32Array, Float32Array, Float32Array, Float32Array?];

/**
 * node-llama-cpp 3.22 internals the direct path drives: the sequence's queue into its context's
 * batches, and the binding's context object. The patched binding is built for one node-llama-cpp
 * version (its recipe names it), so these are present whenever `chorusReadLogits` is.
 */
interface SequenceInternals {
  readonly _tokenMeter: unknown;
  readonly _contextShift: { readonly size: unknown; readonly strategy: unknown };
  readonly _context: { readonly _ctx: { chorusReadLogits?: (batchLogitIndex: number, topK: number, ids: Uint32Array, copyRow: boolean) => NativeRead } };
  _decodeTokens(
    tokens: Token[],
    logits: boolean[],
    evaluationPriority: undefined,
    tokenMeter: unknown,
    contextShift: { size: unknown; strategy: unknown },
    logitDataMapper: (batchLogitIndex: number, tokenIndex: number) => RawPositionRead | undefined,
  ): Promise<(RawPositionRead | undefined)[]>;
}

/**
 * Evaluates tokens on a sequence and reads the asked positions synchronously inside
 * node-llama-cpp's batch callback, while llama.cpp still holds their logits. Compared with
 * `controlledEvaluate` it spares each call a sampler (made, configured and disposed per call) and
 * each read a trip to a worker thread and a copy of the vocabulary into sampling candidates.
 */
export type DirectEvaluate = (tokens: readonly Token[], asks: ReadonlyMap<number, RawPositionAsk>) => Promise<(RawPositionRead | undefined)[]>;

interface CopyInternals {
  _copyStateFromOtherSequence?(other: LlamaContextSequence, upToTokenIndex: number): Promise<boolean>;
}

/**
 * Makes `target` hold `source`'s first `upTo` tokens by copying their KV cells (llama.cpp's
 * `llama_memory_seq_cp`: no forward pass), through node-llama-cpp's internal
 * `_copyStateFromOtherSequence`. False when this node-llama-cpp has no such method or the copy
 * did not take (then the target is left for the caller to re-decode).
 */
export async function copySequencePrefix(target: LlamaContextSequence, source: LlamaContextSequence, upTo: number): Promise<boolean> {
  const copy = (target as unknown as CopyInternals)._copyStateFromOtherSequence;
  if (typeof copy !== "function") return false;
  return copy.call(target, source, upTo);
}

/** The direct path for `sequence`, or undefined under node-llama-cpp's stock binding (which has no `chorusReadLogits`). */
export function directEvaluator(sequence: LlamaContextSequence): DirectEvaluate | undefined {
  const internals = sequence as unknown as SequenceInternals;
  const native = internals._context?._ctx;
  if (typeof native?.chorusReadLogits !== "function" || typeof internals._decodeTokens !== "function" || !internals._contextShift) return undefined;
  const read = native.chorusReadLogits.bind(native);
  return async (tokens, asks) => {
    const flags = tokens.map((_, i) => asks.has(i));
    const shift = { size: internals._contextShift.size, strategy: internals._contextShift.strategy };
    // The callback must not throw: node-llama-cpp calls it inside its batch dispatch, where an
    // exception would leave this evaluation's promise unsettled. A failed read is returned, then thrown here.
    let failure: unknown;
    const reads = await internals._decodeTokens([...tokens], flags, undefined, internals._tokenMeter, shift, (batchLogitIndex, tokenIndex) => {
      const ask = asks.get(tokenIndex);
      if (!ask || failure !== undefined) return undefined;
      try {
        const [totalLogitWeight, topIds, topLogits, idLogits, row] = read(batchLogitIndex, ask.topK, ask.ids, ask.row);
        return { totalLogitWeight, topIds, topLogits, ids: ask.ids, idLogits, ...(row ? { row } : {}) };
      } catch (error) {
        failure = error;
        return undefined;
      }
    });
    if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
    return reads;
  };
}
