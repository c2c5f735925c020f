/**
 * Builds llama.cpp's `llama-server` from the source node-llama-cpp ships
 * (node_modules/node-llama-cpp/llama/gitRelease.bundle), CPU only and offline, into a cache folder
 * outside the checkout keyed by the llama.cpp commit: `npm run build:llama-server`.
 * A second run finds the binary and returns at once. The integration tests
 * (test/llama-server.test.ts) start the binary this script names.
 *
 * Cache: `${CHORUS_BUILD_CACHE:-~/.cache/chorus}/llama-server/<commit>/bin/llama-server`, with the
 * recipe it was built with in `recipe.json`; a different recipe (flags, patches) rebuilds.
 * The source tree is shared with the patched node-llama-cpp binding (scripts/build-llama-addon.ts):
 * `${CHORUS_BUILD_CACHE:-~/.cache/chorus}/llama.cpp/<commit>-<patches>/`, cloned once.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, copyFileSync, chmodSync } from "node:fs";
import { availableParallelism, homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const LLAMA_DIR = fileURLToPath(new URL("../node_modules/node-llama-cpp/llama/", import.meta.url));
const BUNDLE = join(LLAMA_DIR, "gitRelease.bundle");
const PATCHES = join(LLAMA_DIR, "patches");

export function buildCacheRoot(): string {
  return process.env.CHORUS_BUILD_CACHE || join(homedir(), ".cache", "chorus");
}

/** The llama.cpp commit of the bundle (its HEAD), read without cloning. */
export function llamaCppCommit(): string {
  const heads = run("git", ["bundle", "list-heads", BUNDLE], { capture: true });
  const head = heads.split("\n").find((line) => line.endsWith(" HEAD")) ?? heads.split("\n")[0] ?? "";
  const commit = head.split(" ")[0] ?? "";
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`cannot read the llama.cpp commit from ${BUNDLE}: ${heads}`);
  return commit;
}

/**
 * The llama.cpp source tree of the bundle's commit with node-llama-cpp's patches applied (as its own
 * source build does), cloned once and kept for every build from it: llama-server and the patched
 * node-llama-cpp binding. Keyed by the commit and the patches' hash; cloning takes seconds.
 */
