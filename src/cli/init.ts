import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { membersFromModelFlags, UsageError } from "./ensemble-options.js";

interface InitFlags {
  model?: string[];
  force?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerInit(program: Command): void {
  program
    .command("init")
    .description("write a commented starter config (every setting with its default)")
    .argument("[file]", "where to write it", "chorus.yaml")
    .option("-m, --model <model>", "a member's model, repeatable (as for generate); without -m the members are placeholders to fill in", collect)
    .option("--force", "overwrite the file if it exists")
    .action((file: string, flags: InitFlags) => {
      if (existsSync(file) && !flags.force) throw new UsageError(`${file} exists; choose another name, or pass --force to overwrite it`);
      writeFileSync(file, starterConfig(path.dirname(path.resolve(file)), flags.model ?? []));
      const next = `chorus generate -c ${file} "Once upon a time"`;
      process.stderr.write(
        flags.model?.length
          ? `wrote ${file}; try: ${next}\n`
          : `wrote ${file}; put your models in members[].model (a .gguf path, an Ollama name or hf:user/repo), then: ${next}\n`,
      );
    });
}

/**
 * A model as the config file should spell it: a file at or below the config's folder relative to
 * it (the folder can move), any other file absolute, a reference as given.
 */
function modelInConfig(model: string, configDir: string): string {
  const absolute = path.resolve(model);
  if (!existsSync(absolute)) return model;
  const relative = path.relative(configDir, absolute);
  return relative.startsWith("..") || path.isAbsolute(relative) ? absolute : relative;
}

const yamlString = (text: string) => (/^[\w./~+-][\w./~:+@-]*$/.test(text) && !/^(true|false|null|yes|no|on|off|~)$/i.test(text) ? text : JSON.stringify(text));

/** The starter config's text: the settings with their defaults, the optional ones commented out. */
export function starterConfig(configDir: string, models: readonly string[]): string {
  const members = models.length > 0
    ? membersFromModelFlags(models).map((m) => ({ ...m, model: modelInConfig(m.model, configDir) }))
    : [
        { name: "first", model: "path/to/first-model.gguf", primary: true as const },
        { name: "second", model: "path/to/second-model.gguf" },
      ];
  const memberLines = members.flatMap((m, i) => [
    `  - name: ${m.name}`,
    `    model: ${yamlString(m.model)}${i === 0 ? "   # a .gguf path (relative to this file), an Ollama name (llama3.2:1b), or hf:user/repo[:quant]" : ""}`,
    ...(m.primary ? ["    primary: true          # decides alone under gating; maxTokens counts its tokens"] : []),
    `    weight: 1`,
    ...(i === 0 ? ["    # contextSize: 2048      # this member's context (default: the top-level contextSize)", "    # chatTemplate: ...      # a Jinja chat template instead of the GGUF's own"] : []),
  ]);
  return [
    "# chorus ensemble config, written by `chorus init`. Only `members` is required; the values",
    "# below are the defaults. Run it with:  chorus generate -c THIS_FILE \"Once upon a time\"",
    "# (the same settings are flags too: chorus generate -m A.gguf -m B.gguf --method unite …)",
    "",
    "method: gac                # gac | unite | eva | deepen",
    "heal: true                 # token healing where one member's token ends inside another's",
    "maxTokens: 128             # length limit, in tokens of the primary member (else the first)",
    "unite:",
    "  k: 10                    # UniTE's k: each member's top-k texts form the union",
    "# gate: { threshold: 0.9 } # key-token gating: the primary decides alone above this probability",
    "# sampling: { temperature: 0, topP: 1, topK: 0, seed: 42 }   # temperature 0 = greedy; topK: sampling's",
    "# stop: [\"\\n\\n\"]            # stop strings",
    "# contextSize: 1024        # per member; default the model's training context, at most 4096",
    "# threads: 1               # per member; default cores / members",
    "# main: first              # EVA/DeePEn: the member whose vocabulary the others map into",
    "# cacheDir: .chorus-cache  # EVA/DeePEn alignment cache; default $CHORUS_CACHE or ~/.cache/chorus/align",
    "",
    "members:",
    ...memberLines,
    "",
  ].join("\n");
}
