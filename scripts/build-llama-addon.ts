/**
 * Builds node-llama-cpp's binding (its `llama-addon.node`) with chorus's fast-reads patch
 * (native/addon-fast-reads.patch), CPU only and offline: `npm run build:llama-addon`.
 *
 * Only the addon is compiled (node_modules/node-llama-cpp/llama/addon/*.cpp, patched in a copy),
 * against the headers of the llama.cpp commit node-llama-cpp ships (the source tree shared with
 * llama-server, see llamaCppSource) and linked to the prebuilt libraries of the same commit that
 * node-llama-cpp installs (@node-llama-cpp/<platform>-<arch>/bins/: libllama, libllama-common,
 * libggml, libggml-base). About a minute on two cores; nothing inside node_modules is written.
 *
 * Cache: `${CHORUS_BUILD_CACHE:-~/.cache/chorus}/llama-addon/<commit>-<recipe hash>/`, holding
 * llama-addon.node, copies of the libraries it links (found through its rpath, $ORIGIN) and
 * `recipe.json`. A second run finds it and returns at once. src/members/runtime.ts loads it in
 * place of node-llama-cpp's prebuilt CPU binary when its recipe names the installed node-llama-cpp
 * version (CHORUS_STOCK_BINDING=1 keeps the stock one); without it chorus runs the stock binary.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildCacheRoot, hasProgram, llamaCppCommit, llamaCppSource, run } from "./build-llama-server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const NLC_DIR = join(ROOT, "node_modules", "node-llama-cpp");
const ADDON_SOURCES = join(NLC_DIR, "llama", "addon");
const PATCH = join(ROOT, "native", "addon-fast-reads.patch");
const PLATFORM = `${process.platform}-${process.arch}`;
const PREBUILT = join(ROOT, "node_modules", "@node-llama-cpp", PLATFORM, "bins", PLATFORM);

/** What the binding depends on; its hash (with the commit) names the cache folder. */
export interface AddonRecipe {
  readonly nodeLlamaCpp: string;
  readonly commit: string;
  readonly platform: string;
  readonly patch: string;
  readonly compiler: string;
  readonly flags: readonly string[];
  readonly libraries: readonly string[];
}

function sha(data: string | Buffer, length = 16): string {
  return createHash("sha256").update(data).digest("hex").slice(0, length);
}

function compiler(): string {
  return process.env.CXX || "g++";
}

/** Release flags; the defines are those the prebuilt libraries' CMake targets export (no layout depends on them). */
function compileFlags(): string[] {
  return ["-O3", "-DNDEBUG", "-std=c++17", "-fPIC", "-fexceptions", "-DNAPI_VERSION=7", "-DLLAMA_SHARED", "-DGGML_SHARED", "-DGGML_BACKEND_SHARED", "-DGGML_BACKEND_DL"];
}

/** The prebuilt libraries the addon links to (the CPU variants are loaded by ggml at run time, from node-llama-cpp's folder). */
function linkedLibraries(): string[] {
  if (!existsSync(PREBUILT)) throw new Error(`node-llama-cpp's prebuilt CPU binary is missing (${PREBUILT}); run npm install`);
  return readdirSync(PREBUILT)
    .filter((name) => /^libllama.*\.so$/.test(name) || /^libggml(\.v[0-9.]+)?\.so$/.test(name) || name === "libggml-base.so")
    .sort();
}

function nodeLlamaCppVersion(): string {
  return (JSON.parse(readFileSync(join(NLC_DIR, "package.json"), "utf8")) as { version: string }).version;
}

export function addonRecipe(commit = llamaCppCommit()): AddonRecipe {
  const version = spawnSync(compiler(), ["--version"], { encoding: "utf8" }).stdout?.split("\n")[0] ?? "";
  return {
    nodeLlamaCpp: nodeLlamaCppVersion(),
    commit,
    platform: PLATFORM,
    patch: sha(readFileSync(PATCH)),
    compiler: version,
    flags: compileFlags(),
    libraries: linkedLibraries(),
  };
}

export function llamaAddonDir(recipe: AddonRecipe): string {
  const { commit, ...rest } = recipe;
  return join(buildCacheRoot(), "llama-addon", `${commit}-${sha(JSON.stringify(rest), 12)}`);
}

/** The patched binding when it is built with today's recipe, else undefined. */
export function builtLlamaAddon(recipe = addonRecipe()): string | undefined {
  const dir = llamaAddonDir(recipe);
  const binary = join(dir, "llama-addon.node");
  const recipeFile = join(dir, "recipe.json");
  if (!existsSync(binary) || !existsSync(recipeFile)) return undefined;
  const { builtAt: _builtAt, ...stored } = JSON.parse(readFileSync(recipeFile, "utf8")) as AddonRecipe & { builtAt?: string };
  return JSON.stringify(stored) === JSON.stringify(recipe) ? binary : undefined;
}

