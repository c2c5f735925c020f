/**
 * Which layers of each local member go on the GPU, when several members share one.
 *
 * node-llama-cpp's own `gpuLayers: "auto"` fits one model into the memory that is free when it
 * loads, so the first member of an ensemble takes what the next ones needed. Here every member's
 * need is known first (per count of layers on the GPU: weights plus its context), members with a
 * fixed count (`max` or a number) get it or the placement fails, and the `auto` members then get
 * layers one at a time, each to the member with the most weight still on the CPU (the slowest
 * member sets an ensemble's pace), until no member's next layer fits.
 */

/** A member's `gpuLayers`: `auto` fits what the GPU holds, `max` puts every layer there, a number that many. */
export type GpuLayersSetting = "auto" | "max" | number;

export interface PlacementCandidate {
  readonly name: string;
  readonly requested: GpuLayersSetting;
  /** Context size the estimate is for (for messages). */
  readonly contextSize: number;
  /** GPU memory in bytes with k layers on the GPU (index k = 0 … totalLayers), context included. */
  readonly vramByLayers: readonly number[];
  /** Weight bytes left on the CPU with k layers on the GPU. */
  readonly cpuBytesByLayers: readonly number[];
}

export interface PlacedMember {
  readonly name: string;
  readonly gpuLayers: number;
  readonly totalLayers: number;
  /** Estimated GPU memory at that placement. */
  readonly vramBytes: number;
}

export class GpuPlacementError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GpuPlacementError";
  }
}

export const totalLayersOf = (c: PlacementCandidate): number => c.vramByLayers.length - 1;

function fixedLayers(c: PlacementCandidate): number | undefined {
  if (c.requested === "max") return totalLayersOf(c);
  if (typeof c.requested === "number") return Math.min(c.requested, totalLayersOf(c));
  return undefined;
}

/**
 * Places every candidate within `budgetBytes` of GPU memory (free memory less node-llama-cpp's
 * padding), or throws a GpuPlacementError saying what each member needs and what to lower.
 * `device` names the GPU in messages ("CUDA").
 */
export function placeOnGpu(candidates: readonly PlacementCandidate[], budgetBytes: number, device: string): PlacedMember[] {
  const layers = candidates.map((c) => fixedLayers(c) ?? 0);
  const used = () => candidates.reduce((sum, c, i) => sum + c.vramByLayers[layers[i]!]!, 0);
  if (used() > budgetBytes) throw new GpuPlacementError(doesNotFit(candidates, layers, budgetBytes, device));

  const auto = candidates.map((c, i) => (fixedLayers(c) === undefined ? i : -1)).filter((i) => i >= 0);
  let remaining = budgetBytes - used();
  for (;;) {
    let best = -1;
    for (const i of auto) {
      const c = candidates[i]!;
      const k = layers[i]!;
      if (k === totalLayersOf(c) || c.vramByLayers[k + 1]! - c.vramByLayers[k]! > remaining) continue;
      if (best < 0 || c.cpuBytesByLayers[k]! > candidates[best]!.cpuBytesByLayers[layers[best]!]!) best = i;
    }
    if (best < 0) break;
    const c = candidates[best]!;
    remaining -= c.vramByLayers[layers[best]! + 1]! - c.vramByLayers[layers[best]!]!;
    layers[best]!++;
  }
  return candidates.map((c, i) => ({ name: c.name, gpuLayers: layers[i]!, totalLayers: totalLayersOf(c), vramBytes: c.vramByLayers[layers[i]!]! }));
}

export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  return `${Math.max(0, Math.round(bytes / 2 ** 20))} MiB`;
}

function doesNotFit(candidates: readonly PlacementCandidate[], layers: readonly number[], budgetBytes: number, device: string): string {
  const needs = candidates.map((c, i) => {
    const k = layers[i]!;
    const what = fixedLayers(c) === undefined ? `its context alone (gpuLayers: auto, ${c.contextSize} tokens)` : `${k} of ${totalLayersOf(c)} layers and a ${c.contextSize}-token context (gpuLayers: ${c.requested})`;
    // The first layer on the GPU brings the context's buffers with it; the others are weights.
    const total = totalLayersOf(c);
    const perLayer = total > 1 ? (c.vramByLayers[total]! - c.vramByLayers[1]!) / (total - 1) : (c.vramByLayers[total]! - c.vramByLayers[0]!);
    return `${c.name} needs ${formatBytes(c.vramByLayers[k]!)} for ${what}, about ${formatBytes(perLayer)} per layer`;
  });
  return (
    `the members do not fit in ${device}'s memory (${formatBytes(Math.max(0, budgetBytes))} usable): ${needs.join("; ")} — ` +
    "lower gpuLayers on a member (gpuLayers: auto splits its layers between the GPU and the CPU), lower its contextSize, or set gpu: false"
  );
}
