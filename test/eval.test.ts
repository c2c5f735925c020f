import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { findTask } from "../src/eval/tasks/index.js";
import { extractGsm8kAnswer, normalizeNumber } from "../src/eval/tasks/gsm8k.js";
import { extractChoice } from "../src/eval/tasks/multiple-choice.js";
import { normalizeAnswer } from "../src/eval/tasks/nq-open.js";
import { extractNextWord, splitDocuments } from "../src/eval/tasks/next-word.js";
import { firstWord } from "../src/eval/tasks/data-files.js";
import { pairedDifference, settingsLine, smallSampleWarning, svgChart, textTable, wilson, type Summary } from "../src/eval/report.js";
import { SHARED, TINYSTORIES_DEV } from "./helpers/models.js";
import { tempDir } from "./helpers/temp-dir.js";
import { chorus } from "./helpers/chorus-cli.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const example = path.join(root, "examples/tinystories.yaml");
const DATA = path.join(SHARED, "data");
const cliArgs = ["--import", "tsx", path.join(root, "src/cli/main.ts")];

const evalDir = () => tempDir("chorus-eval-");
const nextWordArgs = (out: string, limit: number, ...more: string[]) => [
  "eval", "-c", example, "--task", "next-word", "--data", TINYSTORIES_DEV, "--limit", String(limit), "--out", out, ...more,
];
const readJson = (file: string) => JSON.parse(readFileSync(file, "utf8"));
/** Everything in a summary except speed, which differs from run to run. */
const withoutSpeed = (summary: { systems: { tokensPerSecond: number; msPerItem: number }[] }) => ({
  ...summary,
  systems: summary.systems.map(({ tokensPerSecond: _t, msPerItem: _m, ...rest }) => rest),
});

