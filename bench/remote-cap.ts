/**
 * How closely an ensemble with one member on a real llama.cpp server follows the all-local
 * ensemble when the server lists only `--cap` log-probabilities per position (vLLM's default cap
 * is 20): GaC with healing, 5 prompts × `--tokens` steps. For each prompt that differs, the first
 * differing step with both runs' two best combined scores (a near-tie shows as a small margin).
 * Needs `npm run build:llama-server`.
 * Run: node --import tsx bench/remote-cap.ts [--cap 20] [--tokens 80] [--no-heal]
 */
import { parseArgs } from "node:util";
import { Ensemble } from "../src/engine/ensemble.js";
import type { Step } from "../src/engine/types.js";
import { S260K, TS656K } from "../test/helpers/models.js";
import { LlamaServer } from "../test/helpers/llama-server.js";

const { values } = parseArgs({ options: { cap: { type: "string", default: "20" }, tokens: { type: "string", default: "80" }, "no-heal": { type: "boolean", default: false } } });
const cap = Number(values.cap);
const maxTokens = Number(values.tokens);
const heal = !values["no-heal"];
const PROMPTS = [
  "Once upon a time, there was a little",
  "The dog ran to the park and",
  "One day, a little girl named Lily saw",
  "Tom and his mom went to the store. They",
  "The sun was shining and the birds",
];

const server = await LlamaServer.start({ model: TS656K, contextSize: 512 });
const s260k = { name: "s260k", model: S260K, primary: true };
const local = await Ensemble.create({ threads: 1, members: [s260k, { name: "ts656k", model: TS656K }] });
const mixed = await Ensemble.create({ threads: 1, members: [s260k, { name: "ts656k", url: server.url, tokenizer: TS656K, maxLogprobs: cap }] });
const run = async (e: Ensemble, prompt: string) => {
  const steps: Step[] = [];
  for await (const step of e.stream({ text: prompt }, { method: "gac", heal, maxTokens, trace: true })) steps.push(step);
  return steps;
};
const top2 = (step: Step) => step.trace!.combined.slice(0, 2).map((c) => `${JSON.stringify(c.text)} ${c.probability.toFixed(4)}`).join(" vs ");
let same = 0;
for (const prompt of PROMPTS) {
  const a = await run(local, prompt);
  const b = await run(mixed, prompt);
  const text = (steps: Step[]) => steps.map((s) => s.text).join("");
  if (text(a) === text(b)) {
    same++;
    console.log(`same     ${JSON.stringify(prompt)}`);
    continue;
  }
  const at = a.findIndex((s, i) => s.bytes !== b[i]?.bytes);
  console.log(`differs  ${JSON.stringify(prompt)} from step ${at}: local ${top2(a[at]!)}; remote ${top2(b[at]!)}`);
  for (const m of b[at]!.trace!.members) console.log(`         remote trace ${m.name}${m.healed ? " (healed)" : ""}${m.fallback ? ` (${m.fallback})` : ""}: ${m.top.map((c) => `${JSON.stringify(c.text)} ${c.probability.toFixed(4)}`).join("  ")}`);
  for (const m of a[at]!.trace!.members) console.log(`         local  trace ${m.name}${m.healed ? " (healed)" : ""}: ${m.top.map((c) => `${JSON.stringify(c.text)} ${c.probability.toFixed(4)}`).join("  ")}`);
}
console.log(`GaC${heal ? " with healing" : ", no healing"}, ts656k on llama-server capped at ${cap}: ${same}/${PROMPTS.length} prompts × ${maxTokens} tokens equal to the all-local ensemble`);
await Promise.all([local.dispose(), mixed.dispose()]);
await server.stop();
