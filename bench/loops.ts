/**
 * The two generation loops the speed benchmarks compare, timed the same way: after the first
 * token (which includes the prompt's evaluation), ms per token over up to `tokens` more (fewer if
 * the text ends first: `timed` says how many).
 */
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import type { Ensemble } from "../src/engine/ensemble.js";

export interface LoopTiming {
  readonly msPerToken: number;
  /** Tokens timed after the first. */
  readonly timed: number;
}

/** node-llama-cpp's own greedy loop (`sequence.evaluate`) from `prompt`. `onFirst` runs when the first token is out. */
export async function timeOwnLoop(sequence: LlamaContextSequence, prompt: readonly Token[], tokens: number, onFirst?: () => void): Promise<LoopTiming> {
  let first = 0;
  let count = 0;
  for await (const _token of sequence.evaluate([...prompt], { temperature: 0 })) {
    if (count === 0) {
      first = performance.now();
      onFirst?.();
    }
    if (++count > tokens) break;
  }
  return { msPerToken: (performance.now() - first) / (count - 1), timed: count - 1 };
}

/** chorus's engine with one member generating alone (`chorus generate --only`), greedy. `onFirst` runs when the first step is out. */
export async function timeOnlyLoop(ensemble: Ensemble, member: string, prompt: string, tokens: number, onFirst?: () => void): Promise<LoopTiming> {
  const stream = ensemble.stream({ text: prompt }, { only: member, maxTokens: tokens + 1 });
  let first = 0;
  let steps = 0;
  for (;;) {
    const next = await stream.next();
    if (next.done) break;
    if (steps === 0) {
      first = performance.now();
      onFirst?.();
    }
    steps++;
  }
  return { msPerToken: (performance.now() - first) / (steps - 1), timed: steps - 1 };
}
