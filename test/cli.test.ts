import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { S260K, TINYSTORIES_DEV, TS656K } from "./helpers/models.js";
import { tempDir } from "./helpers/temp-dir.js";
import { chorus, chorusWithEnv } from "./helpers/chorus-cli.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const example = path.join(root, "examples/tinystories.yaml");

describe("chorus generate", () => {
  test("--json prints one object with text, counts, members and timings", async () => {
    const { code, stdout } = await chorus("generate", "-c", example, "Once upon a time", "--max-tokens", "12", "--json");
    assert.equal(code, 0);
    const result = JSON.parse(stdout);
    assert.equal(typeof result.text, "string");
    assert.ok(result.text.length > 0);
    assert.ok(["stop", "length"].includes(result.finishReason));
    assert.ok(result.steps > 0);
    assert.ok(result.completionTokens <= 12 && (result.completionTokens === 12 || result.finishReason === "stop"), "--max-tokens counts the primary member's tokens");
    assert.equal(result.ensembledSteps, result.steps);
    assert.deepEqual(result.members.map((m: { name: string }) => m.name), ["s260k", "ts656k"]);
    assert.ok(result.timings.totalMs > 0 && result.timings.engineMs >= 0);
    assert.deepEqual(Object.keys(result.timings.memberMs), ["s260k", "ts656k"]);
  });

  test("streams text, --only runs one member, --trace shows candidates and the winner", async () => {
    const streamed = await chorus("generate", "-c", example, "Once upon a time", "--max-tokens", "20");
    assert.equal(streamed.code, 0);
    assert.ok(streamed.stdout.trim().split(/\s+/).length >= 5, streamed.stdout);
    const only = await chorus("generate", "-c", example, "Once upon a time", "--max-tokens", "20", "--only", "s260k", "--no-heal");
    assert.equal(only.code, 0);
    assert.match(only.stdout, /^, there was a little girl named Lily/);
    const traced = await chorus("generate", "-c", example, "Once upon a time", "--max-tokens", "3", "--trace");
    assert.match(traced.stderr, /step 0: ".*" 0\.\d+\n {2}s260k \(healed\): /);
    assert.match(traced.stderr, /ts656k/);
  });

  test("same seed, same text; different methods and weights are accepted", async () => {
    const args = ["generate", "-c", example, "Lily and Ben", "--max-tokens", "15", "--temperature", "0.9", "--seed", "7"];
    const a = await chorus(...args);
    const b = await chorus(...args);
    assert.equal(a.stdout, b.stdout);
    const unite = await chorus("generate", "-c", example, "Lily and Ben", "--max-tokens", "10", "--method", "unite", "--weights", "1,0.5");
    assert.equal(unite.code, 0);
  });

  test("a reader that closes the pipe early ends the output without a crash", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "src/cli/main.ts"), "generate", "-c", example, "Once upon a time", "--max-tokens", "200"], { cwd: root });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout.once("data", () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /EPIPE|Error/);
  });

  test("mistakes get a message naming the problem and the fix, and exit non-zero", async () => {
    const dir = tempDir("chorus-cli-");
    const bad = path.join(dir, "bad.yaml");
    writeFileSync(bad, `method: gac\nmembers:\n  - { name: a, model: ${S260K}, weight: -2 }\n  - { name: a, model: ${TS656K} }\n`);
    const config = await chorus("generate", "-c", bad, "Hi");
    assert.equal(config.code, 1);
    assert.match(config.stderr, /members\[0\]\.weight/);
    assert.match(config.stderr, /duplicate member name "a"/);
    const method = await chorus("generate", "-c", example, "Hi", "--method", "magic");
    assert.notEqual(method.code, 0);
    assert.match(method.stderr, /unknown method "magic"/);
    const only = await chorus("generate", "-c", example, "Hi", "--only", "nobody");
    assert.match(only.stderr, /no member has that name/);
    const weights = await chorus("generate", "-c", example, "Hi", "--weights", "1");
    assert.match(weights.stderr, /expected 2 numbers/);
    const stop = await chorus("generate", "-c", example, "Hi", "--stop", "\n", "--stop", "");
    assert.equal(stop.code, 1);
    assert.equal(stop.stdout, "");
    assert.match(stop.stderr, /--stop <text>' argument '' is invalid\. a stop string must not be empty/);
    const infinite = await chorus("eval", "-c", example, "--task", "next-word", "--data", TINYSTORIES_DEV, "--weights", "Infinity,1");
    assert.equal(infinite.code, 1);
    assert.match(infinite.stderr, /--weights must be a comma-separated list of numbers ≥ 0, got 'Infinity'/);
    const missing = await chorus("generate", "-c", path.join(dir, "none.yaml"), "Hi");
    assert.equal(missing.code, 1);
    assert.doesNotMatch(missing.stderr, /at .*\.js:\d+/, "no stack traces");
  });
});

