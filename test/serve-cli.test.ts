import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Runs `chorus serve ARGS` from source; `url` resolves with the address its log line names
 * (`listening`'s first group), or rejects with its stderr after 60 s.
 */
function startServe(args: string[], listening: RegExp): { child: ChildProcess; exited: Promise<number | null>; url: Promise<string>; stderr: () => string } {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve", ...args], { cwd: root });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no address within 60 s: ${stderr}`)), 60_000);
    child.stderr!.on("data", () => {
      const match = listening.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
  });
  return { child, exited, url, stderr: () => stderr };
}

test("chorus serve: listens, answers, and on SIGTERM finishes the running stream, refuses new work, exits 0", async () => {
  const { child, exited, url: listening, stderr } = startServe(["-c", "examples/tinystories.yaml", "--port", "0", "--name", "tiny", "--api-key", "k1"], /serving model 'tiny' \(s260k \+ ts656k\) at (http:\/\/127\.0\.0\.1:\d+)/);
  try {
    const url = await listening;
    const headers = { authorization: "Bearer k1", "content-type": "application/json" };
    const models = (await (await fetch(`${url}/v1/models`, { headers })).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ["tiny"]);

    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers,
      body: JSON.stringify({ model: "tiny", prompt: "Once upon a time", max_tokens: 120, stream: true }),
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let body = (await reader.read()).value ?? "";
    child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 100));
    const refused = await fetch(`${url}/v1/models`, { headers }).then((r) => r.status, () => "closed");
    assert.ok(refused === 503 || refused === "closed", `during the drain: ${refused}`);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      body += value;
    }
    assert.ok(body.endsWith("data: [DONE]\n\n"), body.slice(-100));
    const events = body.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)) as { choices: { finish_reason: string | null }[] });
    assert.ok(["length", "stop"].includes(events.at(-1)!.choices[0]!.finish_reason!), "the stream ran to its end");
    assert.equal(await exited, 0);
    assert.match(stderr(), /SIGTERM: finishing 1 request\(s\), then exiting/);
    assert.match(stderr(), /POST \/v1\/completions 200 \d+ ms · tiny stream done: \d+ steps/);
    assert.match(stderr(), /chorus: GET \/v1\/models 200 \d+ ms\n/);
    if (refused === 503) assert.match(stderr(), /chorus: GET \/v1\/models 503 \d+ ms · shutting_down: the server is shutting down/);
  } finally {
    child.kill("SIGKILL");
  }
});

test("chorus serve -m A -m B: no config; the model id joins the members' names", async () => {
  const models = path.resolve(root, "../shared/models");
  const { child, exited, url: listening } = startServe(["-m", path.join(models, "stories260K-f32.gguf"), "-m", path.join(models, "TinyStories-656K-f32.gguf"), "--port", "0", "--max-tokens", "5"], /serving model 'stories260K-f32\+TinyStories-656K-f32' \(stories260K-f32 \+ TinyStories-656K-f32\) at (http:\/\/127\.0\.0\.1:\d+)/);
  try {
    const url = await listening;
    const answer = (await (
      await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "stories260K-f32+TinyStories-656K-f32", prompt: "Once upon a time" }) })
    ).json()) as { choices: { finish_reason: string }[]; usage: { completion_tokens: number } };
    assert.equal(answer.choices[0]!.finish_reason, "length", "--max-tokens 5 is the server's default");
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
  } finally {
    child.kill("SIGKILL");
  }
});

test("chorus serve: an empty --api-key or CHORUS_API_KEY is a startup error, not an open server", () => {
  const serve = (args: string[], env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve", "-c", "examples/tinystories.yaml", "--port", "0", ...args], { cwd: root, env: { ...process.env, ...env }, encoding: "utf8", timeout: 60_000 });
  const flag = serve(["--api-key", ""], {});
  assert.equal(flag.status, 1, flag.stderr);
  assert.match(flag.stderr, /--api-key: the API key is empty; give a key, or leave out --api-key and unset CHORUS_API_KEY/);
  const env = serve([], { CHORUS_API_KEY: "" });
  assert.equal(env.status, 1, env.stderr);
  assert.match(env.stderr, /CHORUS_API_KEY: the API key is empty/);
});

test("chorus serve: a second SIGTERM ends the running stream at once, still with an error event and [DONE], then exits 0", async () => {
  const { child, exited, url: listening, stderr } = startServe(["-c", "examples/tinystories.yaml", "--port", "0", "--drain-timeout", "600000"], /serving model 'tinystories' .* at (http:\/\/127\.0\.0\.1:\d+)/);
  try {
    const url = await listening;
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      // The pair's 512-token context ends this after some 470 steps, seconds after the signals.
      body: JSON.stringify({ model: "tinystories", prompt: "Once upon a time", max_tokens: 2000, stream: true }),
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let body = (await reader.read()).value ?? "";
    child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 100));
    child.kill("SIGTERM");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      body += value;
    }
    const events = body.split("\n\n").filter((e) => e.startsWith("data: "));
    assert.equal(events.at(-1), "data: [DONE]", body.slice(-200));
    assert.equal((JSON.parse(events.at(-2)!.slice(6)) as { error: { code: string } }).error.code, "shutting_down");
    assert.equal(await exited, 0);
    assert.match(stderr(), /SIGTERM again: ending 1 request\(s\) now/);
  } finally {
    child.kill("SIGKILL");
  }
});
