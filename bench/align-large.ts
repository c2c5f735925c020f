/**
 * DeePEn's relative representations on generated members with the Llama-3 (128,256 tokens) and
 * Qwen2 (151,669 tokens) vocabularies: anchors, measured build cost per row, dropped mass, and the
 * memory of chorus's sparse artifacts against the reference's dense |V| × |A| float32 matrices;
 * then EVA's CSLS passes (Llama-3 auxiliary → Qwen2 main). Each is timed on the JavaScript path
 * and on the WebAssembly kernel over worker threads, in the same run.
 *
 *   node --import tsx bench/align-large.ts [--rows 512] [--wasm-rows 4096] [--eva-rows 32] [--wasm-eva-rows 512] [--keep 256] [--backend both|js|wasm]
 *
 * Building every row costs |V| · |A| · width multiply-adds per member (about 7·10¹² here), so the
 * first `--rows` rows of each member (`--wasm-rows` for the kernel, whose timing includes starting
 * its workers) are built and timed and the full build time is extrapolated; the artifact size is
 * exact for any row count (every row keeps exactly `keep` entries once |A| ≥ keep). Rows both
 * backends built are compared. EVA is timed on the first `--eva-rows` (`--wasm-eva-rows`)
 * auxiliary tokens against every main token, from its first progress report to its last (both
 * CSLS passes; the normalization, seed covariance, SVD and projection before them are reported
 * apart); its maps are compared when both backends mapped as many rows.
 */
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { locateEmbeddings, readMatrix } from "../src/align/gguf-tensors.js";
import { buildRelative } from "../src/align/deepen-relative.js";
import { buildEvaMap } from "../src/align/eva-map.js";
import { sharedSurfaces } from "../src/align/shared-surfaces.js";
import type { SparseRows } from "../src/align/sparse-rows.js";
import { vocabularyFromGguf } from "../src/tokens/vocabulary.js";
import { makePresetModel, type PresetName } from "./make-model.js";

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "512" },
    "wasm-rows": { type: "string", default: "4096" },
    "eva-rows": { type: "string", default: "32" },
    "wasm-eva-rows": { type: "string", default: "512" },
    keep: { type: "string", default: "256" },
    backend: { type: "string", default: "both" },
  },
});
if (!["both", "js", "wasm"].includes(values.backend)) throw new Error(`--backend: both, js or wasm, got '${values.backend}'`);
const backends = values.backend === "both" ? (["js", "wasm"] as const) : ([values.backend] as ["js"] | ["wasm"]);
const rowsFor = { js: Number(values.rows), wasm: Number(values["wasm-rows"]) };
const evaRowsFor = { js: Number(values["eva-rows"]), wasm: Number(values["wasm-eva-rows"]) };
const keep = Number(values.keep);
const presetNames: PresetName[] = ["llama3-128k", "qwen2-152k"];
const MiB = 2 ** 20;
const peakMiB = () => process.resourceUsage().maxRSS / 1024;
const hours = (ms: number) => `${(ms / 3.6e6).toFixed(2)} h`;

const models = [];
for (const name of presetNames) {
  const made = await makePresetModel(name);
  const tensors = await locateEmbeddings(made.outPath);
  models.push({ name, tensors, vocabulary: vocabularyFromGguf(tensors.info.metadata) });
}
const anchors = sharedSurfaces(models.map((m) => m.vocabulary));
const a = anchors.surfaces.length;
console.log(`anchors (surfaces both vocabularies spell with an ordinary token): ${a}`);
console.log(`keep (entries per row): ${keep}; rows built and timed per member: ${backends.map((b) => `${rowsFor[b]} (${b})`).join(", ")}; ${availableParallelism()} cores\n`);

/** Rows 0..rows-1 of two builds: rows whose kept columns differ as sets, and the largest relative difference of a value both kept. */
function compare(x: SparseRows, y: SparseRows, rows: number): { differingRows: number; maxRelative: number } {
  let differingRows = 0;
  let maxRelative = 0;
  for (let r = 0; r < rows; r++) {
    const other = new Map<number, number>();
    for (let e = y.rowStart[r]!; e < y.rowStart[r + 1]!; e++) other.set(y.cols[e]!, y.vals[e]!);
    let same = x.rowStart[r + 1]! - x.rowStart[r]! === other.size;
    for (let e = x.rowStart[r]!; e < x.rowStart[r + 1]!; e++) {
      const v = other.get(x.cols[e]!);
      if (v === undefined) same = false;
      else maxRelative = Math.max(maxRelative, Math.abs(v - x.vals[e]!) / Math.abs(x.vals[e]!));
    }
    if (!same) differingRows++;
  }
  return { differingRows, maxRelative };
}

