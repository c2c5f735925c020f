/** Where an ensemble's members run, for `chorus bench`, `--json` and the server's /health. */
import type { Member, MemberPlacement } from "./member.js";
import { deviceName, loadedRuntime, type Binding, type Device, type GpuSetting } from "./runtime.js";

export interface BackendReport {
  /** The config's setting. */
  readonly requested: GpuSetting;
  /** Where the members' layers run: the GPU's back end when any member has layers there, else "cpu". */
  readonly device: Device;
  /**
   * node-llama-cpp's binding that runs the local members: `patched` (chorus's fast-reads build,
   * `npm run build:llama-addon`) or `stock` (its prebuilt binary). Absent with no local member.
   */
  readonly binding?: Binding;
  /** One line when `auto` found no GPU (the CLI prints it). */
  readonly note?: string;
  readonly members: readonly MemberBackend[];
}

/** A local member's placement, or `remote` for a member on a server. */
export type MemberBackend = ({ readonly name: string; readonly where: "local" } & MemberPlacement) | { readonly name: string; readonly where: "remote" };

export function describeBackend(members: readonly Member[], requested: GpuSetting = "auto"): BackendReport {
  const runtime = loadedRuntime();
  const local = members.some((m) => m.placement !== undefined);
  return {
    requested,
    device: members.find((m) => m.placement !== undefined && m.placement.device !== "cpu")?.placement?.device ?? "cpu",
    ...(local && runtime ? { binding: runtime.binding } : {}),
    ...(local && requested === "auto" && runtime?.note ? { note: runtime.note } : {}),
    members: members.map((m) => (m.placement ? { name: m.name, where: "local", ...m.placement } : { name: m.name, where: "remote" })),
  };
}

/** One line: the device, then each member's layers on the GPU and threads. */
export function formatBackend(report: BackendReport): string {
  const members = report.members.map((m) =>
    m.where === "remote" ? `${m.name} on its server` : `${m.name} ${m.gpuLayers}/${m.totalLayers} layers on the GPU, ${m.threads} thread${m.threads === 1 ? "" : "s"}`,
  );
  const binding = report.binding ? `, binding: ${report.binding === "patched" ? "patched (fast reads)" : "stock"}` : "";
  return `llama.cpp on ${deviceName(report.device)} (gpu: ${String(report.requested)}${binding}): ${members.join("; ")}`;
}
