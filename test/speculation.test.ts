import { after, before, describe, test } from "node:test";
import { startServer } from "./helpers/server.js";
import assert from "node:assert/strict";
import { LlamaMember } from "../src/members/llama.js";
import { Ensemble, type GenerateOptions, type GenerationResult, type Step } from "../src/engine/ensemble.js";
import { drawIndex, pickIndex, samplingDistribution, seededRandom, speculativePick } from "../src/engine/sampling.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PAIR, S260K } from "./helpers/models.js";
import { makeTinyQwen2Model } from "./helpers/tiny-qwen2.js";

/** Two-sample chi-square statistic over categories (rare ones pooled), and its degrees of freedom. */
function chiSquare(a: Map<string, number>, b: Map<string, number>): { statistic: number; dof: number } {
  const na = [...a.values()].reduce((x, y) => x + y, 0);
  const nb = [...b.values()].reduce((x, y) => x + y, 0);
  const keys = new Set([...a.keys(), ...b.keys()]);
  const cells: [number, number][] = [];
  let pooled: [number, number] = [0, 0];
  for (const k of keys) {
    const cell: [number, number] = [a.get(k) ?? 0, b.get(k) ?? 0];
    if (cell[0] + cell[1] < 10) pooled = [pooled[0] + cell[0], pooled[1] + cell[1]];
    else cells.push(cell);
  }
  if (pooled[0] + pooled[1] > 0) cells.push(pooled);
  let statistic = 0;
  for (const [x, y] of cells) {
    const total = x + y;
    const ea = (total * na) / (na + nb);
    const eb = (total * nb) / (na + nb);
    statistic += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb;
  }
  return { statistic, dof: cells.length - 1 };
}

/** Upper 0.1 % points of the chi-square distribution, by degrees of freedom. */
const CHI_SQUARE_999 = [0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26, 32.91, 34.53, 36.12, 37.7];

describe("speculative sampling (pure)", () => {
  test("samplingDistribution is what pickIndex draws from", () => {
    const random = seededRandom(7);
    const scores = Float64Array.of(0.05, 0.4, 0.2, 0.3, 0.05);
    for (const options of [
      { temperature: 1, topP: 1, topK: 0, seed: 0 },
      { temperature: 0.7, topP: 0.8, topK: 0, seed: 0 },
      { temperature: 1.3, topP: 1, topK: 3, seed: 0 },
    ]) {
      const p = samplingDistribution(scores, options);
      const counts = new Float64Array(scores.length);
      const n = 100_000;
      for (let i = 0; i < n; i++) counts[pickIndex(scores, options, random)]!++;
      for (let i = 0; i < scores.length; i++) assert.ok(Math.abs(counts[i]! / n - p[i]!) < 0.006, `${JSON.stringify(options)} index ${i}: ${counts[i]! / n} vs ${p[i]}`);
    }
    assert.deepEqual([...samplingDistribution(scores, { temperature: 0, topP: 1, topK: 0, seed: 0 })], [0, 1, 0, 0, 0]);
  });

  test("a draft drawn from q and kept by speculativePick leaves the output distributed as p", () => {
    const random = seededRandom(11);
    const cases: { p: number[]; q: number[] }[] = [
      { p: [0.5, 0.3, 0.2, 0], q: [0.1, 0.1, 0.1, 0.7] }, // most of q where p has nothing
      { p: [0.25, 0.25, 0.25, 0.25], q: [0.97, 0.01, 0.01, 0.01] },
      { p: [0.6, 0.4, 0, 0], q: [0.6, 0.4, 0, 0] }, // q = p: every draft kept
      { p: [0.1, 0.2, 0.3, 0.4], q: [0.4, 0.3, 0.2, 0.1] },
    ];
    for (const { p, q } of cases) {
      const counts = new Float64Array(p.length);
      let kept = 0;
      const n = 100_000;
      for (let i = 0; i < n; i++) {
        const draft = drawIndex(q, random);
        const chosen = speculativePick(p, q, draft, random);
        if (chosen === draft) kept++;
        counts[chosen]!++;
      }
      for (let i = 0; i < p.length; i++) assert.ok(Math.abs(counts[i]! / n - p[i]!) < 0.006, `p ${p} q ${q}: index ${i} drawn ${counts[i]! / n}`);
      const overlap = p.reduce((s, pi, i) => s + Math.min(pi, q[i]!), 0);
      assert.ok(Math.abs(kept / n - overlap) < 0.006, `acceptance ${kept / n} vs Σ min(p, q) = ${overlap}`);
    }
    // A drafted text the ensemble does not list (index -1) is always redrawn from p.
    const counts = [0, 0];
    for (let i = 0; i < 20_000; i++) counts[speculativePick([0.7, 0.3], [0, 0], -1, random)]!++;
    assert.ok(Math.abs(counts[0]! / 20_000 - 0.7) < 0.015);
  });
});

