/**
 * Builds what EVA or DeePEn needs before generating: per auxiliary member, EVA's map into the main
 * member's vocabulary; per member, DeePEn's relative representation over the shared anchors.
 * Reads only the GGUF files (header + embedding tensors), so `chorus align` never loads a model.
 */
import { locateEmbeddings, readMatrix, type EmbeddingTensors, type TensorLocation } from "./gguf-tensors.js";
import { buildEvaMap, EVA_DEFAULTS, type EmbeddingMatrix, type EvaMapStats, type EvaParams } from "./eva-map.js";
import { buildRelative, DEEPEN_DEFAULTS, type DeepenParams, type RelativeStats } from "./deepen-relative.js";
import { sharedSurfaces } from "./shared-surfaces.js";
import type { SparseRows } from "./sparse-rows.js";
import { vocabularyFromGguf, type Vocabulary } from "../tokens/vocabulary.js";

export type AlignMethod = "eva" | "deepen";

export interface AlignmentSpec {
  readonly method: AlignMethod;
  /** Member names and GGUF paths, in config order. */
  readonly members: readonly { readonly name: string; readonly model: string }[];
  /** Index of the main (pivot) member. */
  readonly mainIndex: number;
  readonly eva?: Partial<EvaParams>;
  readonly deepen?: Partial<DeepenParams>;
}

/** Per member (config order): EVA's map to the main member (none for the main itself) or DeePEn's relative representation. */
export interface Alignment {
  readonly method: AlignMethod;
  readonly mainIndex: number;
  readonly matrices: readonly (SparseRows | undefined)[];
  readonly stats: AlignmentStats;
}

export interface AlignmentStats {
  readonly members: readonly { readonly name: string; readonly vocabulary: number; readonly width: number; readonly eva?: EvaMapStats; readonly deepen?: RelativeStats }[];
  readonly buildMs: number;
}

export type Progress = (stage: string, done: number, total: number) => void;

/** The parameters the alignment depends on (defaults filled in; other keys, e.g. the per-step ones, left out). */
export function methodParams(spec: AlignmentSpec): EvaParams | DeepenParams {
  const pick = <T extends object>(defaults: T, given: Partial<T> | undefined): T =>
    Object.fromEntries(Object.entries(defaults).map(([k, v]) => [k, (given as Record<string, unknown> | undefined)?.[k] ?? v])) as T;
  return spec.method === "eva" ? pick(EVA_DEFAULTS, spec.eva) : pick(DEEPEN_DEFAULTS, spec.deepen);
}

function load(t: TensorLocation): EmbeddingMatrix {
  return { data: readMatrix(t), rows: t.rows, width: t.width };
}

async function open(member: { name: string; model: string }): Promise<{ tensors: EmbeddingTensors; vocabulary: Vocabulary }> {
  try {
    const tensors = await locateEmbeddings(member.model);
    return { tensors, vocabulary: vocabularyFromGguf(tensors.info.metadata) };
  } catch (error) {
    throw new Error(`member '${member.name}': ${(error as Error).message}`);
  }
}

export async function buildAlignment(spec: AlignmentSpec, onProgress?: Progress): Promise<Alignment> {
  const started = performance.now();
  const opened = [];
  for (const m of spec.members) opened.push(await open(m));
  const main = opened[spec.mainIndex]!;
  const names = spec.members.map((m) => m.name);
  const matrices: (SparseRows | undefined)[] = [];
  const memberStats: AlignmentStats["members"][number][] = [];
  if (spec.method === "eva") {
    const params = methodParams(spec) as EvaParams;
    for (let i = 0; i < opened.length; i++) {
      const o = opened[i]!;
      const base = { name: names[i]!, vocabulary: o.tensors.output.rows, width: o.tensors.output.width };
      if (i === spec.mainIndex) {
        matrices.push(undefined);
        memberStats.push(base);
        continue;
      }
      const seeds = sharedSurfaces([o.vocabulary, main.vocabulary]);
      if (seeds.surfaces.length === 0) {
        throw new Error(`members '${names[i]}' and '${names[spec.mainIndex]}' spell no token alike, so EVA has no seed pairs to learn from; use method gac or unite`);
      }
      const { map, stats } = await buildEvaMap(load(o.tensors.output), load(main.tensors.output), { aux: seeds.ids[0]!, main: seeds.ids[1]! }, params, (d, t) =>
        onProgress?.(`EVA map ${names[i]} → ${names[spec.mainIndex]}`, d, t),
      );
      matrices.push(map);
      memberStats.push({ ...base, eva: stats });
    }
  } else {
    const params = methodParams(spec) as DeepenParams;
    const anchors = sharedSurfaces(opened.map((o) => o.vocabulary));
    if (anchors.surfaces.length === 0) {
      throw new Error(`the members (${names.join(", ")}) spell no token alike, so DeePEn has no anchors; use method gac or unite`);
    }
    for (let i = 0; i < opened.length; i++) {
      const o = opened[i]!;
      const { relative, stats } = await buildRelative(load(o.tensors.input), anchors.ids[i]!, params, (d, t) => onProgress?.(`DeePEn relative ${names[i]}`, d, t));
      matrices.push(relative);
      memberStats.push({ name: names[i]!, vocabulary: o.tensors.input.rows, width: o.tensors.input.width, deepen: stats });
    }
  }
  return { method: spec.method, mainIndex: spec.mainIndex, matrices, stats: { members: memberStats, buildMs: performance.now() - started } };
}
