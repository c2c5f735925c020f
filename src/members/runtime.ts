/**
 * The llama.cpp runtime of this process: node-llama-cpp's CPU, CUDA, Vulkan or Metal binary.
 *
 * One runtime per process: the prebuilt binaries ship libraries under the same names, so a second
 * back end loaded next to the first could bind to the wrong one. The first request decides; later
 * ones reuse it when they can (`auto` takes whatever runs, `false` runs its members with no layers on
 * the GPU) and fail with the fix when they cannot. node-llama-cpp is never allowed to build from
 * source or download (`build: "never"`): a missing back end is an error or, for `auto`, the CPU.
 */
import os from "node:os";
import { getLlama, getLlamaGpuTypes, LlamaLogLevel, type Llama, type LlamaGpuType } from "node-llama-cpp";

/** The config's `gpu`: node-llama-cpp's detection (`auto`), one back end, or the CPU only (`false`). */
export type GpuSetting = "auto" | "cuda" | "vulkan" | "metal" | false;
export const GPU_SETTINGS: readonly GpuSetting[] = ["auto", "cuda", "vulkan", "metal", false];

/** What llama.cpp computes on. */
export type Device = "cpu" | "cuda" | "vulkan" | "metal";

export interface Runtime {
  readonly llama: Llama;
  readonly device: Device;
  /** The setting the runtime was loaded for. */
  readonly requested: GpuSetting;
  /** Why `auto` runs on the CPU, in one line (absent when it found a GPU or was not asked to look). */
  readonly note?: string;
}

export class RuntimeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RuntimeError";
  }
}

const DEVICE_NAMES: Record<Device, string> = { cpu: "the CPU", cuda: "CUDA", vulkan: "Vulkan", metal: "Metal" };

export function deviceOf(gpu: LlamaGpuType): Device {
  return gpu === false ? "cpu" : gpu;
}

export function deviceName(device: Device): string {
  return DEVICE_NAMES[device];
}

let shared: { requested: GpuSetting; runtime: Promise<Runtime> } | undefined;
let loaded: Runtime | undefined;

/** The process's runtime for `gpu` (default `auto`), loading it on first use. */
export async function loadRuntime(gpu: GpuSetting = "auto"): Promise<Runtime> {
  if (!shared) {
    const runtime = startRuntime(gpu);
    shared = { requested: gpu, runtime };
    runtime.then(
      (r) => (loaded = r),
      () => {
        if (shared?.runtime === runtime) shared = undefined;
      },
    );
    return runtime;
  }
  const runtime = await shared.runtime;
  if (gpu === "auto" || gpu === false || gpu === runtime.device) return runtime;
  throw new RuntimeError(
    `gpu: ${gpu} was asked for, but llama.cpp already runs on ${deviceName(runtime.device)} in this process ` +
      `(loaded for gpu: ${String(shared.requested)}); one process holds one back end — use the same gpu setting for every ensemble, or another process`,
  );
}

/** The runtime if one was loaded (or is loading), without loading one. */
export function loadingRuntime(): Promise<Runtime> | undefined {
  return shared?.runtime;
}

/** The runtime once it has loaded. */
export function loadedRuntime(): Runtime | undefined {
  return loaded;
}

async function startRuntime(gpu: GpuSetting): Promise<Runtime> {
  let llama: Llama;
  try {
    llama = await getLlama({
      gpu,
      build: "never",
      skipDownload: true,
      // node-llama-cpp's own fallback warnings go to the console; the note below says it in one line.
      progressLogs: false,
      // node-llama-cpp's default of max(4, cores) made decoding 130–200× slower on a 2-core machine.
      maxThreads: os.availableParallelism(),
      logLevel: LlamaLogLevel.error,
    });
  } catch (error) {
    throw new RuntimeError(await loadFailure(gpu, error as Error));
  }
  const device = deviceOf(llama.gpu);
  if (gpu !== "auto" && gpu !== false && device !== gpu) {
    // node-llama-cpp reads an unavailable type (Metal off macOS, CUDA on Apple silicon) as "auto".
    await llama.dispose();
    throw new RuntimeError(`gpu: ${gpu} is not available on ${os.platform()}/${process.arch} — ${availableAdvice()}`);
  }
  const note = gpu === "auto" && device === "cpu" ? `gpu auto: ${await whyCpu()}; running on the CPU (set gpu: false to skip the check)` : undefined;
  return { llama, device, requested: gpu, ...(note ? { note } : {}) };
}

async function whyCpu(): Promise<string> {
  const detected = await detectedGpus();
  if (detected.length === 0) {
    return os.platform() === "darwin" ? "Metal needs Apple silicon" : "no GPU found (no CUDA or Vulkan libraries on this machine)";
  }
  const packages = detected.map(prebuiltPackage).join(" or ");
  return `${detected.map((type) => DEVICE_NAMES[type]).join(" and ")} found, but node-llama-cpp's prebuilt binary for it did not load (is ${packages} installed?)`;
}

async function loadFailure(gpu: GpuSetting, error: Error): Promise<string> {
  if (gpu === false || gpu === "auto") {
    return `cannot load llama.cpp's prebuilt CPU binary (${error.message}) — reinstall node-llama-cpp (npm install); chorus never builds it from source`;
  }
  const detected = await detectedGpus();
  const found = detected.length === 0 ? "no GPU libraries were found" : `found: ${detected.map((type) => DEVICE_NAMES[type]).join(", ")}`;
  return `gpu: ${gpu}: node-llama-cpp's ${DEVICE_NAMES[gpu]} binary does not load on this machine (${found}) — ${installAdvice(gpu)}; or use gpu: auto (the CPU when no GPU works) or gpu: false`;
}

async function detectedGpus(): Promise<Exclude<Device, "cpu">[]> {
  return (await getLlamaGpuTypes("supported")).filter((type): type is Exclude<LlamaGpuType, false> => type !== false);
}

/** The optional npm package that holds node-llama-cpp's prebuilt binary for a GPU type here. */
function prebuiltPackage(type: Exclude<Device, "cpu">): string {
  const platform = ({ win32: "win", darwin: "mac" } as Record<string, string>)[os.platform()] ?? os.platform();
  return `@node-llama-cpp/${platform}-${process.arch}${type === "metal" ? "-metal" : `-${type}`}`;
}

function installAdvice(gpu: Exclude<Device, "cpu">): string {
  if (gpu === "cuda") return `install the NVIDIA driver and CUDA runtime, and keep ${prebuiltPackage("cuda")} (an optional dependency of node-llama-cpp)`;
  if (gpu === "vulkan") return `install the Vulkan loader and your GPU's Vulkan driver, and keep ${prebuiltPackage("vulkan")}`;
  return "Metal runs on Apple silicon Macs only";
}

function availableAdvice(): string {
  if (os.platform() === "darwin") return process.arch === "arm64" ? "use gpu: metal or auto" : "use gpu: vulkan, auto or false";
  return "use gpu: cuda, vulkan, auto or false";
}
