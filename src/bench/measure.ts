/**
 * Speed and memory of an ensemble: each member alone, then every method (byte-level voting with
 * both aggregates) with and without gating,
 * all generating the same number of greedy steps from the same prompt. Shared by `chorus bench`
 * and `npm run bench`.
 *
 * "members" is the wall time inside the members' `distributions` calls (llama.cpp's forward pass
 * plus its logit extraction); "engine" is everything else, split into extraction (distributions →
 * byte-string candidates, healing), sync (re-tokenizing, planning, accepting) and combination
 * (GaC/UniTE, bounds, sampling).
 */
import { Ensemble, type EnsembleSpec, type GenerateOptions, type GenerationResult, type MethodName } from "../engine/ensemble.js";
import type { BackendReport } from "../members/backend.js";

export interface BenchRow {
  readonly setup: string;
  readonly system: string;
  readonly steps: number;
  readonly tokensPerSecond: number;
  readonly msPerStep: number;
  readonly memberWallMsPerStep: number;
  readonly engineMsPerStep: number;
  /** The engine's time split: distributions → candidates (healing), member sync, combination (+ bounds, sampling). */
  readonly extractionMsPerStep: number;
  readonly syncMsPerStep: number;
  readonly combinationMsPerStep: number;
  readonly engineShare: number;
  readonly ensembledShare: number;
  readonly escalatedSteps: number;
  /** Whitespace-separated words generated, and the time per word: steps differ in length across methods (bytes commits shorter pieces), words do not. */
  readonly words: number;
  readonly msPerWord: number;
  /** The process's peak resident memory so far (it only grows), after this row. */
  readonly peakRssMiB: number;
}

export interface BenchOptions {
  readonly setup: string;
  readonly steps: number;
  readonly prompt: string;
  /** Gating threshold for the gated rows; gated rows need a primary member. */
  readonly threshold?: number;
  readonly methods?: readonly MethodName[];
  readonly log?: (message: string) => void;
  /** Told where the members run (device, layers on the GPU, threads) once they are loaded. */
  readonly onBackend?: (backend: BackendReport) => void;
}

export const peakRssMiB = (): number => process.resourceUsage().maxRSS / 1024;

function row(setup: string, system: string, r: GenerationResult): BenchRow {
  const memberWall = r.timings.totalMs - r.timings.engineMs;
  return {
    setup,
    system,
    steps: r.steps,
    tokensPerSecond: (1000 * r.steps) / r.timings.totalMs,
    msPerStep: r.timings.totalMs / r.steps,
    memberWallMsPerStep: memberWall / r.steps,
    engineMsPerStep: r.timings.engineMs / r.steps,
    extractionMsPerStep: r.timings.extractionMs / r.steps,
    syncMsPerStep: r.timings.syncMs / r.steps,
    combinationMsPerStep: r.timings.combinationMs / r.steps,
    engineShare: r.timings.engineMs / r.timings.totalMs,
    ensembledShare: r.steps ? r.ensembledSteps / r.steps : 0,
    escalatedSteps: r.escalatedSteps,
    words: wordCount(r.text),
    msPerWord: r.timings.totalMs / Math.max(1, wordCount(r.text)),
    peakRssMiB: peakRssMiB(),
  };
}

function wordCount(text: string): number {
  const words = text.trim().split(/\s+/);
  return words[0] === "" ? 0 : words.length;
}

const METHOD_LABEL: Partial<Record<MethodName, string>> = { gac: "GaC", unite: "UniTE", eva: "EVA", deepen: "DeePEn" };

/** The rows of one method: bytes is measured with both aggregates. */
function methodRuns(method: MethodName): [string, GenerateOptions][] {
  if (method === "bytes") {
    return [
      ["bytes/mix", { method, bytes: { aggregate: "mix" } }],
      ["bytes/product", { method, bytes: { aggregate: "product" } }],
    ];
  }
  return [[METHOD_LABEL[method] ?? method, { method }]];
}

export async function benchEnsemble(spec: EnsembleSpec, options: BenchOptions): Promise<BenchRow[]> {
  const hasPrimary = spec.members.some((m) => m.primary);
  const threshold = options.threshold ?? spec.gate?.threshold ?? 0.9;
  const runs: [string, GenerateOptions][] = spec.members.map((m) => [`${m.name} alone`, { only: m.name, gate: null }]);
  if (spec.members.length > 1) {
    // GaC and UniTE need nothing more than the members; the config's own method (EVA, DeePEn) is measured too.
    const methods = options.methods ?? [...new Set<MethodName>(["gac", "unite", "bytes", ...(spec.method ? [spec.method] : [])])];
    for (const [label, methodOptions] of methods.flatMap(methodRuns)) {
      runs.push([label, { ...methodOptions, gate: null }]);
      if (hasPrimary) runs.push([`${label} gated ${threshold}`, { ...methodOptions, gate: { threshold } }]);
    }
  }
  if (!hasPrimary && spec.members.length > 1) options.log?.("  no member has primary: true, so the gated rows are left out");
  const ensemble = await Ensemble.create({ ...spec, gate: undefined, stop: [] });
  options.onBackend?.(ensemble.backend);
  const rows: BenchRow[] = [];
  try {
    await ensemble.generate({ text: options.prompt }, { maxSteps: 4, gate: null }); // warm-up
    for (const [system, generateOptions] of runs) {
      // No stop strings and greedy decoding: every row generates `steps` steps unless a member ends the text.
      const result = await ensemble.generate(
        { text: options.prompt },
        { ...generateOptions, maxSteps: options.steps, maxTokens: Infinity, stop: [], sampling: { temperature: 0 } },
      );
      const r = row(options.setup, system, result);
      rows.push(r);
      options.log?.(
        `  ${options.setup} · ${system}: ${r.tokensPerSecond.toFixed(1)} tok/s, engine ${r.engineMsPerStep.toFixed(2)} ms/step (${(100 * r.engineShare).toFixed(1)} %)`,
      );
    }
  } finally {
    await ensemble.dispose();
  }
  return rows;
}

export function benchTable(rows: readonly BenchRow[]): string {
  const header =
    "| setup | system | steps | tok/s | ms/step | words | ms/word | members ms/step | engine ms/step (extraction · sync · combination) | engine share | ensembled | escalated steps | peak RSS so far |";
  const line = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";
  let previous = "";
  const body = rows.map((r) => {
    const setup = r.setup === previous ? "" : r.setup;
    previous = r.setup;
    return `| ${setup} | ${r.system} | ${r.steps} | ${r.tokensPerSecond.toFixed(1)} | ${r.msPerStep.toFixed(2)} | ${r.words} | ${r.msPerWord.toFixed(1)} | ${r.memberWallMsPerStep.toFixed(2)} | ${r.engineMsPerStep.toFixed(2)} (${r.extractionMsPerStep.toFixed(2)} · ${r.syncMsPerStep.toFixed(2)} · ${r.combinationMsPerStep.toFixed(2)}) | ${(100 * r.engineShare).toFixed(1)} % | ${(100 * r.ensembledShare).toFixed(0)} % | ${r.escalatedSteps} | ${r.peakRssMiB.toFixed(0)} MiB |`;
  });
  return [header, line, ...body].join("\n");
}
