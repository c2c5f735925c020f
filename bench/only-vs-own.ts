/**
 * `--only` against node-llama-cpp's own greedy loop in one process, on one model loaded twice (one
 * copy for each loop, both resident), alternating the two loops round by round so that the
 * machine's drift falls on both; bench/reads.ts instead loads the model afresh for each loop.
 * Prints each round's ms/token and llama.cpp decode time, then the median ratio own / --only.
 *
 *   node --import tsx bench/only-vs-own.ts [--preset qwen2-152k] [--tokens 40] [--rounds 7]
 */
import { parseArgs } from "node:util";
import { Ensemble } from "../src/engine/ensemble.js";
import { loadRuntime } from "../src/members/runtime.js";
import { makePresetModel, type PresetName } from "./make-model.js";
import { timeOnlyLoop, timeOwnLoop } from "./loops.js";

const { values } = parseArgs({ options: { preset: { type: "string", default: "qwen2-152k" }, tokens: { type: "string", default: "40" }, rounds: { type: "string", default: "7" } } });
const TOKENS = Number(values.tokens);
const PROMPT = "Once upon a time, there was a little girl named Lily. She";

/** Times `decodeBatch` calls on a context's binding object (node-llama-cpp's `_ctx`), from the call until its promise settles. */
function timeDecodes(context: object): { ms: number } {
  const holder = context as { _ctx: Record<string, unknown> };
  const native = holder._ctx;
  const timed = { ms: 0 };
  holder._ctx = new Proxy(native, {
    get(target, name) {
      const value = target[name as string];
      if (name !== "decodeBatch" || typeof value !== "function") return typeof value === "function" ? value.bind(target) : value;
      return (...args: unknown[]) => {
        const started = performance.now();
        return (value.apply(target, args) as Promise<unknown>).finally(() => (timed.ms += performance.now() - started));
      };
    },
  });
  return timed;
}

const made = await makePresetModel(values.preset as PresetName);
const runtime = await loadRuntime(false);
const model = await runtime.llama.loadModel({ modelPath: made.outPath });
const context = await model.createContext({ contextSize: 1024, threads: 1 });
const ownDecodes = timeDecodes(context);
const sequence = context.getSequence();
const ensemble = await Ensemble.create({ members: [{ name: "m", model: made.outPath, primary: true }], threads: 1, contextSize: 1024, gpu: false });
const engineDecodes = timeDecodes((ensemble.members[0] as unknown as { context: object }).context);
const ratios: number[] = [];
try {
  console.log(`${values.preset}, ${TOKENS} tokens per loop, binding ${runtime.binding}`);
  for (let round = 0; round < Number(values.rounds); round++) {
    await sequence.clearHistory();
    const ownLoop = await timeOwnLoop(sequence, model.tokenize(PROMPT), TOKENS, () => (ownDecodes.ms = 0));
    const [own, ownDecode] = [ownLoop.msPerToken, ownDecodes.ms / ownLoop.timed];
    await ensemble.forgetReads();
    const onlyLoop = await timeOnlyLoop(ensemble, "m", PROMPT, TOKENS, () => (engineDecodes.ms = 0));
    const [only, onlyDecode] = [onlyLoop.msPerToken, engineDecodes.ms / onlyLoop.timed];
    ratios.push(own / only);
    console.log(`round ${round + 1}: own loop ${own.toFixed(2)} ms/token (decode ${ownDecode.toFixed(2)}), --only ${only.toFixed(2)} (decode ${onlyDecode.toFixed(2)}): ${(own / only).toFixed(2)}×`);
  }
} finally {
  await ensemble.dispose();
  await context.dispose();
  await model.dispose();
}
const sorted = [...ratios].sort((a, b) => a - b);
console.log(`--only / own loop speed: median ${sorted[sorted.length >> 1]!.toFixed(2)}× (${sorted[0]!.toFixed(2)}–${sorted[sorted.length - 1]!.toFixed(2)}) over ${ratios.length} rounds`);