describe("chorus without a config file", () => {
  test("-m A -m B runs an ensemble in one command; members are named after their files", async () => {
    const { code, stdout, stderr } = await chorus("generate", "-m", S260K, "-m", TS656K, "Once upon a time", "--max-tokens", "8", "--json");
    assert.equal(code, 0, stderr);
    const result = JSON.parse(stdout);
    assert.deepEqual(result.members.map((m: { name: string }) => m.name), ["stories260K-f32", "TinyStories-656K-f32"]);
    assert.equal(result.ensembledSteps, result.steps, "method gac, every step ensembled");
    // The same text as the example config (same models, method gac, healing on).
    const fromConfig = await chorus("generate", "-c", example, "Once upon a time", "--max-tokens", "8", "--json");
    assert.equal(result.text, JSON.parse(fromConfig.stdout).text);
  });

  test("NAME=MODEL names a member; the same file twice gets unique names; flags reach every config field", async () => {
    const { code, stdout, stderr } = await chorus(
      "generate", "-m", `tiny=${S260K}`, "-m", S260K, "-m", S260K, "Lily", "--max-tokens", "4", "--json",
      "--method", "unite", "--unite-k", "5", "--weights", "1,1,0.5", "--gate", "0.9", "--primary", "tiny", "--no-heal", "--context-size", "256", "--threads", "1",
    );
    assert.equal(code, 0, stderr);
    assert.deepEqual(JSON.parse(stdout).members.map((m: { name: string; weight: number }) => [m.name, m.weight]), [["tiny", 1], ["stories260K-f32", 1], ["stories260K-f32-2", 0.5]]);
  });

  test("a GGUF given to -c is recognised at once; no models, or -c with -m, says what to do", async () => {
    const gguf = await chorus("generate", "-c", S260K, "Hi");
    assert.equal(gguf.code, 1);
    assert.equal(gguf.stderr.trim().split("\n").length, 1, gguf.stderr);
    assert.match(gguf.stderr, /this is a GGUF model, not a config file — pass models with -m/);
    const none = await chorus("generate", "Hi");
    assert.match(none.stderr, /no models: give them with -m .* or a config file with -c/);
    const both = await chorus("generate", "-c", example, "-m", S260K, "Hi");
    assert.match(both.stderr, /either a config file \(-c\) or models \(-m\), not both/);
    const vocab = await chorus("generate", "-m", path.join(path.dirname(S260K), "../vocab/ggml-vocab-llama-spm.gguf"), "Hi");
    assert.equal(vocab.code, 1);
    assert.match(vocab.stderr, /^chorus: -m .*ggml-vocab-llama-spm\.gguf: .* is a vocabulary-only GGUF/);
    assert.doesNotMatch(vocab.stderr, /llama_model_load|Failed to load model/);
    const primary = await chorus("generate", "-m", S260K, "-m", TS656K, "--primary", "nobody", "Hi");
    assert.match(primary.stderr, /--primary nobody: no member has that name; members are stories260K-f32, TinyStories-656K-f32/);
  });

  test("a model name that is not on the machine gets one line with the download command", async () => {
    const home = tempDir("chorus-home-");
    const { code, stderr } = await chorusWithEnv({ HOME: home }, "generate", "-m", "llama3.2:1b", "-m", "hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "Hi");
    assert.equal(code, 1);
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 2, stderr);
    assert.match(lines[0]!, /^chorus: -m llama3\.2:1b: .*`ollama pull llama3\.2:1b`/);
    assert.match(lines[1]!, /^chorus: -m hf:bartowski.*`npx node-llama-cpp pull --dir ~\/\.node-llama-cpp\/models hf:bartowski\/Llama-3\.2-1B-Instruct-GGUF:Q4_K_M`/);
  });

  test("bench and align take -m too", async () => {
    const bench = await chorus("bench", "-m", S260K, "-m", TS656K, "--steps", "2", "--json");
    assert.equal(bench.code, 0, bench.stderr);
    const rows = JSON.parse(bench.stdout).rows as { setup: string; system: string }[];
    assert.equal(rows[0]!.setup, "stories260K-f32+TinyStories-656K-f32");
    assert.ok(rows.some((r) => r.system === "GaC gated 0.9"), "the first -m member is the primary");
    const cache = tempDir("chorus-align-");
    const align = await chorus("align", "-m", S260K, "-m", TS656K, "--method", "deepen", "--cache-dir", cache, "--json");
    assert.equal(align.code, 0, align.stderr);
    assert.equal(JSON.parse(align.stdout).method, "deepen");
  });
});
