/**
 * DeePEn's relative representations on generated members with the Llama-3 (128,256 tokens) and
 * Qwen2 (151,669 tokens) vocabularies: anchors, measured build cost per row, dropped mass, and the
 * memory of chorus's sparse artifacts against the reference's dense |V| × |A| float32 matrices.
 *
 *   node --import tsx bench/align-large.ts [--rows 512] [--keep 256]
 *
 * Building every row costs |V| · |A| · width multiply-adds per member (about 7·10¹² here), hours
 * for JavaScript on 2 cores, so the first `--rows` rows of each member are built and timed and
 * the full build time is extrapolated; the artifact size is exact for any row count (every row
 * keeps exactly `keep` entries once |A| ≥ keep).
 */
import { parseArgs } from "node:util";
import { locateEmbeddings, readMatrix } from "../src/align/gguf-tensors.js";
import { buildRelative } from "../src/align/deepen-relative.js";
import { sharedSurfaces } from "../src/align/shared-surfaces.js";
import { vocabularyFromGguf } from "../src/tokens/vocabulary.js";
import { makePresetModel, type PresetName } from "./make-model.js";

const { values } = parseArgs({ options: { rows: { type: "string", default: "512" }, keep: { type: "string", default: "256" } } });
const rows = Number(values.rows);
const keep = Number(values.keep);
const presetNames: PresetName[] = ["llama3-128k", "qwen2-152k"];
const MiB = 2 ** 20;
const peakMiB = () => process.resourceUsage().maxRSS / 1024;

const models = [];
for (const name of presetNames) {
  const made = await makePresetModel(name);
  const tensors = await locateEmbeddings(made.outPath);
  models.push({ name, tensors, vocabulary: vocabularyFromGguf(tensors.info.metadata) });
}
const anchors = sharedSurfaces(models.map((m) => m.vocabulary));
const a = anchors.surfaces.length;
console.log(`anchors (surfaces both vocabularies spell with an ordinary token): ${a}`);
console.log(`keep (entries per row): ${keep}; rows built and timed per member: ${rows}\n`);

let denseTotal = 0;
let sparseTotal = 0;
let projectedSeconds = 0;
const lines = ["| member | vocabulary | read + dequantize | build per row | full build (extrapolated) | dropped mass (mean / max) | sparse R | dense R (reference) |", "|---|---|---|---|---|---|---|---|"];
for (const [i, m] of models.entries()) {
  const t0 = performance.now();
  const data = readMatrix(m.tensors.input);
  const readSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const { stats } = await buildRelative({ data, rows: m.tensors.input.rows, width: m.tensors.input.width }, anchors.ids[i]!, { temperature: 100, keep }, undefined, rows);
  const perRowMs = (performance.now() - t1) / rows;
  const v = m.tensors.input.rows;
  const sparse = (v + 1) * 4 + v * Math.min(keep, a) * 8;
  const dense = v * a * 4;
  denseTotal += dense;
  sparseTotal += sparse;
  projectedSeconds += (perRowMs * v) / 1000;
  lines.push(
    `| ${m.name} | ${v} × ${m.tensors.input.width} | ${readSeconds.toFixed(1)} s | ${perRowMs.toFixed(1)} ms | ${((perRowMs * v) / 3.6e6).toFixed(2)} h | ${stats.droppedMassMean.toFixed(3)} / ${stats.droppedMassMax.toFixed(3)} | ${(sparse / MiB).toFixed(0)} MiB | ${(dense / 2 ** 30).toFixed(1)} GiB |`,
  );
}
console.log(lines.join("\n"));
console.log(
  `\nboth members: sparse ${(sparseTotal / MiB).toFixed(0)} MiB vs dense ${(denseTotal / 2 ** 30).toFixed(1)} GiB (${((100 * sparseTotal) / denseTotal).toFixed(2)} %); ` +
    `full build ≈ ${(projectedSeconds / 3600).toFixed(1)} h on this machine; peak RSS of this run ${peakMiB().toFixed(0)} MiB`,
);
