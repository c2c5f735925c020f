/**
 * Each local member's GPU layers, from node-llama-cpp's memory estimates (`GgufInsights`: the
 * exact tensor sizes of each layer, and the KV cache and compute buffers of a context) and the
 * GPU's free memory, placed together by `placeOnGpu`.
 */
import { GgufInsights, readGgufFileInfo, type Llama } from "node-llama-cpp";
import { placeOnGpu, type GpuLayersSetting, type PlacedMember, type PlacementCandidate } from "./gpu-placement.js";
import { MemberError } from "./member.js";

export interface GpuFitRequest {
  readonly name: string;
  readonly modelPath: string;
  readonly gpuLayers: GpuLayersSetting;
  /** The member's context size; default: the model's training context, at most 4096 (as LlamaMember does). */
  readonly contextSize?: number;
  /** Sequences of the context, each with a KV cache of `contextSize` tokens; default 1. */
  readonly sequences?: number;
}

/** The tokenizer's arrays are the bulk of a large vocabulary's header and say nothing about memory. */
const KEYS_NOT_NEEDED = ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"];

/** llama.cpp rounds a context up to a multiple of 256 tokens. */
const roundContext = (tokens: number) => Math.ceil(tokens / 256) * 256;

export async function candidateFor(llama: Llama, request: GpuFitRequest): Promise<PlacementCandidate> {
  let insights: GgufInsights;
  try {
    insights = await GgufInsights.from(await readGgufFileInfo(request.modelPath, { ignoreKeys: KEYS_NOT_NEEDED, logWarnings: false }), llama);
  } catch (error) {
    throw new MemberError(request.name, `cannot read ${request.modelPath} to estimate its GPU memory: ${(error as Error).message}`);
  }
  const contextSize = roundContext(request.contextSize ?? Math.min(insights.trainContextSize ?? 4096, 4096));
  const vramByLayers: number[] = [];
  const cpuBytesByLayers: number[] = [];
  for (let k = 0; k <= insights.totalLayers; k++) {
    const model = insights.estimateModelResourceRequirements({ gpuLayers: k });
    const sequences = request.sequences ?? 1;
    const context = insights.estimateContextResourceRequirements({ contextSize, modelGpuLayers: k, sequences, batchSize: Math.min(contextSize * sequences, 512) });
    // Whole bytes, so that placing layers adds and subtracts exactly.
    vramByLayers.push(Math.ceil(model.gpuVram + context.gpuVram));
    cpuBytesByLayers.push(Math.ceil(model.cpuRam));
  }
  return { name: request.name, requested: request.gpuLayers, contextSize, vramByLayers, cpuBytesByLayers };
}

/** Layers on the GPU for each request, all of them fitting the GPU's free memory together. */
export async function fitOnGpu(llama: Llama, requests: readonly GpuFitRequest[], deviceLabel: string): Promise<PlacedMember[]> {
  const candidates = await Promise.all(requests.map((r) => candidateFor(llama, r)));
  const vram = await llama.getVramState();
  return placeOnGpu(candidates, vram.free - llama.vramPaddingSize, deviceLabel);
}
