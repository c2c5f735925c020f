import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError, resolveEnsembleConfig } from "../src/config/load.js";
import { chooseGguf, memberNameFor, parseModelReference, uniqueMemberNames } from "../src/members/model-reference.js";
import { S260K, SHARED, TS656K } from "./helpers/models.js";

const root = mkdtempSync(path.join(os.tmpdir(), "chorus-stores-"));
process.on("exit", () => rmSync(root, { recursive: true, force: true }));

/** A home folder with no stores at all, and one with Ollama's, Hugging Face's and node-llama-cpp's, laid out as those tools do. */
const emptyHome = path.join(root, "empty-home");
mkdirSync(emptyHome);
const home = path.join(root, "home");

function link(target: string, file: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  symlinkSync(target, file);
}

// Ollama: manifests/<host>/<namespace>/<model>/<tag> → the model layer's digest → blobs/sha256-<hex>.
const ollama = path.join(home, ".ollama/models");
function ollamaModel(manifestPath: string, digest: string, target: string, layers?: object[]): void {
  const manifest = path.join(ollama, "manifests", manifestPath);
  mkdirSync(path.dirname(manifest), { recursive: true });
  writeFileSync(
    manifest,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      config: { mediaType: "application/vnd.docker.container.image.v1+json", digest: "sha256:0000", size: 10 },
      layers: layers ?? [
        { mediaType: "application/vnd.ollama.image.model", digest: `sha256:${digest}`, size: 1 },
        { mediaType: "application/vnd.ollama.image.template", digest: "sha256:1111", size: 1 },
      ],
    }),
  );
  if (target) link(target, path.join(ollama, "blobs", `sha256-${digest}`));
}
ollamaModel("registry.ollama.ai/library/stories/260k", "a".repeat(64), S260K);
ollamaModel("registry.ollama.ai/library/stories/latest", "b".repeat(64), TS656K);
ollamaModel("registry.ollama.ai/someone/tiny/latest", "c".repeat(64), S260K);
ollamaModel("registry.ollama.ai/library/gone/latest", "d".repeat(64), "");
ollamaModel("registry.ollama.ai/library/cloudy/latest", "e".repeat(64), "", [{ mediaType: "application/vnd.ollama.image.template", digest: "sha256:1", size: 1 }]);
ollamaModel("hf.co/someone/Tiny-GGUF/Q8_0", "f".repeat(64), TS656K);

// Hugging Face: hub/models--user--repo/{refs/main, snapshots/<revision>/<file>} (files link into blobs/).
const hub = path.join(home, ".cache/huggingface/hub");
const revision = "0123456789abcdef0123456789abcdef01234567";
function hfFile(repo: string, file: string, target: string): void {
  const repoDir = path.join(hub, `models--${repo.replace("/", "--")}`);
  mkdirSync(path.join(repoDir, "refs"), { recursive: true });
  writeFileSync(path.join(repoDir, "refs/main"), revision);
  link(target, path.join(repoDir, "snapshots", revision, file));
}
hfFile("karpathy/tinyllamas-GGUF", "stories260K.Q8_0.gguf", S260K);
hfFile("karpathy/tinyllamas-GGUF", "stories260K.F32.gguf", S260K);
hfFile("karpathy/tinyllamas-GGUF", "TinyStories-656K.Q4_K_M.gguf", TS656K);
hfFile("someone/only-one", "model-f32.gguf", TS656K);

// node-llama-cpp: ~/.node-llama-cpp/models/<its own file name>.
const nlc = path.join(home, ".node-llama-cpp/models");
link(TS656K, path.join(nlc, "hf_someone_Stories.Q5_K_M.gguf"));
link(S260K, path.join(nlc, "stories260K-f32.gguf"));

const config = (model: string, env: NodeJS.ProcessEnv) =>
  resolveEnsembleConfig({ members: [{ name: "m", model }] }, { baseDir: root, source: "test", env });

async function resolved(model: string, env: NodeJS.ProcessEnv = { HOME: home }): Promise<string> {
  return (await config(model, env)).members[0]!.model!;
}

