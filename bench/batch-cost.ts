/**
 * What a batch costs on this machine: one llama.cpp evaluation of 1, 4 and 8 tokens with every
 * position read (the direct path: top 128 + total weight), as a speculative verifier evaluates a
 * draft, on the shared tiny models and the generated 32k and 152k members. On a GPU a batch of k
 * costs about one evaluation; on a CPU the output layer is computed once per read position, so the
 * cost grows with k. Median of 12 runs per size.
 *
 *   node --import tsx bench/batch-cost.ts [--models s260k,ts656k,spm32k,qwen2-152k]
 */
import { parseArgs } from "node:util";
import type { Token } from "node-llama-cpp";
import { loadRuntime } from "../src/members/runtime.js";
import { directEvaluator } from "../src/members/direct-reads.js";
import { makePresetModel, type PresetName } from "./make-model.js";
import { S260K, TS656K } from "../test/helpers/models.js";

const { values } = parseArgs({ options: { models: { type: "string", default: "s260k,ts656k,spm32k,qwen2-152k" } } });
const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her";
const runtime = await loadRuntime(false);
if (runtime.binding !== "patched") throw new Error("bench/batch-cost.ts measures the direct read path: build the patched binding first (npm run build:llama-addon)");
console.log("| model | 1 token | 4 tokens | 8 tokens |");
console.log("|---|---:|---:|---:|");
for (const name of values.models!.split(",")) {
  const path = name === "s260k" ? S260K : name === "ts656k" ? TS656K : (await makePresetModel(name as PresetName)).outPath;
  const model = await runtime.llama.loadModel({ modelPath: path });
  const context = await model.createContext({ contextSize: 1024, threads: 1 });
  try {
    const sequence = context.getSequence();
    const direct = directEvaluator(sequence)!;
    const ids = model.tokenize(PROMPT) as Token[];
    await direct(ids.slice(0, 8), new Map());
    const time = async (n: number): Promise<number> => {
      const times: number[] = [];
      for (let r = 0; r < 12; r++) {
        await sequence.eraseContextTokenRanges([{ start: 8, end: sequence.nextTokenIndex }]);
        const asks = new Map(Array.from({ length: n }, (_, i) => [i, { topK: 128, ids: new Uint32Array(0), row: false }]));
        const started = performance.now();
        await direct(ids.slice(8, 8 + n), asks);
        times.push(performance.now() - started);
      }
      return times.sort((a, b) => a - b)[6]!;
    };
    const one = await time(1);
    const four = await time(4);
    const eight = await time(8);
    console.log(`| ${name} | ${one.toFixed(2)} ms | ${four.toFixed(2)} ms (${(four / one).toFixed(2)}×) | ${eight.toFixed(2)} ms (${(eight / one).toFixed(2)}×) |`);
  } finally {
    await context.dispose();
    await model.dispose();
  }
}
