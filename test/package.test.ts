import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { loadEnsembleConfig } from "../src/config/load.js";
import { S260K, TS656K } from "./helpers/models.js";
import { tempDir } from "./helpers/temp-dir.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
// tsx resolved from here: the command runs in a temporary folder, where `--import tsx` would not find it.
const chorus = (cwd: string, ...args: string[]) => run(process.execPath, ["--import", import.meta.resolve("tsx"), path.join(root, "src/cli/main.ts"), ...args], { cwd });

test("the package ships LICENSE, README, the example configs and the built code, and no source maps", async () => {
  // --ignore-scripts: list what `files` selects without building (prepack builds before a real pack).
  const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: root });
  const [pack] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  const files = pack.files.map((f) => f.path);
  for (const file of ["LICENSE", "README.md", "package.json", "examples/tinystories.yaml", "examples/tinystories-gated.yaml"]) {
    assert.ok(files.includes(file), `${file} is in the package`);
  }
  assert.deepEqual(files.filter((f) => f.endsWith(".map")), [], "no source maps pointing to sources the package does not ship");
  assert.ok(files.every((f) => !f.startsWith("src/") && !f.startsWith("test/")), "sources and tests stay out");
  const tsconfig = JSON.parse(readFileSync(path.join(root, "tsconfig.json"), "utf8")) as { compilerOptions: { sourceMap?: boolean; declarationMap?: boolean } };
  assert.notEqual(tsconfig.compilerOptions.sourceMap, true, "the build emits no source maps");
  assert.notEqual(tsconfig.compilerOptions.declarationMap, true);
  assert.match(readFileSync(path.join(root, "LICENSE"), "utf8"), /^MIT License/);
  assert.equal((JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { license: string }).license, "MIT");
});

test("chorus init writes a commented starter config that loads; with -m its members are those models", async () => {
  const dir = tempDir("chorus-init-");
  const { stderr } = await chorus(dir, "init", "-m", S260K, "-m", TS656K);
  assert.match(stderr, /wrote chorus\.yaml; try: chorus generate -c chorus\.yaml/);
  const text = readFileSync(path.join(dir, "chorus.yaml"), "utf8");
  assert.match(text, /^# chorus ensemble config, written by `chorus init`/);
  assert.match(text, /^# gate: \{ threshold: 0\.9 \}/m, "optional settings are there, commented out");
  const config = await loadEnsembleConfig(path.join(dir, "chorus.yaml"));
  assert.equal(config.method, "gac");
  assert.deepEqual(config.unite, { k: 10 });
  assert.deepEqual(config.members.map((m) => [m.name, m.model, m.primary]), [["stories260K-f32", S260K, true], ["TinyStories-656K-f32", TS656K, false]]);

  // Without -m: placeholders, and it says what to fill in; an existing file is kept unless --force.
  const { stderr: placeholders } = await chorus(dir, "init", "blank.yaml");
  assert.match(placeholders, /put your models in members\[\]\.model/);
  assert.match(readFileSync(path.join(dir, "blank.yaml"), "utf8"), /model: path\/to\/first-model\.gguf/);
  writeFileSync(path.join(dir, "mine.yaml"), "keep me\n");
  await assert.rejects(chorus(dir, "init", "mine.yaml"), (error: { stderr: string }) => /mine\.yaml exists; choose another name, or pass --force/.test(error.stderr));
  assert.equal(readFileSync(path.join(dir, "mine.yaml"), "utf8"), "keep me\n");
});