async function problem(model: string, env: NodeJS.ProcessEnv = { HOME: emptyHome }): Promise<string> {
  try {
    await config(model, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.issues.length, 1, error.message);
    assert.doesNotMatch(error.message, /\n/, "one line");
    return error.issues[0]!.message;
  }
  assert.fail(`${model} resolved`);
}

test("Ollama names resolve to the model layer's blob in Ollama's store", async () => {
  assert.equal(await resolved("stories:260k"), path.join(ollama, "blobs", `sha256-${"a".repeat(64)}`));
  assert.equal(await resolved("stories"), path.join(ollama, "blobs", `sha256-${"b".repeat(64)}`), "no tag means latest");
  assert.equal(await resolved("library/stories:260k"), path.join(ollama, "blobs", `sha256-${"a".repeat(64)}`));
  assert.equal(await resolved("ollama:stories:latest"), path.join(ollama, "blobs", `sha256-${"b".repeat(64)}`));
  assert.equal(await resolved("someone/tiny"), path.join(ollama, "blobs", `sha256-${"c".repeat(64)}`));
  assert.equal(await resolved("hf.co/someone/Tiny-GGUF:Q8_0"), path.join(ollama, "blobs", `sha256-${"f".repeat(64)}`));
  // OLLAMA_MODELS moves the store.
  const moved = path.join(root, "ollama-elsewhere");
  link(ollama, moved);
  assert.equal(await resolved("stories:260k", { HOME: emptyHome, OLLAMA_MODELS: moved }), path.join(moved, "blobs", `sha256-${"a".repeat(64)}`));
});

