/**
 * The llama.cpp runtime of this process: node-llama-cpp's CPU, CUDA, Vulkan or Metal binary.
 *
 * One runtime per process: the prebuilt binaries ship libraries under the same names, so a second
 * back end loaded next to the first could bind to the wrong one. The first request decides; later
 * ones reuse it when they can (`auto` takes whatever runs, `false` runs its members with no layers on
 * the GPU) and fail with the fix when they cannot. node-llama-cpp is never allowed to build from
 * source or download (`build: "never"`): a missing back end is an error or, for `auto`, the CPU.
 *
 * On the CPU, chorus's patched build of node-llama-cpp's binding runs in place of the prebuilt one
 * when `npm run build:llama-addon` has built it for the installed node-llama-cpp (see
 * patchedBinding); else, or with CHORUS_STOCK_BINDING=1, the prebuilt binary runs.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { getLlama, getLlamaGpuTypes, getModuleVersion, LlamaLogLevel, type Llama, type LlamaGpuType } from "node-llama-cpp";

/** The config's `gpu`: node-llama-cpp's detection (`auto`), one back end, or the CPU only (`false`). */
export type GpuSetting = "auto" | "cuda" | "vulkan" | "metal" | false;
export const GPU_SETTINGS: readonly GpuSetting[] = ["auto", "cuda", "vulkan", "metal", false];

/** What llama.cpp computes on. */
export type Device = "cpu" | "cuda" | "vulkan" | "metal";

/**
 * node-llama-cpp's binding that runs: its prebuilt binary (`stock`), or chorus's build of it with the
 * fast-reads patch (`patched`: a read's top k without sorting the vocabulary; same output).
 */
export type Binding = "stock" | "patched";

export interface Runtime {
  readonly llama: Llama;
  readonly device: Device;
  /** The setting the runtime was loaded for. */
  readonly requested: GpuSetting;
  readonly binding: Binding;
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
  const load = () =>
    getLlama({
      gpu,
      build: "never",
      skipDownload: true,
      // node-llama-cpp's own fallback warnings go to the console; the note below says it in one line.
      progressLogs: false,
      // node-llama-cpp's default of max(4, cores) made decoding 130–200× slower on a 2-core machine.
      maxThreads: os.availableParallelism(),
      logLevel: LlamaLogLevel.error,
    });
  let llama: Llama;
  let binding: Binding = "stock";
  try {
    const patched = await patchedBinding();
    if (patched) {
      try {
        const loaded = await withCpuBinding(patched, load);
        llama = loaded.value;
        binding = loaded.replaced ? "patched" : "stock";
      } catch {
        // A patched build that does not load (or breaks the load) leaves the prebuilt binary to run.
        llama = await load();
      }
    } else {
      llama = await load();
    }
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
  return { llama, device, requested: gpu, binding, ...(note ? { note } : {}) };
}

/** Where chorus's patched builds of the binding are cached (scripts/build-llama-addon.ts). */
function addonCacheDir(): string {
  return path.join(process.env.CHORUS_BUILD_CACHE || path.join(os.homedir(), ".cache", "chorus"), "llama-addon");
}

/**
 * The patched binding built for the installed node-llama-cpp on this platform (the newest build
 * when there are several), or undefined: none built, not Linux, or CHORUS_STOCK_BINDING=1.
 */
export async function patchedBinding(): Promise<string | undefined> {
  const stock = process.env.CHORUS_STOCK_BINDING;
  if ((stock !== undefined && stock !== "" && stock !== "0") || process.platform !== "linux") return undefined;
  const root = addonCacheDir();
  if (!existsSync(root)) return undefined;
  const version = await getModuleVersion();
  let best: { binary: string; builtAt: string } | undefined;
  for (const name of readdirSync(root)) {
    const binary = path.join(root, name, "llama-addon.node");
    try {
      const recipe = JSON.parse(readFileSync(path.join(root, name, "recipe.json"), "utf8")) as { nodeLlamaCpp?: string; platform?: string; builtAt?: string };
      if (recipe.nodeLlamaCpp !== version || recipe.platform !== `${process.platform}-${process.arch}` || !existsSync(binary)) continue;
      const builtAt = recipe.builtAt ?? "";
      if (!best || builtAt > best.builtAt) best = { binary, builtAt };
    } catch {
      // a folder without a readable recipe (a build in progress) is not a build
    }
  }
  return best?.binary;
}

/**
 * Runs `load` (node-llama-cpp's getLlama) with its prebuilt CPU binary replaced by `binary`: node
 * loads a binding through process.dlopen, so while `load` runs, a dlopen of
 * @node-llama-cpp/<platform>-<arch>/bins/<platform>-<arch>/llama-addon.node opens `binary` instead.
 * GPU binaries (other packages) load as they are; nothing in node_modules is written. node-llama-cpp
 * still tests the prebuilt binary in a child process first, and loads ggml's CPU variants from its
 * own folder (the same files the patched build links, which it finds by their names).
 */
async function withCpuBinding<T>(binary: string, load: () => Promise<T>): Promise<{ value: T; replaced: boolean }> {
  const target = `${process.platform}-${process.arch}`;
  const suffix = path.join("@node-llama-cpp", target, "bins", target, "llama-addon.node");
  const dlopen = process.dlopen;
  let replaced = false;
  process.dlopen = function (module: object, filename: string, flags?: number) {
    if (path.normalize(filename).endsWith(path.sep + suffix)) {
      replaced = true;
      return flags === undefined ? dlopen.call(process, module, binary) : dlopen.call(process, module, binary, flags);
    }
    return flags === undefined ? dlopen.call(process, module, filename) : dlopen.call(process, module, filename, flags);
  };
  try {
    return { value: await load(), replaced };
  } finally {
    process.dlopen = dlopen;
  }
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