export function llamaCppSource(commit = llamaCppCommit()): string {
  const patches = Object.entries(recipe(commit).patches).map(([name, hash]) => `${name}:${hash}`).join(",");
  const key = createHash("sha256").update(patches).digest("hex").slice(0, 12);
  const dir = join(buildCacheRoot(), "llama.cpp", `${commit}-${key}`);
  if (existsSync(join(dir, ".chorus-ready"))) return dir;
  const staging = `${dir}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(join(buildCacheRoot(), "llama.cpp"), { recursive: true });
  run("git", ["clone", "--quiet", "--no-checkout", BUNDLE, staging]);
  run("git", ["-C", staging, "-c", "advice.detachedHead=false", "checkout", "--quiet", commit]);
  for (const name of patchFiles()) run("git", ["-C", staging, "apply", join(PATCHES, name)]);
  writeFileSync(join(staging, ".chorus-ready"), `${commit}\n${patches}\n`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(staging, dir);
  return dir;
}

export function llamaServerDir(commit = llamaCppCommit()): string {
  return join(buildCacheRoot(), "llama-server", commit);
}

/** Where the binary lives once built (it may not exist yet). */
export function llamaServerBinary(commit = llamaCppCommit()): string {
  return join(llamaServerDir(commit), "bin", "llama-server");
}

/**
 * Instruction sets: GGML_NATIVE=OFF builds for a named level rather than `-march=native`, so a cache
 * copied to another machine of the same level still runs. x86-64-v3 (AVX2, FMA, F16C, BMI2) where
 * this CPU has it, else the SSE4.2 baseline.
 */
function instructionSetFlags(): string[] {
  if (process.arch !== "x64") return ["-DGGML_NATIVE=OFF"];
  const flags = readCpuFlags();
  const v3 = ["avx", "avx2", "fma", "f16c", "bmi2"].every((flag) => flags.has(flag));
  const on = v3 ? "ON" : "OFF";
  return ["-DGGML_NATIVE=OFF", `-DGGML_AVX=${on}`, `-DGGML_AVX2=${on}`, `-DGGML_FMA=${on}`, `-DGGML_F16C=${on}`, `-DGGML_BMI2=${on}`];
}

function readCpuFlags(): Set<string> {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags"));
    return new Set((line ?? "").split(":")[1]?.trim().split(/\s+/) ?? []);
  } catch {
    return new Set();
  }
}

/** Every option that would download something is off; FETCHCONTENT_FULLY_DISCONNECTED guards the rest. */
function cmakeFlags(): string[] {
  return [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    ...instructionSetFlags(),
    "-DGGML_BACKEND_DL=OFF",
    "-DGGML_CPU_ALL_VARIANTS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_BORINGSSL=OFF",
    "-DLLAMA_BUILD_LIBRESSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_LLGUIDANCE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
  ];
}

function patchFiles(): string[] {
  if (!existsSync(PATCHES)) return [];
  return readdirSync(PATCHES).filter((name) => name.endsWith(".diff") || name.endsWith(".patch")).sort();
}

/** What the binary depends on besides the commit: flags and node-llama-cpp's patches (applied as it does). */
function recipe(commit: string): { commit: string; flags: string[]; patches: Record<string, string> } {
  const patches: Record<string, string> = {};
  for (const name of patchFiles()) {
    patches[name] = createHash("sha256").update(readFileSync(join(PATCHES, name))).digest("hex").slice(0, 16);
  }
  return { commit, flags: cmakeFlags(), patches };
}

/** The binary when it is built with today's recipe, else undefined. */
export function builtLlamaServer(commit = llamaCppCommit()): string | undefined {
  const dir = llamaServerDir(commit);
  const binary = llamaServerBinary(commit);
  const recipeFile = join(dir, "recipe.json");
  if (!existsSync(binary) || !existsSync(recipeFile)) return undefined;
  return readFileSync(recipeFile, "utf8") === JSON.stringify(recipe(commit), null, 2) ? binary : undefined;
}

export function buildLlamaServer(jobs = Math.max(1, availableParallelism())): string {
  const commit = llamaCppCommit();
  const ready = builtLlamaServer(commit);
  if (ready) {
    console.log(`llama-server ${commit.slice(0, 7)} is built: ${ready}`);
    return ready;
  }
  const dir = llamaServerDir(commit);
  const work = join(dir, "work");
  const build = join(work, "build");
  const wanted = recipe(commit);
  const started = Date.now();
  mkdirSync(dir, { recursive: true });
  // A half-finished earlier build is reused (cmake resumes), unless its recipe differs.
  const workRecipe = join(work, "recipe.json");
  if (existsSync(work) && (!existsSync(workRecipe) || readFileSync(workRecipe, "utf8") !== JSON.stringify(wanted, null, 2))) {
    rmSync(work, { recursive: true, force: true });
  }
  if (!existsSync(workRecipe)) {
    mkdirSync(work, { recursive: true });
    writeFileSync(workRecipe, JSON.stringify(wanted, null, 2));
  }
  const source = llamaCppSource(commit);
  const generator = hasProgram("ninja") ? ["-G", "Ninja"] : [];
  console.log(`building llama-server ${commit.slice(0, 7)} with ${jobs} job(s) into ${dir}`);
  run("cmake", ["-S", source, "-B", build, ...generator, ...wanted.flags]);
  run("cmake", ["--build", build, "--target", "llama-server", "-j", String(jobs)]);
  const binDir = join(dir, "bin");
  mkdirSync(binDir, { recursive: true });
  const staged = join(binDir, "llama-server.partial");
  copyFileSync(join(build, "bin", "llama-server"), staged);
  chmodSync(staged, 0o755);
  renameSync(staged, llamaServerBinary(commit));
  writeFileSync(join(dir, "recipe.json"), JSON.stringify(wanted, null, 2));
  rmSync(work, { recursive: true, force: true });
  const minutes = ((Date.now() - started) / 60000).toFixed(1);
  console.log(`llama-server built in ${minutes} min: ${llamaServerBinary(commit)}`);
  return llamaServerBinary(commit);
}

export function hasProgram(name: string): boolean {
  return spawnSync(name, ["--version"], { stdio: "ignore" }).status === 0;
}

export function run(command: string, args: string[], options: { capture?: boolean } = {}): string {
  const result = spawnSync(command, args, { stdio: options.capture ? ["ignore", "pipe", "inherit"] : "inherit", encoding: "utf8" });
  if (result.error) throw new Error(`${command} could not start: ${result.error.message} (is ${command} installed?)`);
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed with exit code ${result.status}`);
  return options.capture ? result.stdout.trim() : "";
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const jobsArg = process.argv.find((arg) => arg.startsWith("-j"));
  buildLlamaServer(jobsArg ? Number(jobsArg.slice(2)) : undefined);
}
