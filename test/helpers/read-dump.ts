/**
 * Run as a child process by test/fast-reads.test.ts (one process loads one binding): reads every
 * position of a text on each model the way chorus does, through whichever node-llama-cpp binding this
 * process loads (CHORUS_STOCK_BINDING=1: the prebuilt one), and prints the reads as JSON.
 *
 *   node --import tsx test/helpers/read-dump.ts '{"models":[...],"text":"...","topK":8}'
 */
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import { Ensemble } from "../../src/engine/ensemble.js";
import { loadRuntime } from "../../src/members/runtime.js";
import { directEvaluator, type RawPositionRead } from "../../src/members/direct-reads.js";
import { PAIR } from "./models.js";

export interface DumpRequest {
  readonly models: readonly string[];
  readonly text: string;
  readonly topK: number;
  /** Tokens of the pair's greedy generation to compare (0: none). */
  readonly generate: number;
}

export interface PositionRead {
  /** The top k then the filter's entries, as the binding returns them (id, logit). */
  readonly top: [number, number][];
  readonly totalLogitWeight: number;
  /** Σ exp(logit − max) over every logit of a full read, summed in float64 here. */
  readonly exactTotalLogitWeight: number;
  /** A filter-only read (no top k): what extends a distribution. */
  readonly filtered: [number, number][];
}

export interface ModelDump {
  readonly model: string;
  readonly vocabularySize: number;
  readonly extraIds: number[];
  readonly positions: PositionRead[];
  /** The same reads through chorus's direct path (src/members/direct-reads.ts), when the patched binding is loaded. */
  readonly direct?: PositionRead[];
  /** Whether every direct row read (`row: true`) held exactly the full read's logits. */
  readonly directRowsMatch?: boolean;
}

export interface Dump {
  readonly binding: string;
  readonly models: ModelDump[];
  readonly generated?: { gac: string; unite: string; only: string };
}

/** 34 ids spread over the vocabulary (like a step's requested ids), plus a repeat. */
function extraIdsFor(vocabularySize: number): number[] {
  const ids = Array.from({ length: 34 }, (_, i) => Math.min(vocabularySize - 1, Math.floor((i * vocabularySize) / 34) + 7));
  return [...ids, ids[3]!];
}

async function readAll(sequence: LlamaContextSequence, tokens: Token[], generateNext: object): Promise<Map<number, unknown>[]> {
  await sequence.clearHistory();
  const results = await sequence.controlledEvaluate(tokens.map((token) => [token, { generateNext }] as [Token, { generateNext: object }]));
  return results.map((r) => (r?.next ?? {}) as unknown as Map<number, unknown>);
}

/** (id, logit) entries as the binding lists them: the top ids in order, then the other requested ids by descending logit. */
function entries(read: RawPositionRead, top: number): [number, number][] {
  const listed: [number, number][] = Array.from(read.topIds.subarray(0, top), (id, i) => [id, read.topLogits[i]!]);
  const seen = new Set(listed.map(([id]) => id));
  const extras: [number, number][] = [];
  read.ids.forEach((id, i) => {
    if (!seen.has(id) && !Number.isNaN(read.idLogits[i]!)) extras.push([id, read.idLogits[i]!]);
    seen.add(id);
  });
  return listed.concat(extras.sort((a, b) => b[1] - a[1] || a[0] - b[0]));
}

async function readDirect(
  sequence: LlamaContextSequence,
  tokens: Token[],
  topK: number,
  extraIds: number[],
  exact: number[],
  full: Map<number, unknown>[],
): Promise<Pick<ModelDump, "direct" | "directRowsMatch">> {
  const direct = directEvaluator(sequence);
  if (!direct) return {};
  const ids = Uint32Array.from(extraIds);
  const readAllDirect = async (ask: { topK: number; ids: Uint32Array; row: boolean }) => {
    await sequence.clearHistory();
    return direct(tokens, new Map(tokens.map((_, i) => [i, ask])));
  };
  const tops = await readAllDirect({ topK, ids, row: false });
  const filtered = await readAllDirect({ topK: 0, ids, row: false });
  const rows = await readAllDirect({ topK, ids, row: true });
  const directRowsMatch = rows.every((read, i) => {
    const logits = (full[i] as unknown as { logits: Map<number, number> }).logits;
    return read?.row !== undefined && read.row.length === logits.size && [...logits].every(([id, v]) => read.row![id] === v);
  });
  return {
    direct: tops.map((read, i) => ({ top: entries(read!, topK), totalLogitWeight: read!.totalLogitWeight, exactTotalLogitWeight: exact[i]!, filtered: entries(filtered[i]!, 0) })),
    directRowsMatch,
  };
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2] ?? "{}") as DumpRequest;
  const runtime = await loadRuntime(false);
  const models: ModelDump[] = [];
  for (const modelPath of request.models) {
    const model = await runtime.llama.loadModel({ modelPath });
    const context = await model.createContext({ contextSize: 256, threads: 1 });
    const sequence = context.getSequence();
    const tokens = model.tokenize(request.text).slice(0, 24);
    const [probe] = await readAll(sequence, tokens.slice(0, 1), { probabilities: true });
    const vocabularySize = (probe as unknown as { probabilities: Map<number, number> }).probabilities.size;
    const extraIds = extraIdsFor(vocabularySize);
    const tops = await readAll(sequence, tokens, { logits: { filter: { tokens: extraIds, includeTop: request.topK } }, totalLogitWeight: true });
    const filtered = await readAll(sequence, tokens, { logits: { filter: { tokens: extraIds } } });
    const full = await readAll(sequence, tokens, { logits: true });
    const exact = full.map((next) => {
      const logits = [...(next as unknown as { logits: Map<number, number> }).logits.values()];
      const max = logits.reduce((a, b) => Math.max(a, b), -Infinity);
      return logits.reduce((sum, v) => sum + Math.exp(v - max), 0);
    });
    const positions = tops.map((next, i) => {
      const n = next as unknown as { logits: Map<number, number>; totalLogitWeight: number };
      const f = filtered[i] as unknown as { logits: Map<number, number> };
      return { top: [...n.logits.entries()], totalLogitWeight: n.totalLogitWeight, exactTotalLogitWeight: exact[i]!, filtered: [...f.logits.entries()] };
    });
    const direct = await readDirect(sequence, tokens, request.topK, extraIds, exact, full);
    models.push({ model: modelPath, vocabularySize, extraIds, positions, ...direct });
    await context.dispose();
    await model.dispose();
  }
  let generated: Dump["generated"];
  if (request.generate > 0) {
    const ensemble = await Ensemble.create({ members: PAIR, gpu: false, maxTokens: request.generate });
    const text = request.text;
    generated = {
      gac: (await ensemble.generate({ text })).text,
      unite: (await ensemble.generate({ text }, { method: "unite" })).text,
      only: (await ensemble.generate({ text }, { only: "ts656k" })).text,
    };
    await ensemble.dispose();
  }
  const dump: Dump = { binding: runtime.binding, models, ...(generated ? { generated } : {}) };
  process.stdout.write(JSON.stringify(dump));
}

await main();
