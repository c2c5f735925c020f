/**
 * Two members decode at once on this machine's cores and share its memory bandwidth: node-llama-cpp's
 * own greedy loop on one generated model, alone and while another process runs the same loop on a
 * second model (the ensemble's situation: its members decode concurrently). Prints ms/token for
 * each and their ratio.
 *
 *   node --import tsx bench/contention.ts [--model qwen2-152k] [--other spm32k] [--tokens 40]
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadRuntime } from "../src/members/runtime.js";
import { makePresetModel, type PresetName } from "./make-model.js";
import { timeOwnLoop } from "./loops.js";

const { values } = parseArgs({
  options: { model: { type: "string", default: "qwen2-152k" }, other: { type: "string", default: "spm32k" }, tokens: { type: "string", default: "40" }, loop: { type: "string" } },
});
const TOKENS = Number(values.tokens);
const PROMPT = "Once upon a time, there was a little girl named Lily. She";

/** node-llama-cpp's own greedy loop: ms per token after the first; with `untilMs`, repeated until then. */
async function ownLoop(preset: string, untilMs = 0): Promise<number> {
  const runtime = await loadRuntime(false);
  const made = await makePresetModel(preset as PresetName);
  const model = await runtime.llama.loadModel({ modelPath: made.outPath });
  const context = await model.createContext({ contextSize: 1024, threads: 1 });
  const sequence = context.getSequence();
  const ids = model.tokenize(PROMPT);
  let best = Infinity;
  do {
    await sequence.clearHistory();
    best = Math.min(best, (await timeOwnLoop(sequence, ids, TOKENS)).msPerToken);
  } while (performance.now() < untilMs);
  await context.dispose();
  await model.dispose();
  return best;
}

if (values.loop) {
  // The other process: decode until told to stop.
  await ownLoop(values.loop, performance.now() + 120_000);
} else {
  await makePresetModel(values.other as PresetName);
  const alone = await ownLoop(values.model!);
  const other = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--loop", values.other!], { stdio: "ignore" });
  await new Promise((resolve) => setTimeout(resolve, 6000)); // the other model loaded and decoding
  const together = await ownLoop(values.model!);
  other.kill();
  console.log(`${values.model} alone: ${alone.toFixed(2)} ms/token; while ${values.other} decodes in another process: ${together.toFixed(2)} ms/token (${(together / alone).toFixed(2)}×)`);
}