test("an Ollama name that is not pulled says where chorus looked and how to pull it", async () => {
  const message = await problem("llama3.2:1b");
  assert.match(message, /^"llama3\.2:1b" is not on this machine \(looked in the paths .*llama3\.2:1b; Ollama's store ~\/\.ollama\/models\/manifests\/registry\.ollama\.ai\/library\/llama3\.2\/1b\) — download it with `ollama pull llama3\.2:1b`, or give the path of a \.gguf file$/);
  assert.match(await problem("gone", { HOME: home }), /model blob .*sha256-d+ is missing .* pull the model again: `ollama pull gone:latest`/);
  assert.match(await problem("cloudy", { HOME: home }), /lists no GGUF model layer/);
});

test("Hugging Face repos and hf: URIs resolve in the Hugging Face cache", async () => {
  const snapshot = path.join(hub, "models--karpathy--tinyllamas-GGUF/snapshots", revision);
  assert.equal(await resolved("hf:karpathy/tinyllamas-GGUF:Q8_0"), path.join(snapshot, "stories260K.Q8_0.gguf"));
  assert.equal(await resolved("hf:karpathy/tinyllamas-GGUF:q8_0"), path.join(snapshot, "stories260K.Q8_0.gguf"), "quantization in any case");
  assert.equal(await resolved("hf:karpathy/tinyllamas-GGUF"), path.join(snapshot, "TinyStories-656K.Q4_K_M.gguf"), "Q4_K_M by default, as node-llama-cpp");
  assert.equal(await resolved("hf:karpathy/tinyllamas-GGUF/stories260K.F32.gguf"), path.join(snapshot, "stories260K.F32.gguf"));
  assert.equal(await resolved("https://huggingface.co/karpathy/tinyllamas-GGUF/resolve/main/stories260K.F32.gguf"), path.join(snapshot, "stories260K.F32.gguf"));
  assert.equal(await resolved("someone/only-one"), path.join(hub, "models--someone--only-one/snapshots", revision, "model-f32.gguf"), "a repo id with one GGUF");
  // HF_HOME and HF_HUB_CACHE move the cache.
  const env = { HOME: emptyHome, HF_HUB_CACHE: hub };
  assert.equal(await resolved("hf:karpathy/tinyllamas-GGUF:Q8_0", env), path.join(snapshot, "stories260K.Q8_0.gguf"));
  assert.equal(await resolved("hf:karpathy/tinyllamas-GGUF:Q8_0", { HOME: emptyHome, HF_HOME: path.dirname(hub) }), path.join(snapshot, "stories260K.Q8_0.gguf"));
  assert.match(await problem("hf:karpathy/tinyllamas-GGUF:Q2_K", { HOME: home }), /no GGUF file matches "Q2_K" among .*stories260K\.F32\.gguf/);
});

test("hf: URIs and URLs resolve in node-llama-cpp's models folder under node-llama-cpp's own file names", async () => {
  assert.equal(await resolved("hf:someone/Stories-GGUF:Q5_K_M"), path.join(nlc, "hf_someone_Stories.Q5_K_M.gguf"));
  assert.equal(await resolved("https://example.com/files/stories260K-f32.gguf"), path.join(nlc, "stories260K-f32.gguf"));
});

test("a Hugging Face model that is not downloaded names both places and the download commands", async () => {
  const message = await problem("hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M");
  assert.match(message, /looked in the Hugging Face cache ~\/\.cache\/huggingface\/hub\/models--bartowski--Llama-3\.2-1B-Instruct-GGUF; node-llama-cpp's models folder ~\/\.node-llama-cpp\/models\)/);
  assert.match(message, /`huggingface-cli download bartowski\/Llama-3\.2-1B-Instruct-GGUF --include "\*Q4_K_M\*\.gguf"` or `npx node-llama-cpp pull --dir ~\/\.node-llama-cpp\/models hf:bartowski\/Llama-3\.2-1B-Instruct-GGUF:Q4_K_M`/);
  const url = await problem("https://example.com/m/model.gguf");
  assert.match(url, /`npx node-llama-cpp pull --dir ~\/\.node-llama-cpp\/models https:\/\/example\.com\/m\/model\.gguf`/);
  // A repo id without prefix is an Ollama name too: both stores are named.
  const either = await problem("bartowski/SmolLM2");
  assert.match(either, /Ollama's store .*; the Hugging Face cache .*`ollama pull bartowski\/SmolLM2:latest` or `huggingface-cli download bartowski\/SmolLM2/);
});

test("a file wins over a reference of the same spelling; paths are never looked up as references", async () => {
  const dir = path.join(root, "files");
  link(S260K, path.join(dir, "stories:260k"));
  const config = await resolveEnsembleConfig({ members: [{ name: "m", model: "stories:260k" }] }, { baseDir: dir, env: { HOME: home } });
  assert.equal(config.members[0]!.model, path.join(dir, "stories:260k"));
  assert.deepEqual(parseModelReference("./models/x.gguf").references, []);
  assert.deepEqual(parseModelReference("x.gguf").references, []);
});

test("a vocabulary-only GGUF reached through a reference is refused like a path", async () => {
  hfFile("someone/vocab", "vocab.gguf", path.join(SHARED, "vocab/ggml-vocab-llama-spm.gguf"));
  assert.match(await problem("hf:someone/vocab/vocab.gguf", { HOME: home }), /is a vocabulary-only GGUF/);
});

test("member names come from file names and references, unique", () => {
  assert.equal(memberNameFor("/models/stories260K-f32.gguf"), "stories260K-f32");
  assert.equal(memberNameFor("llama3.2:1b"), "llama3.2-1b");
  assert.equal(memberNameFor("library/qwen3"), "qwen3");
  assert.equal(memberNameFor("hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"), "Llama-3.2-1B-Instruct-Q4_K_M");
  assert.equal(memberNameFor("hf:user/repo/sub/model.Q8_0.gguf"), "model.Q8_0");
  assert.equal(memberNameFor("https://example.com/a%20b.gguf"), "a-b");
  assert.deepEqual(uniqueMemberNames(["a/x.gguf", "b/x.gguf", "x.gguf"]), ["x", "x-2", "x-3"]);
});

test("choosing among a repo's files: the quantization, the first part of a split model, never a projector", () => {
  assert.deepEqual(chooseGguf(["m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf"], undefined), { file: "m-Q4_K_M-00001-of-00002.gguf" });
  assert.deepEqual(chooseGguf(["m.Q8_0.gguf", "mmproj-m.Q8_0.gguf"], "Q8_0"), { file: "m.Q8_0.gguf" });
  assert.match((chooseGguf(["a.Q8_0.gguf", "b.Q8_0.gguf"], "Q8_0") as { problem: string }).problem, /several GGUF files match/);
});
