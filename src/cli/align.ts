import type { Command } from "commander";
import type { EnsembleConfig } from "../config/schema.js";
import { addEnsembleOptions, ensembleFromOptions } from "./ensemble-options.js";
import { defaultCacheDir, prepareAlignment } from "../align/cache.js";
import { isIdSpaceMethod } from "../engine/id-space.js";
import { sparseBytes } from "../align/sparse-rows.js";
import { progressBar } from "./progress.js";

interface AlignFlags {
  rebuild?: boolean;
  json?: boolean;
}

export function registerAlign(program: Command): void {
  const command = program
    .command("align")
    .description("prepare and cache what the config's method (eva or deepen) needs from the members' embeddings");
  addEnsembleOptions(command)
    .option("--rebuild", "rebuild even when a valid cached alignment exists")
    .option("--json", "print the alignment's statistics as JSON")
    .action(async (flags: AlignFlags, self: Command) => {
      const method = self.opts<{ method?: string }>().method;
      if (method !== undefined && !isIdSpaceMethod(method)) {
        throw new Error(`--method: expected eva or deepen (the methods that need an alignment), got '${method}'`);
      }
      await runAlign(flags, (await ensembleFromOptions(self)).config);
    });
}

async function runAlign(flags: AlignFlags, config: EnsembleConfig): Promise<void> {
  const method = config.method;
  if (!isIdSpaceMethod(method)) {
    process.stderr.write(`method ${method} needs no alignment (only eva and deepen do; try --method eva); nothing to do\n`);
    return;
  }
  const members = config.members.map((m) => {
    if (!m.model) throw new Error(`member '${m.name}': ${method} reads the embeddings from the member's GGUF file, and this member has none`);
    return { name: m.name, model: m.model };
  });
  const primary = config.members.findIndex((m) => m.primary);
  const mainIndex = config.main !== undefined ? config.members.findIndex((m) => m.name === config.main) : Math.max(0, primary);
  const bar = progressBar();
  const started = performance.now();
  const prepared = await prepareAlignment(
    { method, members, mainIndex, eva: config.eva, deepen: config.deepen },
    {
      cacheDir: config.cacheDir ?? defaultCacheDir(),
      onProgress: bar.update,
      onNote: (message) => {
        bar.end();
        process.stderr.write(`chorus align: ${message}\n`);
      },
      rebuild: flags.rebuild,
      cacheWriteErrors: "throw",
    },
  ).finally(bar.end);
  const a = prepared.alignment;
  const summary = {
    method: a.method,
    main: members[a.mainIndex]!.name,
    source: prepared.source,
    file: prepared.file,
    seconds: (performance.now() - started) / 1000,
    buildSeconds: a.stats.buildMs / 1000,
    bytes: a.matrices.reduce((sum, m) => sum + (m ? sparseBytes(m) : 0), 0),
    members: a.stats.members,
  };
  if (flags.json) {
    process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
    return;
  }
  process.stdout.write(`${a.method} alignment ${prepared.source === "cache" ? "loaded from" : "built and saved to"} ${prepared.file}\n`);
  const size = summary.bytes >= 2 ** 20 ? `${(summary.bytes / 2 ** 20).toFixed(1)} MiB` : `${(summary.bytes / 1024).toFixed(1)} KiB`;
  process.stdout.write(`  main member: ${summary.main}; ${size}; built in ${summary.buildSeconds.toFixed(1)} s\n`);
  for (const m of a.stats.members) {
    if (m.eva) process.stdout.write(`  ${m.name} → ${summary.main}: ${m.eva.seeds} seed pairs, ${m.eva.keptRows}/${m.vocabulary} tokens mapped (${m.eva.droppedUniformRows} near-uniform rows dropped), ${m.eva.entries} entries\n`);
    if (m.deepen) process.stdout.write(`  ${m.name}: ${m.deepen.anchors} anchors, ${m.deepen.entries} entries, dropped mass mean ${m.deepen.droppedMassMean.toExponential(2)} max ${m.deepen.droppedMassMax.toExponential(2)}\n`);
  }
}
