/**
 * What one direct read costs (the patched binding's `chorusReadLogits`, src/members/direct-reads.ts)
 * once a position is decoded: top 128 + 34 requested ids + Σexp, and the same with the whole row
 * copied out, each repeated inside node-llama-cpp's batch callback while the logits are held.
 * Median of 9 batches of 50 reads.
 *
 *   node --import tsx bench/read-cost.ts [--models s260k,spm32k,qwen2-152k]
 */
import { parseArgs } from "node:util";
import type { Token } from "node-llama-cpp";
import { loadRuntime } from "../src/members/runtime.js";
import { makePresetModel, type PresetName } from "./make-model.js";
import { S260K, TS656K } from "../test/helpers/models.js";

interface Internals {
  readonly _context: { readonly _ctx: { chorusReadLogits(batchLogitIndex: number, topK: number, ids: Uint32Array, copyRow: boolean): unknown } };
  readonly _tokenMeter: unknown;
  readonly _contextShift: { readonly size: unknown; readonly strategy: unknown };
  _decodeTokens(tokens: Token[], logits: boolean[], priority: undefined, meter: unknown, shift: object, mapper: (batchLogitIndex: number) => unknown): Promise<unknown>;
}

const { values } = parseArgs({ options: { models: { type: "string", default: "s260k,spm32k,qwen2-152k" } } });
const runtime = await loadRuntime(false);
if (runtime.binding !== "patched") throw new Error("bench/read-cost.ts measures the direct read path: build the patched binding first (npm run build:llama-addon)");
console.log("| model | top 128 + 34 ids + Σexp | the same with the row |");
console.log("|---|---:|---:|");
for (const name of values.models!.split(",")) {
  const path = name === "s260k" ? S260K : name === "ts656k" ? TS656K : (await makePresetModel(name as PresetName)).outPath;
  const model = await runtime.llama.loadModel({ modelPath: path });
  const context = await model.createContext({ contextSize: 256, threads: 1 });
  try {
    const sequence = context.getSequence() as unknown as Internals;
    const native = sequence._context._ctx;
    const tokens = model.tokenize("Once upon a time, there was a little girl") as Token[];
    const ids = Uint32Array.from({ length: 34 }, (_, i) => i * 7 + 3);
    const medians: Record<string, number> = {};
    await sequence._decodeTokens(tokens, tokens.map((_, i) => i === tokens.length - 1), undefined, sequence._tokenMeter, { ...sequence._contextShift }, (batchLogitIndex) => {
      for (const row of [false, true]) {
        const batches: number[] = [];
        for (let b = 0; b < 9; b++) {
          const started = performance.now();
          for (let i = 0; i < 50; i++) native.chorusReadLogits(batchLogitIndex, 128, ids, row);
          batches.push((performance.now() - started) / 50);
        }
        medians[row ? "row" : "top"] = batches.sort((a, b) => a - b)[4]!;
      }
      return undefined;
    });
    console.log(`| ${name} | ${(medians.top! * 1000).toFixed(0)} µs | ${(medians.row! * 1000).toFixed(0)} µs |`);
  } finally {
    await context.dispose();
    await model.dispose();
  }
}