describe("speculative ensembling on the shared pair", () => {
  let exact: Ensemble;
  let batched: Ensemble;
  before(async () => {
    // Speculation configured for the ensemble: each member reads steps off the drafted batch on a side sequence.
    exact = await Ensemble.create({ members: PAIR, threads: 1, contextSize: 512, exactReads: true, speculate: { k: 4 } });
    batched = await Ensemble.create({ members: PAIR, threads: 1, contextSize: 512 });
  });
  after(async () => {
    await exact?.dispose();
    await batched?.dispose();
  });

  async function run(ensemble: Ensemble, prompt: string, options: GenerateOptions): Promise<{ steps: Step[]; result: GenerationResult }> {
    const steps: Step[] = [];
    const stream = ensemble.stream({ text: prompt }, { trace: true, ...options });
    for (;;) {
      const next = await stream.next();
      if (next.done) return { steps, result: next.value };
      steps.push(next.value);
    }
  }

  const PROMPTS = ["Once upon a time, there was a little girl named Lily. She", "The dog ran to the park and", "Tom had a red ball. One day, he"];

  test("with exact reads, every method's greedy steps under speculation are the plain ensemble's, bit for bit", async () => {
    const sides = () => exact.members.reduce((n, m) => n + (m as LlamaMember).readCounts.sideEvaluations, 0);
    const sidesBefore = sides();
    const settings: [string, GenerateOptions][] = [
      ["gac", { method: "gac" }],
      ["gac, gated", { method: "gac", gate: { threshold: 0.6 } }],
      ["unite", { method: "unite" }],
      ["bytes/mix", { method: "bytes" }],
      ["bytes/product", { method: "bytes", bytes: { aggregate: "product" } }],
      ["gac, no healing", { method: "gac", heal: false }],
    ];
    for (const [name, options] of settings) {
      for (const prompt of PROMPTS.slice(0, 2)) {
        const plain = await run(exact, prompt, { ...options, maxTokens: 32, speculate: null });
        for (const k of [1, 4]) {
          for (const draft of ["s260k", "ts656k"]) {
            const speculative = await run(exact, prompt, { ...options, maxTokens: 32, speculate: { k, draft } });
            const where = `${name}, k ${k}, draft ${draft}, ${JSON.stringify(prompt)}`;
            assert.equal(speculative.result.text, plain.result.text, where);
            assert.deepEqual(
              speculative.steps.map((s) => [s.bytes, s.trace?.combined, s.trace?.members.map((m) => m.top)]),
              plain.steps.map((s) => [s.bytes, s.trace?.combined, s.trace?.members.map((m) => m.top)]),
              where,
            );
            const stats = speculative.result.speculation!;
            assert.ok(stats.rounds > 0 && stats.accepted <= stats.drafted && stats.drafted <= stats.rounds * k, `${where}: ${JSON.stringify(stats)}`);
          }
        }
      }
    }
    // Steps off the drafted batch were read on side sequences (with the patched binding's direct path), and still matched.
    if ((exact.members[0] as LlamaMember).directReads) assert.ok(sides() > sidesBefore, "no step was read on a side sequence");
  });

  test("batched verification: the member that does not draft answers more of its steps from reads made ahead", async () => {
    const member = batched.members[1]! as LlamaMember;
    const counts = () => member.readCounts;
    const prompt = PROMPTS[0]!;
    const c0 = counts();
    const plain = await batched.generate({ text: prompt }, { maxTokens: 60, speculate: null });
    const c1 = counts();
    const speculative = await batched.generate({ text: prompt }, { maxTokens: 60, speculate: { k: 4, draft: "s260k" } });
    const c2 = counts();
    const stats = speculative.speculation!;
    assert.ok(stats.accepted > 0, JSON.stringify(stats));
    assert.ok(c2.served - c1.served > c1.served - c0.served, `served: plain ${c1.served - c0.served}, speculative ${c2.served - c1.served}`);
    assert.ok(plain.steps > 0);
  });

  test("with sampling, the first piece is distributed as the plain ensemble's (two-sample chi-square over 400 seeds each)", async () => {
    const prompt = "Once upon a time";
    const firstPiece = async (speculate: GenerateOptions["speculate"], seed: number) =>
      (await run(batched, prompt, { maxSteps: 1, sampling: { temperature: 1, seed }, speculate })).steps[0]!.bytes;
    const plain = new Map<string, number>();
    const speculative = new Map<string, number>();
    const drafterAlone = new Map<string, number>();
    for (let seed = 1; seed <= 400; seed++) {
      const a = await firstPiece(null, seed);
      plain.set(a, (plain.get(a) ?? 0) + 1);
      const b = await firstPiece({ k: 2, draft: "s260k" }, seed + 1000);
      speculative.set(b, (speculative.get(b) ?? 0) + 1);
      const c = (await run(batched, prompt, { maxSteps: 1, sampling: { temperature: 1, seed: seed + 2000 }, only: "s260k" })).steps[0]!.bytes;
      drafterAlone.set(c, (drafterAlone.get(c) ?? 0) + 1);
    }
    const same = chiSquare(plain, speculative);
    assert.ok(same.statistic < CHI_SQUARE_999[Math.min(same.dof, 15)]!, `speculative vs plain: χ² ${same.statistic.toFixed(1)} on ${same.dof} dof`);
    // The test can tell distributions apart: the drafter's own is not the ensemble's.
    const other = chiSquare(plain, drafterAlone);
    assert.ok(other.statistic > CHI_SQUARE_999[Math.min(other.dof, 15)]!, `drafter alone vs plain: χ² ${other.statistic.toFixed(1)} on ${other.dof} dof`);
  });

  test("bad settings are refused with the fix", async () => {
    await assert.rejects(batched.generate({ text: "x" }, { speculate: { k: 0 } }), /speculate\.k must be a whole number from 1 to 32/);
    await assert.rejects(batched.generate({ text: "x" }, { speculate: { k: 2, draft: "nope" } }), /no member is named 'nope'; members are s260k, ts656k/);
    // One voting member: nothing to speculate for, and no error.
    const alone = await batched.generate({ text: "x" }, { speculate: { k: 2 }, only: "ts656k", maxTokens: 3 });
    assert.equal(alone.speculation, undefined);
  });
});