describe("task parsers on the shared data", () => {
  test("gsm8k: the final number after ####, worked examples from the first problems", async () => {
    const items = await findTask("gsm8k").load(path.join(DATA, "gsm8k/test.jsonl"), { shots: 0, seed: 0 });
    assert.equal(items.length, 1319);
    assert.match(items[0]!.prompt, /^Question: Janet’s ducks lay 16 eggs per day\..*\nAnswer:$/s);
    assert.equal(items[0]!.expected, "18");
    const shot = await findTask("gsm8k").load(path.join(DATA, "gsm8k/test.jsonl"), { shots: 2, seed: 0 });
    assert.equal(shot.length, 1317);
    assert.match(shot[0]!.prompt, /Janet’s ducks.*\n#### 18\n\nQuestion: A robe takes.*\n#### 3\n\nQuestion: /s);
    assert.doesNotMatch(shot[0]!.prompt, /<</, "calculator annotations are removed from the worked examples");
  });

  test("arc: id, lettered choices and the answer key", async () => {
    const items = await findTask("arc").load(path.join(DATA, "arc/ARC-Easy-test.jsonl"), { shots: 0, seed: 0 });
    assert.equal(items[0]!.id, "Mercury_417466");
    assert.equal(items[0]!.expected, "A");
    assert.match(items[0]!.prompt, /\nA\. Sunlight is the source of energy for nearly all ecosystems\.\nB\. .*\nD\. The producers in all ecosystems are plants\.\nAnswer:$/s);
    assert.equal(new Set(items.map((i) => i.id)).size, items.length, "ids are unique, so resuming can recognize items");
  });

  test("mmlu: quoted CSV fields, subject header, few-shot examples from dev/", async () => {
    const file = path.join(DATA, "mmlu/test/abstract_algebra_test.csv");
    const items = await findTask("mmlu").load(file, { shots: 1, seed: 0 });
    assert.equal(items.length, 100);
    assert.equal(items[0]!.expected, "B");
    assert.match(items[0]!.prompt, /^The following are multiple choice questions \(with answers\) about abstract algebra\.\n\nQuestion: Find all c in Z_3 .*Answer: B\n\n/s);
    assert.match(items[0]!.prompt, /Question: Find the degree for the given field extension Q\(sqrt\(2\), sqrt\(3\), sqrt\(18\)\) over Q\.\nA\. 0\nB\. 4\nC\. 2\nD\. 6\nAnswer:$/);
    assert.match(items[2]!.prompt, /\nC\. 0,1\nD\. 0,4\nAnswer:$/, "a quoted field with a comma stays one choice");
    const whole = await findTask("mmlu").load(path.join(DATA, "mmlu"), { shots: 0, seed: 0 });
    assert.equal(whole.length, 14042, "the folder reads every subject's test file");
  });

  test("nq-open: several accepted answers", async () => {
    const items = await findTask("nq-open").load(path.join(DATA, "nq_open/NQ-open.dev.jsonl"), { shots: 0, seed: 0 });
    assert.equal(items[0]!.prompt, "Question: when was the last time anyone was on the moon?\nAnswer:");
    assert.deepEqual(items[0]!.answers, ["14 December 1972 UTC", "December 1972"]);
  });

  test("lambada: the context without its last word", async () => {
    const items = await findTask("lambada").load(path.join(DATA, "lambada/lambada_test.jsonl"), { shots: 0, seed: 0 });
    assert.equal(items.length, 5153);
    assert.equal(items[0]!.expected, "signs");
    assert.match(items[0]!.prompt, /I don't care about$/);
  });

  test("next-word: seeded positions right after a word, no trailing space", async () => {
    const task = findTask("next-word");
    const a = await task.load(TINYSTORIES_DEV, { shots: 0, seed: 3 });
    const b = await task.load(TINYSTORIES_DEV, { shots: 0, seed: 3 });
    const c = await task.load(TINYSTORIES_DEV, { shots: 0, seed: 4 });
    assert.deepEqual(a.slice(0, 20), b.slice(0, 20));
    assert.notDeepEqual(a.slice(0, 20).map((i) => i.id), c.slice(0, 20).map((i) => i.id));
    const text = readFileSync(TINYSTORIES_DEV, "utf8");
    for (const item of a.slice(0, 50)) {
      assert.match(item.prompt, /[\p{L}\p{N}]$/u, "the context ends right after a word");
      assert.ok(!item.prompt.includes("<|endoftext|>"));
      assert.ok(text.includes(`${item.prompt} ${item.expected}`), `"${item.expected}" follows its context in the file`);
    }
  });

  test("documents split at <|endoftext|> lines and at blank lines", () => {
    assert.deepEqual(splitDocuments("One a.\nTwo b.\n<|endoftext|>\nThree c.\n\nFour d.\n<|endoftext|>\n"), ["One a.\nTwo b.", "Three c.", "Four d."]);
  });
});

describe("answer extraction and scoring", () => {
  test("gsm8k numbers", () => {
    assert.equal(extractGsm8kAnswer(" She has 3 left.\n#### 1,234"), "1234");
    assert.equal(extractGsm8kAnswer("So 5 + 7 = 12 dollars. The answer is $12.50."), "12.5");
    assert.equal(extractGsm8kAnswer("no number"), "");
    assert.equal(normalizeNumber("18"), "18");
    const gsm8k = findTask("gsm8k");
    assert.ok(gsm8k.isCorrect(gsm8k.extract("... #### 18"), { id: "x", prompt: "", expected: "18" }));
    assert.ok(!gsm8k.isCorrect(gsm8k.extract("... #### 19"), { id: "x", prompt: "", expected: "18" }));
  });

  test("choice letters", () => {
    assert.equal(extractChoice(" B"), "B");
    assert.equal(extractChoice(" (C) because"), "C");
    assert.equal(extractChoice(" D. soft"), "D");
    assert.equal(extractChoice(" Because"), "", "a word starting with a capital is not a letter answer");
  });

  test("nq-open normalized exact match against any answer", () => {
    assert.equal(normalizeAnswer("The  Eagles!"), "eagles");
    const nq = findTask("nq-open");
    const item = { id: "x", prompt: "", expected: "14 December 1972 UTC | December 1972", answers: ["14 December 1972 UTC", "December 1972"] };
    assert.ok(nq.isCorrect(nq.extract(" december, 1972.\nQuestion: next"), item));
    assert.ok(!nq.isCorrect(nq.extract(" 1972"), item));
  });

  test("the first word of a continuation", () => {
    assert.equal(firstWord(" girl named Lily"), "girl");
    assert.equal(firstWord(" Lily's ball"), "Lily's");
    assert.equal(firstWord(" signs."), "signs");
    assert.equal(extractNextWord(" girl named"), "girl");
    assert.equal(extractNextWord("s and"), "", "no space: it continues the context's last word");
    assert.equal(extractNextWord("\nThe"), "");
  });

  test("Wilson 95 % interval", () => {
    const [lo, hi] = wilson(5, 20);
    assert.ok(Math.abs(lo - 0.11186) < 1e-4 && Math.abs(hi - 0.46870) < 1e-4, `${lo} ${hi}`);
    assert.deepEqual(wilson(0, 10).map((x) => Number(x.toFixed(4))), [0, 0.2775]);
    assert.ok(wilson(10, 10)[1] <= 1);
  });

  test("paired difference against the best member", () => {
    const p = pairedDifference([true, true, false, true, false], [false, true, false, false, true]);
    assert.equal(p.difference, 0.2);
    assert.equal(p.wins, 2);
    assert.equal(p.losses, 1);
    // d = [1, 0, 0, 1, -1]: sample variance 0.7, half-width 1.96 · sqrt(0.7 / 5)
    assert.ok(Math.abs(p.ci95[1] - 0.2 - 1.959964 * Math.sqrt(0.7 / 5)) < 1e-6);
  });
});

describe("reports name their settings and warn when n is too small", () => {
  const system = (name: string, accuracy: number, n: number) => ({
    name, n, correct: Math.round(accuracy * n), accuracy, ci95: wilson(Math.round(accuracy * n), n), tokensPerSecond: 1, msPerItem: 1, ensembledShare: name === "ensemble" ? 0.8 : null, errors: 0,
  });
  const summaryOf = (n: number, ensembleRight: boolean[], memberRight: boolean[]): Summary => ({
    task: "next-word",
    n,
    settings: { method: "unite", weights: { a: 1, b: 0.5 }, gate: 0.9, heal: false },
    systems: [system("ensemble", ensembleRight.filter(Boolean).length / n, n), system("a", memberRight.filter(Boolean).length / n, n)],
    comparison: { system: "ensemble", baseline: "a", ...pairedDifference(ensembleRight, memberRight) },
  });

  test("settings in the table, the Markdown and the chart title", () => {
    const summary = summaryOf(4, [true, true, false, false], [true, true, false, false]);
    assert.equal(settingsLine(summary), "UniTE, weights a 1 · b 0.5, gate 0.9, healing off, n=4");
    assert.match(textTable(summary), /^next-word: 4 items — UniTE, weights a 1 · b 0\.5, gate 0\.9, healing off, n=4\n/);
    assert.match(svgChart(summary), /<text [^>]*>next-word: UniTE, weights a 1 · b 0\.5, gate 0\.9, healing off, n=4<\/text>/);
    assert.equal(smallSampleWarning(summary), undefined, "agreeing on every item is no difference to warn about");
  });

  test("a difference whose paired interval spans 0 gets the warning; a clear one does not", () => {
    // 5 items: the ensemble 20 points below its best member, from a single item.
    const small = summaryOf(5, [true, false, false, false, false], [true, true, false, false, false]);
    assert.ok(small.comparison!.ci95[0] < 0 && small.comparison!.ci95[1] > 0);
    assert.match(smallSampleWarning(small)!, /^n=5 is too small to tell these apart: the paired 95 % interval of ensemble − a \(−\d+\.\d to \+\d+\.\d points\) includes 0/);
    assert.match(textTable(small), /\nwarning: n=5 is too small/);
    assert.match(svgChart(small), /fill="#b00020">n=5 is too small/);
    const one = summaryOf(1, [false], [true]);
    assert.match(smallSampleWarning(one)!, /^n=1 is too small/);
    // 200 items, the ensemble right on 40 more: the interval excludes 0.
    const many = summaryOf(200, Array.from({ length: 200 }, (_, i) => i < 120), Array.from({ length: 200 }, (_, i) => i < 80));
    assert.equal(smallSampleWarning(many), undefined);
    assert.doesNotMatch(textTable(many), /warning/);
  });
});

describe("chorus eval on the shared pair", () => {
  test("next-word with --members-too: results per item and system, summary, Markdown and chart", async () => {
    const out = evalDir();
    const { code, stdout, stderr } = await chorus(...nextWordArgs(out, 6, "--members-too"));
    assert.equal(code, 0, stderr);
    const lines = readFileSync(path.join(out, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 18);
    for (const r of lines) {
      assert.deepEqual(Object.keys(r).slice(0, 8), ["id", "system", "expected", "output", "correct", "tokens", "ms", "ensembledSteps"]);
      assert.equal(typeof r.correct, "boolean");
      assert.equal(r.error, undefined, r.error);
    }
    const summary = readJson(path.join(out, "summary.json"));
    assert.equal(summary.task, "next-word");
    assert.equal(summary.n, 6);
    assert.deepEqual(summary.systems.map((s: { name: string }) => s.name), ["ensemble", "s260k", "ts656k"]);
    for (const s of summary.systems) {
      const correct = lines.filter((r) => r.system === s.name && r.correct).length;
      assert.equal(s.accuracy, correct / 6);
      assert.ok(s.ci95[0] <= s.accuracy && s.accuracy <= s.ci95[1]);
      assert.ok(s.tokensPerSecond > 0 && s.msPerItem > 0);
    }
    assert.equal(summary.systems[0].ensembledShare, 1, "no gating: every step is ensembled");
    assert.equal(summary.systems[1].ensembledShare, null);
    const best = summary.systems.slice(1).reduce((a: { accuracy: number }, b: { accuracy: number }) => (b.accuracy > a.accuracy ? b : a));
    assert.equal(summary.comparison.baseline, best.name);
    const ok = (system: string, id: string) => lines.find((r) => r.system === system && r.id === id).correct;
    const ids = lines.filter((r) => r.system === "ensemble").map((r) => r.id);
    assert.equal(summary.comparison.wins, ids.filter((id) => ok("ensemble", id) && !ok(best.name, id)).length);
    assert.equal(summary.comparison.losses, ids.filter((id) => !ok("ensemble", id) && ok(best.name, id)).length);
    assert.match(stdout, /ensemble − (s260k|ts656k) \(best member alone\): [+−]\d+\.\d points/);
    const settings = "GaC, weights s260k 1 · ts656k 1, no gating, healing on, n=6";
    assert.match(stdout, new RegExp(`^next-word: 6 items — ${settings}\nsystem +accuracy +95 % CI`));
    assert.deepEqual(summary.settings, { method: "gac", weights: { s260k: 1, ts656k: 1 }, gate: null, heal: true });
    const markdown = readFileSync(path.join(out, "summary.md"), "utf8");
    assert.match(markdown, /\| ensemble \| \d+\.\d % \| /);
    assert.ok(markdown.startsWith(`next-word: 6 items — ${settings}\n`), markdown);
    const chart = readFileSync(path.join(out, "chart.svg"), "utf8");
    assert.match(chart, /^<svg [^>]*>[\s\S]*ts656k[\s\S]*<\/svg>\n$/);
    assert.ok(chart.includes(`next-word: ${settings}`), "the chart's title names the settings");
    // Six items cannot tell an ensemble from its best member unless they agree on all of them.
    if (summary.comparison.wins + summary.comparison.losses > 0) {
      assert.match(stdout, /warning: n=6 is too small to tell these apart: the paired 95 % interval .* includes 0/);
      assert.match(markdown, /\*\*Warning:\*\* n=6 is too small/);
      assert.match(chart, /n=6 is too small to tell the ensemble from its best member/);
    }
  });

  test("-m A -m B without a config; the settings name the members after their files", async () => {
    const out = evalDir();
    const models = path.join(SHARED, "models");
    const { code, stdout, stderr } = await chorus(
      "eval", "-m", path.join(models, "stories260K-f32.gguf"), "-m", path.join(models, "TinyStories-656K-f32.gguf"),
      "--task", "next-word", "--data", TINYSTORIES_DEV, "--limit", "2", "--out", out, "--method", "unite", "--gate", "0.5",
    );
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^next-word: 2 items — UniTE, weights stories260K-f32 1 · TinyStories-656K-f32 1, gate 0\.5, healing on, n=2\n/);
  });

  test("killed mid-run (a real SIGKILL and a line cut mid-write), --resume gives the uninterrupted run's summary", async () => {
    const whole = evalDir();
    assert.equal((await chorus(...nextWordArgs(whole, 8, "--members-too"))).code, 0);
    const expected = withoutSpeed(readJson(path.join(whole, "summary.json")));

    const killed = evalDir();
    const results = path.join(killed, "results.jsonl");
    const child = spawn(process.execPath, [...cliArgs, ...nextWordArgs(killed, 8, "--members-too")], { cwd: root, stdio: "ignore" });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    for (;;) {
      await new Promise((r) => setTimeout(r, 20));
      const lines = existsSync(results) ? readFileSync(results, "utf8").split("\n").length - 1 : 0;
      if (lines >= 3) break;
    }
    child.kill("SIGKILL");
    await exited;
    assert.ok(!existsSync(path.join(killed, "summary.json")), "no summary from a killed run");
    const kept = readFileSync(results, "utf8");
    assert.ok(kept.split("\n").length - 1 < 24, "the kill came before the end");
    // Also cut the last line in half, as a kill during the write would.
    const cut = kept.trimEnd().split("\n");
    writeFileSync(results, cut.slice(0, -1).join("\n") + "\n" + cut.at(-1)!.slice(0, 25));

    const resumed = await chorus(...nextWordArgs(killed, 8, "--members-too", "--resume"));
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(withoutSpeed(readJson(path.join(killed, "summary.json"))), expected);
    const after = readFileSync(results, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(after.length, 24, "each item and system exactly once");
    assert.equal(new Set(after.map((r) => `${r.system} ${r.id}`)).size, 24);
    assert.ok(readFileSync(results, "utf8").startsWith(cut.slice(0, -1).join("\n") + "\n"), "finished results are kept, not rerun");
  });

  test("Ctrl-C stops with exit code 130, says how to continue, and --resume finishes the run", async () => {
    const out = evalDir();
    const results = path.join(out, "results.jsonl");
    const child = spawn(process.execPath, [...cliArgs, ...nextWordArgs(out, 30)], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    while (!existsSync(results) || readFileSync(results, "utf8").split("\n").length - 1 < 2) await new Promise((r) => setTimeout(r, 20));
    child.kill("SIGINT");
    assert.equal(await exited, 130);
    assert.match(stderr, /interrupted: finished results are in .*results\.jsonl; add --resume to the same command to continue/);
    const resumed = await chorus(...nextWordArgs(out, 30, "--resume"));
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(readJson(path.join(out, "summary.json")).systems[0].n, 30);
  });

  test("chorus bench: members alone, each method with and without gating, JSON", async () => {
    const { code, stdout, stderr } = await chorus("bench", "-c", example, "--steps", "4", "--json");
    assert.equal(code, 0, stderr);
    const report = JSON.parse(stdout);
    assert.deepEqual(
      report.rows.map((r: { system: string }) => r.system),
      ["s260k alone", "ts656k alone", "GaC", "GaC gated 0.9", "UniTE", "UniTE gated 0.9", "bytes/mix", "bytes/mix gated 0.9", "bytes/product", "bytes/product gated 0.9",
        "GaC speculate k=2 (s260k drafts)", "GaC speculate k=4 (s260k drafts)", "GaC speculate k=8 (s260k drafts)"],
    );
    for (const r of report.rows.filter((x: { speculation?: unknown }) => x.speculation)) {
      assert.ok(r.speculation.k > 0 && r.speculation.acceptedShare >= 0 && r.speculation.acceptedShare <= 1, JSON.stringify(r));
    }
    for (const r of report.rows) {
      assert.equal(r.steps, 4);
      assert.ok(r.tokensPerSecond > 0 && r.memberWallMsPerStep > 0 && r.engineMsPerStep >= 0);
      assert.ok(r.words > 0 && r.msPerWord > 0, JSON.stringify(r));
      const split = r.extractionMsPerStep + r.syncMsPerStep + r.combinationMsPerStep;
      assert.ok(r.extractionMsPerStep > 0 && r.syncMsPerStep > 0 && Math.abs(split - r.engineMsPerStep) < 1e-6, JSON.stringify(r));
    }
    assert.ok(report.peakRssMiB > 10);
  });
});

describe("chorus eval: bad input", () => {
  const summaryIn = (dir: string) => existsSync(path.join(dir, "summary.json"));

  test("unknown task", async () => {
    const out = evalDir();
    const r = await chorus("eval", "-c", example, "--task", "trivia", "--data", TINYSTORIES_DEV, "--out", out);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown task "trivia": choose one of gsm8k, arc, mmlu, nq-open, lambada, next-word/);
  });

  test("a data file in the wrong format names the line and what was expected", async () => {
    const dir = evalDir();
    const arcFile = path.join(DATA, "arc/ARC-Easy-test.jsonl");
    const wrongTask = await chorus("eval", "-c", example, "--task", "gsm8k", "--data", arcFile, "--out", path.join(dir, "a"));
    assert.equal(wrongTask.code, 1);
    assert.match(wrongTask.stderr, /ARC-Easy-test\.jsonl:1: no string field "answer"; expected JSON Lines, one \{"question": "\.\.\.", "answer": "reasoning … #### 42"\}/);
    const broken = path.join(dir, "broken.jsonl");
    const good = readFileSync(arcFile, "utf8").split("\n").slice(0, 2).join("\n");
    writeFileSync(broken, `${good}\n{"id": "x", "question": "cut off\n`);
    const brokenLine = await chorus("eval", "-c", example, "--task", "arc", "--data", broken, "--out", path.join(dir, "b"));
    assert.match(brokenLine.stderr, /broken\.jsonl:3: not a JSON object .*; expected JSON Lines/);
    const jsonl = await chorus(...nextWordArgs(path.join(dir, "c"), 2).map((a) => (a === TINYSTORIES_DEV ? path.join(DATA, "lambada/lambada_test.jsonl") : a)));
    assert.match(jsonl.stderr, /lambada_test\.jsonl:1: this is JSON Lines \(for --task lambada or another task\); expected plain text/);
    const csv = path.join(dir, "bad.csv");
    writeFileSync(csv, 'What?,1,2,3,4,B\n"Why?",1,2,3,E\n');
    const badCsv = await chorus("eval", "-c", example, "--task", "mmlu", "--data", csv, "--out", path.join(dir, "d"));
    assert.match(badCsv.stderr, /bad\.csv:2: 5 columns; expected MMLU CSV/);
    for (const sub of ["a", "b", "c", "d"]) assert.ok(!summaryIn(path.join(dir, sub)));
  });

  test("an empty data set", async () => {
    const dir = evalDir();
    const empty = path.join(dir, "empty.txt");
    writeFileSync(empty, "\n<|endoftext|>\n\n");
    const r = await chorus("eval", "-c", example, "--task", "next-word", "--data", empty, "--out", path.join(dir, "out"));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /empty\.txt holds no next-word items; expected plain text: documents separated by <\|endoftext\|> lines or blank lines/);
    const missing = await chorus("eval", "-c", example, "--task", "next-word", "--data", path.join(dir, "none.txt"), "--out", path.join(dir, "out"));
    assert.match(missing.stderr, /none\.txt: no such file; expected plain text/);
  });

  test("an output folder that cannot be written", async () => {
    const dir = evalDir();
    const file = path.join(dir, "a-file");
    writeFileSync(file, "");
    const r = await chorus(...nextWordArgs(path.join(file, "out"), 2));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the output folder cannot be used: .*a-file is a file, not a folder, so .*a-file\/out cannot be created; choose another --out/);
  });

  test("an output folder on a kernel pseudo file system is refused at once (Node's recursive mkdir spins forever under /proc)", async () => {
    const r = await run(process.execPath, [...cliArgs, ...nextWordArgs("/proc/chorus-eval-out/x", 2)], { cwd: root, timeout: 60_000 }).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number | null; signal?: string; stderr: string }) => ({ code: error.code, stderr: error.stderr + (error.signal ? ` (killed: ${error.signal})` : "") }),
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the output folder cannot be used: \/proc is on procfs, a kernel pseudo file system that holds no ordinary files; choose another --out/);
  });

  test("resuming results made with other settings is refused with the difference; existing results need --resume", async () => {
    const out = evalDir();
    assert.equal((await chorus(...nextWordArgs(out, 2))).code, 0);
    const before = readFileSync(path.join(out, "summary.json"), "utf8");
    const other = await chorus(...nextWordArgs(out, 2, "--resume", "--method", "unite"));
    assert.equal(other.code, 1);
    assert.match(other.stderr, /cannot resume: the results in .* were made with different settings \(method: "gac" → "unite"\); mixing them would score items under different settings/);
    const members = await chorus(...nextWordArgs(out, 2, "--resume", "--members-too", "--weights", "1,0.5"));
    assert.match(members.stderr, /different settings \(weights\[1\]: 1 → 0\.5; systems\[1\]: \(none\) → "s260k"; systems\[2\]: \(none\) → "ts656k"\)/);
    const again = await chorus(...nextWordArgs(out, 2));
    assert.match(again.stderr, /already holds results .*; pass --resume to continue that run, or choose another --out/);
    assert.equal(readFileSync(path.join(out, "summary.json"), "utf8"), before, "a refused run leaves the summary alone");
  });
});