let denseTotal = 0;
let sparseTotal = 0;
const projectedMs = { js: 0, wasm: 0 };
const lines = [
  "| member | vocabulary | backend | rows timed | build per row | full build (extrapolated) | dropped mass (mean / max) | sparse R | dense R (reference) |",
  "|---|---|---|---|---|---|---|---|---|",
];
const agreement: string[] = [];
for (const [i, m] of models.entries()) {
  const t0 = performance.now();
  const data = readMatrix(m.tensors.input);
  console.log(`${m.name}: read + dequantize ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const v = m.tensors.input.rows;
  const sparse = (v + 1) * 4 + v * Math.min(keep, a) * 8;
  const dense = v * a * 4;
  denseTotal += dense;
  sparseTotal += sparse;
  const built: Partial<Record<"js" | "wasm", SparseRows>> = {};
  const perRow: Partial<Record<"js" | "wasm", number>> = {};
  for (const backend of backends) {
    const rows = Math.min(rowsFor[backend], v);
    // A fresh copy: buildRelative normalizes in place.
    const e = { data: data.slice(), rows: v, width: m.tensors.input.width };
    const t1 = performance.now();
    const { relative, stats } = await buildRelative(e, anchors.ids[i]!, { temperature: 100, keep }, undefined, rows, backend);
    const perRowMs = (performance.now() - t1) / rows;
    built[backend] = relative;
    perRow[backend] = perRowMs;
    projectedMs[backend] += perRowMs * v;
    lines.push(
      `| ${m.name} | ${v} × ${m.tensors.input.width} | ${backend} | ${rows} | ${perRowMs.toFixed(2)} ms | ${hours(perRowMs * v)} | ${stats.droppedMassMean.toFixed(3)} / ${stats.droppedMassMax.toFixed(3)} | ${(sparse / MiB).toFixed(0)} MiB | ${(dense / 2 ** 30).toFixed(1)} GiB |`,
    );
  }
  if (built.js && built.wasm) {
    const { differingRows, maxRelative } = compare(built.js, built.wasm, Math.min(built.js.rows, built.wasm.rows));
    agreement.push(
      `${m.name}: wasm ${(perRow.js! / perRow.wasm!).toFixed(1)}× faster per row; first ${Math.min(built.js.rows, built.wasm.rows)} rows: ${differingRows} with other kept columns, values within ${maxRelative.toExponential(1)} relative`,
    );
  }
}
console.log(lines.join("\n"));
console.log(
  `\nboth members: sparse ${(sparseTotal / MiB).toFixed(0)} MiB vs dense ${(denseTotal / 2 ** 30).toFixed(1)} GiB (${((100 * sparseTotal) / denseTotal).toFixed(2)} %); ` +
    `full build ≈ ${backends.map((b) => `${(projectedMs[b] / 3.6e6).toFixed(2)} h (${b})`).join(", ")} on this machine`,
);
if (agreement.length > 0) console.log(agreement.join("\n"));

// EVA: Llama-3's output embeddings mapped into Qwen2's.
const [auxModel, mainModel] = models as [(typeof models)[0], (typeof models)[0]];
const seeds = sharedSurfaces([auxModel.vocabulary, mainModel.vocabulary]);
const auxData = readMatrix(auxModel.tensors.output);
const mainData = readMatrix(mainModel.tensors.output);
const evaLines = ["| backend | aux rows timed | before the passes (normalize, seed covariance, SVD, projection) | CSLS passes per aux row | all aux rows (extrapolated) |", "|---|---|---|---|---|"];
const evaBuilt: Partial<Record<"js" | "wasm", SparseRows>> = {};
const evaPerRow: Partial<Record<"js" | "wasm", number>> = {};
for (const backend of backends) {
  const rows = evaRowsFor[backend];
  // Fresh copies: buildEvaMap normalizes and centers in place.
  const aux = { data: auxData.slice(), rows: auxModel.tensors.output.rows, width: auxModel.tensors.output.width };
  const main = { data: mainData.slice(), rows: mainModel.tensors.output.rows, width: mainModel.tensors.output.width };
  let first: { at: number; done: number } | undefined;
  const onProgress = (done: number) => {
    first ??= { at: performance.now(), done };
  };
  const started = performance.now();
  const { map } = await buildEvaMap(aux, main, { aux: seeds.ids[0]!, main: seeds.ids[1]! }, undefined, onProgress, rows, backend);
  const ended = performance.now();
  // progress counts both passes: 2 per auxiliary row
  const perRowMs = ((ended - first!.at) / (2 * rows - first!.done)) * 2;
  evaBuilt[backend] = map;
  evaPerRow[backend] = perRowMs;
  evaLines.push(`| ${backend} | ${rows} | ${((first!.at - started) / 1000).toFixed(1)} s | ${perRowMs.toFixed(1)} ms | ${hours(perRowMs * auxModel.tensors.output.rows)} |`);
}
console.log(`\nEVA ${auxModel.name} → ${mainModel.name}: ${seeds.surfaces.length} seed pairs, r = ${Math.min(auxModel.tensors.output.width, mainModel.tensors.output.width)}, main vocabulary ${mainModel.tensors.output.rows}`);
console.log(evaLines.join("\n"));
if (evaPerRow.js && evaPerRow.wasm) console.log(`wasm ${(evaPerRow.js / evaPerRow.wasm).toFixed(1)}× faster per aux row`);
// r_T comes from the rows mapped, so only maps of as many rows compare.
if (evaBuilt.js && evaBuilt.wasm && evaBuilt.js.rows === evaBuilt.wasm.rows) {
  const { differingRows, maxRelative } = compare(evaBuilt.js, evaBuilt.wasm, evaBuilt.js.rows);
  console.log(`the ${evaBuilt.js.rows} rows: ${differingRows} with other matches, scores within ${maxRelative.toExponential(1)} relative`);
}
console.log(`\npeak RSS of this run ${peakMiB().toFixed(0)} MiB`);