describe("speculation through the server", () => {
  test("ensemble.speculate is taken per request, an unknown drafter is a 400 naming the field", async () => {
    const ensemble = await Ensemble.create({ members: PAIR, threads: 1, contextSize: 512 });
    const served = await startServer({ models: [{ id: "pair", ensemble }] });
    try {
      const ask = (ensembleField: unknown) =>
        fetch(`${served.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "pair", prompt: "The dog ran to the park and", max_tokens: 12, ensemble: ensembleField }),
        });
      const plain = (await (await ask({})).json()) as { choices: { text: string }[] };
      const speculative = await ask({ speculate: { k: 3 } });
      assert.equal(speculative.status, 200);
      assert.equal(((await speculative.json()) as { choices: { text: string }[] }).choices[0]!.text, plain.choices[0]!.text);
      const bad = await ask({ speculate: { k: 3, draft: "nope" } });
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { error: { message: string } }).error.message, /ensemble\.speculate\.draft: no member is named 'nope'; members: s260k, ts656k/);
      const badK = await ask({ speculate: { k: 99 } });
      assert.equal(badK.status, 400);
    } finally {
      await served.close();
      await ensemble.dispose();
    }
  });
});

describe("speculative ensembling across very different vocabularies (s260k's 512 SentencePiece tokens + a random model with Qwen2's 151,669 byte-level BPE tokens)", () => {
  let dir: string;
  let ensemble: Ensemble;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "chorus-speculation-"));
    const qwen = path.join(dir, "qwen2-vocab-tiny.gguf");
    await makeTinyQwen2Model(qwen);
    ensemble = await Ensemble.create({
      members: [
        { name: "s260k", model: S260K, primary: true },
        { name: "qwen", model: qwen },
      ],
      threads: 1,
      contextSize: 256,
      exactReads: true,
      speculate: { k: 4 },
    });
  });
  after(async () => {
    await ensemble?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("with exact reads, greedy GaC, UniTE and byte voting under speculation write the plain ensemble's text", async () => {
    const prompts = ["Once upon a time, there was a little girl named Lily. She", "The dog ran to the park and"];
    for (const method of ["gac", "unite", "bytes"] as const) {
      for (const prompt of prompts) {
        const steps = async (speculate: GenerateOptions["speculate"]) => {
          await ensemble.forgetReads();
          const result = await ensemble.generate({ text: prompt }, { method, maxTokens: 20, speculate });
          return { text: result.text, speculation: result.speculation };
        };
        const plain = await steps(null);
        for (const draft of ["s260k", "qwen"]) {
          const speculative = await steps({ k: 4, draft });
          assert.equal(speculative.text, plain.text, `${method}, draft ${draft}, ${JSON.stringify(prompt)}`);
          assert.ok(speculative.speculation!.rounds > 0, `${method}, draft ${draft}: no round was drafted`);
        }
      }
    }
  });
});