export async function buildLlamaAddon(jobs = Math.max(1, availableParallelism())): Promise<string> {
  if (process.platform !== "linux") throw new Error(`the patched binding is built on Linux only (this is ${PLATFORM}); chorus runs node-llama-cpp's stock binary here`);
  if (!hasProgram(compiler())) throw new Error(`no C++ compiler (${compiler()}); chorus runs node-llama-cpp's stock binary without one`);
  const commit = llamaCppCommit();
  const recipe = addonRecipe(commit);
  const ready = builtLlamaAddon(recipe);
  if (ready) {
    console.log(`patched llama-addon (node-llama-cpp ${recipe.nodeLlamaCpp}, llama.cpp ${commit.slice(0, 7)}) is built: ${ready}`);
    return ready;
  }
  const started = Date.now();
  const dir = llamaAddonDir(recipe);
  const source = llamaCppSource(commit);
  const work = `${dir}.partial-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  const addon = join(work, "addon");
  const objects = join(work, "obj");
  const out = join(work, "out");
  mkdirSync(objects, { recursive: true });
  mkdirSync(out, { recursive: true });
  cpSync(ADDON_SOURCES, addon, { recursive: true });
  // Its own repository, so that `git apply` patches this folder wherever the cache lies.
  run("git", ["init", "--quiet", addon]);
  run("git", ["-C", addon, "apply", PATCH]);
  rmSync(join(addon, ".git"), { recursive: true, force: true });

  const nodeInclude = join(dirname(process.execPath), "..", "include", "node");
  if (!existsSync(join(nodeInclude, "node_api.h"))) throw new Error(`node's headers are missing (${nodeInclude}/node_api.h)`);
  const napiInclude = join(ROOT, "node_modules", "node-addon-api");
  const includes = [napiInclude, nodeInclude, addon, source, join(source, "include"), join(source, "ggml", "include"), join(source, "common"), join(source, "src"), join(source, "vendor")].map((path) => `-I${path}`);
  const units = [...readdirSync(addon).filter((f) => f.endsWith(".cpp")).map((f) => join(addon, f)), ...readdirSync(join(addon, "globals")).filter((f) => f.endsWith(".cpp")).map((f) => join(addon, "globals", f))];
  console.log(`building the patched llama-addon (node-llama-cpp ${recipe.nodeLlamaCpp}, llama.cpp ${commit.slice(0, 7)}): ${units.length} files with ${jobs} job(s) into ${dir}`);
  await pool(units, jobs, (unit) => compile([...recipe.flags, ...includes, "-w", "-c", unit, "-o", join(objects, `${basename(dirname(unit)) === "globals" ? "globals-" : ""}${basename(unit, ".cpp")}.o`)]));

  for (const library of recipe.libraries) copyFileSync(join(PREBUILT, library), join(out, library));
  const objectFiles = readdirSync(objects).map((f) => join(objects, f)).sort();
  run(compiler(), ["-shared", "-o", join(out, "llama-addon.node"), ...objectFiles, `-L${out}`, ...recipe.libraries.map((l) => `-l:${l}`), "-Wl,-rpath,$ORIGIN", "-Wl,--as-needed"]);
  // It must load in node (the N-API symbols come from the process) and export what the stock one does.
  const probe = `const b=require(${JSON.stringify(join(out, "llama-addon.node"))});const s=require(${JSON.stringify(join(PREBUILT, "llama-addon.node"))});` +
    `const d=Object.getOwnPropertyNames(s).filter(k=>!(k in b));if(d.length)throw new Error("missing: "+d.join(", "));`;
  run(process.execPath, ["-e", probe]);
  writeFileSync(join(out, "recipe.json"), JSON.stringify({ ...recipe, builtAt: new Date().toISOString() }, null, 2));
  rmSync(dir, { recursive: true, force: true });
  renameSync(out, dir);
  rmSync(work, { recursive: true, force: true });
  // The runtime takes the newest build for the installed node-llama-cpp: older ones for it go.
  for (const name of readdirSync(dirname(dir))) {
    const other = join(dirname(dir), name);
    if (other === dir || name.includes(".partial-")) continue;
    try {
      const stored = JSON.parse(readFileSync(join(other, "recipe.json"), "utf8")) as Partial<AddonRecipe>;
      if (stored.nodeLlamaCpp === recipe.nodeLlamaCpp && stored.platform === recipe.platform) rmSync(other, { recursive: true, force: true });
    } catch {
      // not a build
    }
  }
  console.log(`patched llama-addon built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${join(dir, "llama-addon.node")}`);
  return join(dir, "llama-addon.node");
}

function compile(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(compiler(), args, { stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${compiler()} failed (exit ${code}) on ${args[args.length - 3]}`))));
  });
}

async function pool<T>(items: readonly T[], size: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(size, items.length) }, async () => {
      while (next < items.length) await task(items[next++] as T);
    }),
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const jobsArg = process.argv.find((arg) => arg.startsWith("-j"));
  buildLlamaAddon(jobsArg ? Number(jobsArg.slice(2)) : undefined).catch((error: Error) => {
    console.error(`build:llama-addon: ${error.message}`);
    process.exit(1);
  });
}
