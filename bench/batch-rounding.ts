/**
 * How llama.cpp's logits depend on the batch a position is decoded in: the shared tiny models'
 * logits for one text, decoded after an 8-token prompt in chunks of 1, 2, 3, 4, 5 and 8 tokens,
 * each compared with chunks of 1 and of 2 (how many logits differ, and the largest difference).
 * Why speculation's batched verification cannot be bit-identical to one-token steps (`exactReads`).
 * Run: node --import tsx bench/batch-rounding.ts
 */
import type { Token } from "node-llama-cpp";
import { loadLlama } from "../src/members/llama.js";
import { S260K, TS656K } from "../test/helpers/models.js";

const TEXT = "Once upon a time, there was a little girl named Lily. She loved to play with her toys in the garden";
const PROMPT = 8;
const generateNext = { logits: true as const };
const llama = await loadLlama();
console.log("| model | chunk | positions | logits differing from chunk 1 (max abs) | from chunk 2 (max abs) |");
console.log("|---|---:|---:|---|---|");
for (const modelPath of [S260K, TS656K]) {
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: 512, threads: 1, sequences: 1 });
  const sequence = context.getSequence();
  const tokens = model.tokenize(TEXT);
  const evaluate = async (chunk: number): Promise<Map<number, number>[]> => {
    await sequence.eraseContextTokenRanges([{ start: 0, end: sequence.nextTokenIndex }]);
    const rows: Map<number, number>[] = [];
    for (let at = 0; at < tokens.length; at = at === 0 ? PROMPT : at + chunk) {
      const part = tokens.slice(at, at === 0 ? PROMPT : at + chunk);
      for (const r of await sequence.controlledEvaluate(part.map((t) => [t, { generateNext }] as [Token, { generateNext: typeof generateNext }]))) rows.push(r!.next!.logits!);
    }
    return rows;
  };
  const compare = (a: Map<number, number>[], b: Map<number, number>[]) => {
    let differing = 0;
    let max = 0;
    for (let i = PROMPT; i < tokens.length; i++) {
      for (const [id, v] of a[i]!) {
        const w = b[i]!.get(id)!;
        if (v !== w) {
          differing++;
          max = Math.max(max, Math.abs(v - w));
        }
      }
    }
    return `${differing} (${max.toExponential(1)})`;
  };
  const one = await evaluate(1);
  const two = await evaluate(2);
  for (const chunk of [1, 2, 3, 4, 5, 8]) {
    const rows = await evaluate(chunk);
    console.log(`| ${modelPath.split("/").pop()} | ${chunk} | ${tokens.length - PROMPT} | ${compare(rows, one)} | ${compare(rows, two)} |`);
  }
  await context.dispose();
  await model.dispose();
}
