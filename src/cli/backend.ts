/** `--gpu` for every command that runs models, and the one-line note when `gpu: auto` finds no GPU. */
import { InvalidArgumentError } from "commander";
import type { EnsembleConfig } from "../config/schema.js";
import { GPU_SETTINGS, loadRuntime, type GpuSetting } from "../members/runtime.js";

export function parseGpu(value: string): GpuSetting {
  const setting = GPU_SETTINGS.find((s) => String(s) === value);
  if (setting === undefined) {
    throw new InvalidArgumentError(`--gpu must be auto, cuda, vulkan, metal or false (false runs on the CPU), got '${value}'`);
  }
  return setting;
}

export const GPU_OPTION_HELP = "where local members run: auto (a GPU when there is one), cuda, vulkan, metal, or false for the CPU; overrides the config";

/**
 * Loads llama.cpp for the config's members (when one runs in this process) before they load, and
 * prints the runtime's note (`gpu: auto` running on the CPU) on stderr.
 */
export async function prepareBackend(config: EnsembleConfig): Promise<void> {
  if (!config.members.some((m) => m.url === undefined)) return;
  const runtime = await loadRuntime(config.gpu ?? "auto");
  if (runtime.note) process.stderr.write(`chorus: ${runtime.note}\n`);
}
