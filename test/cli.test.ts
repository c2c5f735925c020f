import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { S260K, TS656K } from "./helpers/models.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const example = path.join(root, "examples/tinystories.yaml");

async function chorus(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", path.join(root, "src/cli/main.ts"), ...args], { cwd: root });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("chorus generate", () => {
  test("--json prints one object with text, counts, members and timings", async () => {
    const { code, stdout } = await chorus("generate", "-c", example, "Once upon a time", "--max-tokens", "12", "--json");
    assert.equal(code, 0);
    const result = JSON.parse(stdout);
    assert.equal(typeof result.text, "string");
    assert.ok(result.text.length > 0);
    assert.ok(["stop", "length"].includes(result.finishReason));
    assert.ok(result.steps > 0 && result.steps <= 12);
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
    const dir = mkdtempSync(path.join(os.tmpdir(), "chorus-cli-"));
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
    const missing = await chorus("generate", "-c", path.join(dir, "none.yaml"), "Hi");
    assert.equal(missing.code, 1);
    assert.doesNotMatch(missing.stderr, /at .*\.js:\d+/, "no stack traces");
  });
});
