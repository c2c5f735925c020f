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
  /** Speculative rows: pieces drafted per round, and the share of drafted pieces the ensemble chose. */
  readonly speculation?: { readonly k: number; readonly acceptedShare: number };
}

export interface BenchOptions {
  readonly setup: string;
  readonly steps: number;
  readonly prompt: string;
  /** Gating threshold for the gated rows; gated rows need a primary member. */
  readonly threshold?: number;
  readonly methods?: readonly MethodName[];
  /** Speculative GaC rows, one per k (default 2, 4, 8; empty: none); the primary drafts, else the first member. */
  readonly speculateK?: readonly number[];
  readonly log?: (message: string) => void;
  /** Told where the members run (device, layers on the GPU, threads) once they are loaded. */
  readonly onBackend?: (backend: BackendReport) => void;
}

export const peakRssMiB = (): number => process.resourceUsage().maxRSS / 1024;

/** `k`: the pieces drafted per round, for a speculative row. */
function row(setup: string, system: string, r: GenerationResult, k?: number): BenchRow {
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
    ...(r.speculation && k !== undefined ? { speculation: { k, acceptedShare: r.speculation.drafted ? r.speculation.accepted / r.speculation.drafted : 0 } } : {}),
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
  const runs: [string, GenerateOptions][] = spec.members.map((m) => [`${m.name} alone`, { only: m.name, gate: null, speculate: null }]);
  if (spec.members.length > 1) {
    // GaC and UniTE need nothing more than the members; the config's own method (EVA, DeePEn) is measured too.
    const methods = options.methods ?? [...new Set<MethodName>(["gac", "unite", "bytes", ...(spec.method ? [spec.method] : [])])];
    for (const [label, methodOptions] of methods.flatMap(methodRuns)) {
      runs.push([label, { ...methodOptions, gate: null, speculate: null }]);
      if (hasPrimary) runs.push([`${label} gated ${threshold}`, { ...methodOptions, gate: { threshold }, speculate: null }]);
    }
    const drafter = spec.members.find((m) => m.primary)?.name ?? spec.members[0]!.name;
    for (const k of options.speculateK ?? [2, 4, 8]) runs.push([`GaC speculate k=${k} (${drafter} drafts)`, { method: "gac", gate: null, speculate: { k, draft: drafter } }]);
  }
  if (!hasPrimary && spec.members.length > 1) options.log?.("  no member has primary: true, so the gated rows are left out");
  // Every row but the speculative ones asks for no speculation, whatever the config says. With
  // `speculate` in the config the members get side sequences (twice the KV cache), which the
  // speculative rows then use; without it those rows run on one sequence per member.
  const ensemble = await Ensemble.create({ ...spec, gate: undefined, stop: [] });
  options.onBackend?.(ensemble.backend);
  const rows: BenchRow[] = [];
  try {
    await ensemble.generate({ text: options.prompt }, { maxSteps: 4, gate: null, speculate: null }); // warm-up
    for (const [system, generateOptions] of runs) {
      // Each row starts from empty caches: kept reads of an earlier row would serve the same prompt.
      await ensemble.forgetReads();
      // No stop strings and greedy decoding: every row generates `steps` steps unless a member ends the text.
      const result = await ensemble.generate(
        { text: options.prompt },
        { ...generateOptions, maxSteps: options.steps, maxTokens: Infinity, stop: [], sampling: { temperature: 0 } },
      );
      const r = row(options.setup, system, result, generateOptions.speculate?.k);
      rows.push(r);
      options.log?.(
        `  ${options.setup} · ${system}: ${r.tokensPerSecond.toFixed(1)} tok/s, engine ${r.engineMsPerStep.toFixed(2)} ms/step (${(100 * r.engineShare).toFixed(1)} %)` +
          (r.speculation ? `, ${(100 * r.speculation.acceptedShare).toFixed(0)} % of drafted pieces kept` : ""),
      );
    }
  } finally {
    await ensemble.dispose();
  }
  return rows;
}

export function benchTable(rows: readonly BenchRow[]): string {
  const header =
    "| setup | system | steps | tok/s | ms/step | words | ms/word | members ms/step | engine ms/step (extraction · sync · combination) | engine share | ensembled | escalated steps | drafts kept | peak RSS so far |";
  const line = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";
  let previous = "";
  const body = rows.map((r) => {
    const setup = r.setup === previous ? "" : r.setup;
    previous = r.setup;
    return `| ${setup} | ${r.system} | ${r.steps} | ${r.tokensPerSecond.toFixed(1)} | ${r.msPerStep.toFixed(2)} | ${r.words} | ${r.msPerWord.toFixed(1)} | ${r.memberWallMsPerStep.toFixed(2)} | ${r.engineMsPerStep.toFixed(2)} (${r.extractionMsPerStep.toFixed(2)} · ${r.syncMsPerStep.toFixed(2)} · ${r.combinationMsPerStep.toFixed(2)}) | ${(100 * r.engineShare).toFixed(1)} % | ${(100 * r.ensembledShare).toFixed(0)} % | ${r.escalatedSteps} | ${r.speculation ? `${(100 * r.speculation.acceptedShare).toFixed(0)} %` : ""} | ${r.peakRssMiB.toFixed(0)} MiB |`;
  });
  return [header, line, ...body].join("\n");
}

/**
 * The ratios the speed goals are stated in, per setup, from one run: ensemble GaC step over the
 * slowest member alone, and each speculative row's speed-up over plain GaC and its step over the
 * slowest member alone.
 */
export function benchRatios(rows: readonly BenchRow[]): string {
  const lines: string[] = [];
  for (const setup of new Set(rows.map((r) => r.setup))) {
    const of = rows.filter((r) => r.setup === setup);
    const alone = of.filter((r) => r.system.endsWith(" alone"));
    const gac = of.find((r) => r.system === "GaC");
    if (alone.length === 0 || !gac) continue;
    const slowest = alone.reduce((a, b) => (b.msPerStep > a.msPerStep ? b : a));
    lines.push(`${setup}: GaC step / slowest member alone (${slowest.system}) = ${(gac.msPerStep / slowest.msPerStep).toFixed(2)}`);
    for (const r of of.filter((x) => x.speculation)) {
      lines.push(
        `  ${r.system}: ${(gac.msPerStep / r.msPerStep).toFixed(2)}× plain GaC, step ${(r.msPerStep / slowest.msPerStep).toFixed(2)} × slowest alone, ${(100 * r.speculation!.acceptedShare).toFixed(0)} % of drafts kept`,
      );
    }
  }
  return lines.join("\n");
}
