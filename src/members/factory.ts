import { statSync } from "node:fs";
import os from "node:os";
import { fitOnGpu } from "./gpu-fit.js";
import { LlamaMember } from "./llama.js";
import { MemberError, type Member } from "./member.js";
import { RemoteMember } from "./remote.js";
import { deviceName, loadRuntime, type GpuSetting, type Runtime } from "./runtime.js";
import type { MemberSpec } from "./spec.js";
import { defaultThreads } from "./threads.js";

export interface MemberDefaults {
  /** CPU threads of each local member; default: `defaultThreads` (members/threads.ts). */
  readonly threads?: number;
  readonly contextSize?: number;
  /** Decode one token per llama.cpp call (bit-identical reads however tokens were batched). */
  readonly exactReads?: boolean;
  /** Where local members run: see members/runtime.ts (default `auto`). */
  readonly gpu?: GpuSetting;
  /** Sequences of each local member's context (generations at once); default 1. */
  readonly parallel?: number;
  /** A second sequence per generation for speculation (see LlamaMemberOptions.sidePaths). */
  readonly sidePaths?: boolean;
}

/** A local member as `createMember` loads it: on this runtime, with this many layers on the GPU. */
interface LocalPlan {
  readonly runtime: Runtime;
  readonly gpuLayers: number;
  readonly threads: number;
}

/**
 * Builds every member the specs describe, in order: the runtime first (when a member runs here),
 * then the GPU layers of all local members together, then their CPU threads. On failure the
 * members already built are disposed.
 */
export async function createMembers(specs: readonly MemberSpec[], defaults: MemberDefaults = {}): Promise<Member[]> {
  const locals = specs.filter((s) => s.url === undefined);
  const plans = locals.length > 0 ? await planLocals(locals, defaults) : new Map<MemberSpec, LocalPlan>();
  const members: Member[] = [];
  try {
    for (const spec of specs) {
      members.push(await createMember(spec, { contextSize: defaults.contextSize, exactReads: defaults.exactReads, parallel: defaults.parallel, sidePaths: defaults.sidePaths, threads: 1, ...plans.get(spec) }));
    }
  } catch (error) {
    await Promise.all(members.map((m) => m.dispose()));
    throw error;
  }
  return members;
}

async function planLocals(locals: readonly MemberSpec[], defaults: MemberDefaults): Promise<Map<MemberSpec, LocalPlan>> {
  const gpu = defaults.gpu ?? "auto";
  const runtime = await loadRuntime(gpu);
  const withModel = locals.filter((s) => s.model !== undefined);
  const layers = new Map<MemberSpec, { gpuLayers: number; totalLayers: number }>();
  if (runtime.device !== "cpu" && gpu !== false) {
    const placed = await fitOnGpu(
      runtime.llama,
      withModel.map((s) => ({ name: s.name, modelPath: s.model!, gpuLayers: s.gpuLayers ?? "auto", contextSize: s.contextSize ?? defaults.contextSize, sequences: (defaults.parallel ?? 1) * (defaults.sidePaths ? 2 : 1) })),
      deviceName(runtime.device),
    );
    withModel.forEach((s, i) => layers.set(s, placed[i]!));
  }
  const chosen =
    defaults.threads !== undefined
      ? withModel.map(() => defaults.threads!)
      : defaultThreads(
          withModel.map((s) => {
            const placed = layers.get(s);
            const cpuShare = placed && placed.totalLayers > 0 ? 1 - placed.gpuLayers / placed.totalLayers : 1;
            return { cpuBytes: fileSize(s.model!) * cpuShare };
          }),
          os.availableParallelism(),
        );
  return new Map(withModel.map((s, i) => [s, { runtime, gpuLayers: layers.get(s)?.gpuLayers ?? 0, threads: chosen[i]! }]));
}

/** A missing file is LlamaMember.load's to report, with its own message. */
function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Builds the member a spec describes: a model in this process, or (with `url`) one on a server. */
export async function createMember(
  spec: MemberSpec,
  defaults: { threads: number; contextSize?: number; parallel?: number; sidePaths?: boolean; gpuLayers?: number; runtime?: Runtime; exactReads?: boolean },
): Promise<Member> {
  if (spec.url !== undefined) {
    if (spec.tokenizer === undefined) {
      throw new MemberError(spec.name, "a remote member needs `tokenizer`: the served model's tokenizer.json, or a GGUF with its vocabulary");
    }
    const apiKey = spec.apiKeyEnv === undefined ? undefined : process.env[spec.apiKeyEnv];
    if (spec.apiKeyEnv !== undefined && !apiKey) {
      throw new MemberError(spec.name, `apiKeyEnv names $${spec.apiKeyEnv}, which is not set; export it with the server's API key`);
    }
    return RemoteMember.connect({
      name: spec.name,
      url: spec.url,
      api: spec.api,
      model: spec.model,
      tokenizerPath: spec.tokenizer,
      chatTemplate: spec.chatTemplate,
      contextSize: spec.contextSize,
      timeoutMs: spec.timeoutMs,
      retries: spec.retries,
      maxLogprobs: spec.maxLogprobs,
      apiKey,
    });
  }
  if (spec.model === undefined) throw new MemberError(spec.name, "a member needs `model` (a GGUF path) or `url` (a server)");
  return LlamaMember.load({
    name: spec.name,
    modelPath: spec.model,
    contextSize: spec.contextSize ?? defaults.contextSize,
    threads: defaults.threads,
    exactReads: defaults.exactReads,
    chatTemplate: spec.chatTemplate,
    gpuLayers: defaults.gpuLayers,
    runtime: defaults.runtime,
    parallel: defaults.parallel,
    sidePaths: defaults.sidePaths,
  });
}
