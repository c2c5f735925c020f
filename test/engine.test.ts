import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Token } from "node-llama-cpp";
import { Ensemble } from "../src/engine/ensemble.js";
import { LlamaMember, loadLlama } from "../src/members/llama.js";
import { PAIR, S260K, TS656K } from "./helpers/models.js";
import { textToSurface } from "../src/tokens/vocabulary.js";

const PROMPTS = ["Once upon a time, there was a little", "The dog ran to the park and", "Lily and Ben"];

/** The model by itself: greedy over its full distribution, appending its own tokens. */
async function ownGreedy(modelPath: string, prompt: string, steps: number): Promise<string[]> {
  const llama = await loadLlama();
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: 512, threads: 1 });
  const sequence = context.getSequence();
  const tokens: Token[] = [model.tokens.bos!, ...model.tokenize(prompt)];
  const pieces: string[] = [];
  try {
    let pending = tokens;
    for (let i = 0; i < steps; i++) {
      const last = pending[pending.length - 1]!;
      const result = await sequence.controlledEvaluate([...pending.slice(0, -1), [last, { generateNext: { probabilities: true } }]]);
      const probabilities = result[result.length - 1]!.next!.probabilities!;
      const best = [...probabilities.entries()].reduce((a, b) => (b[1] > a[1] ? b : a))[0];
      if (model.isEogToken(best)) break;
      pieces.push(Buffer.from(model.detokenize([best], true, pending.slice(-1)), "utf8").toString("latin1"));
      pending = [best];
    }
  } finally {
    await context.dispose();
    await model.dispose();
  }
  return pieces;
}

async function chosenPieces(ensemble: Ensemble, prompt: string, options: Parameters<Ensemble["stream"]>[1]): Promise<string[]> {
  const pieces: string[] = [];
  for await (const step of ensemble.stream({ text: prompt }, options)) if (step.bytes) pieces.push(step.bytes);
  return pieces;
}

describe("engine on the shared TinyStories pair", () => {
  let pair: Ensemble;
  before(async () => {
    pair = await Ensemble.create({ members: PAIR, maxTokens: 30 });
  });
  after(async () => {
    await pair.dispose();
  });

  test("maxTokens counts the primary member's tokens (else the first voting member's); maxSteps counts steps", async () => {
    const primaryTokens = (member: number, text: string) => pair.members[member]!.tokenizeContinuation(Buffer.from(text, "utf8").toString("latin1")).ids.length;
    for (const prompt of PROMPTS) {
      const result = await pair.generate({ text: prompt }, { maxTokens: 10 });
      assert.equal(result.finishReason, "length");
      assert.equal(result.completionTokens, 10);
      // The primary's own tokenization of the text may join pieces differently at the prompt's seam: within one.
      assert.ok(Math.abs(primaryTokens(0, result.text) - 10) <= 1, `${prompt}: ${JSON.stringify(result.text)} is ${primaryTokens(0, result.text)} s260k tokens`);
      const alone = await pair.generate({ text: prompt }, { maxTokens: 10, only: "ts656k" });
      assert.equal(alone.completionTokens, 10, "a member alone counts its own tokens");
      const steps = await pair.generate({ text: prompt }, { maxSteps: 3, maxTokens: Infinity });
      assert.equal(steps.steps, 3);
    }
    // Without a primary member, the first member counts.
    const noPrimary = Ensemble.fromMembers({ members: [{ name: "a", model: S260K }, { name: "b", model: TS656K }] }, pair.members);
    const result = await noPrimary.generate({ text: PROMPTS[0]! }, { maxTokens: 7 });
    assert.equal(result.completionTokens, 7);
  });

  test("UniTE's k is unite.k; the old topK spelling is refused with a pointer, not ignored", async () => {
    await assert.rejects(Ensemble.create({ members: PAIR, topK: 5 } as never), /spec\.topK is now unite\.k .* write \{ unite: \{ k: 5 \} \}/);
    await assert.rejects(pair.generate({ text: "Lily" }, { topK: 5 } as never), /options\.topK is now unite\.k/);
    const narrow = await pair.generate({ text: PROMPTS[0]! }, { method: "unite", unite: { k: 1 }, maxTokens: 8 });
    assert.ok(narrow.text.length > 0);
  });

  test("weights [1, 0] and --only reproduce each member's own greedy output token for token", async () => {
    for (const [index, member] of PAIR.entries()) {
      for (const prompt of PROMPTS) {
        const own = await ownGreedy(member.model, prompt, 30);
        const weights = index === 0 ? [1, 0] : [0, 1];
        const byWeights = await chosenPieces(pair, prompt, { weights, heal: false });
        const byOnly = await chosenPieces(pair, prompt, { only: member.name, heal: false });
        assert.deepEqual(byWeights, own.slice(0, byWeights.length), `${member.name} with weights ${weights} on ${prompt}`);
        assert.equal(byWeights.length, own.length);
        assert.deepEqual(byOnly, byWeights);
      }
    }
  });

  test("with healing, a member alone only differs from its own greedy output through the first step", async () => {
    for (const prompt of PROMPTS) {
      const healed = await chosenPieces(pair, prompt, { only: "s260k" });
      const first = Buffer.from(healed[0]!, "latin1").toString("utf8");
      // Continuing its own greedy output from the text after the healed first step gives the same pieces.
      const own = await ownGreedy(S260K, prompt + first, 29);
      assert.equal(healed.slice(1).join(""), own.slice(0, healed.length - 1).join(""), prompt);
    }
  });

  test("GaC and UniTE give fluent text on the pair", async () => {
    for (const method of ["gac", "unite"] as const) {
      const result = await pair.generate({ text: "Once upon a time, there was a little" }, { method, maxTokens: 50 });
      console.log(`${method}: ${JSON.stringify(result.text)}`);
      const words = result.text.trim().split(/\s+/);
      assert.ok(words.length >= 12, `${method} produced too little text: ${result.text}`);
      const known = words.filter((w) => /^[A-Za-z]+[.,!?"]*$/.test(w)).length;
      assert.ok(known / words.length > 0.8, `${method} produced non-words: ${result.text}`);
      assert.equal(result.ensembledSteps, result.steps);
    }
  });

  test("GaC with the top-k bound chooses the same text as GaC over full distributions", async () => {
    let escalated = 0;
    for (const heal of [true, false]) {
      for (const prompt of PROMPTS) {
        const bounded = await pair.generate({ text: prompt }, { heal, maxTokens: 40 });
        const full = await pair.generate({ text: prompt }, { heal, maxTokens: 40, fullDistributions: true });
        assert.equal(bounded.text, full.text, `heal=${heal}: ${prompt}`);
        escalated += bounded.escalatedSteps;
      }
    }
    console.log(`steps where the bound asked for more candidates: ${escalated}`);
  });

  test("gating: the primary decides alone when confident and the others catch up", async () => {
    const gated = await pair.generate({ text: "Once upon a time, there was a little" }, { gate: { threshold: 0.5 }, maxTokens: 40 });
    assert.ok(gated.ensembledSteps < gated.steps, "some steps should be decided by the primary alone");
    assert.ok(gated.ensembledSteps > 0, "some steps should be ensembled");
    const everyStep = await pair.generate({ text: "Once upon a time, there was a little" }, { gate: { threshold: 1 }, maxTokens: 40 });
    const ungated = await pair.generate({ text: "Once upon a time, there was a little" }, { gate: null, maxTokens: 40 });
    assert.equal(everyStep.text, ungated.text, "a threshold of 1 never gates");
  });

  test("sampling with a seed is reproducible", async () => {
    const sampling = { temperature: 0.8, topP: 0.95, seed: 1234 };
    const a = await pair.generate({ text: "Lily and Ben" }, { sampling, maxTokens: 30 });
    const b = await pair.generate({ text: "Lily and Ben" }, { sampling, maxTokens: 30 });
    const c = await pair.generate({ text: "Lily and Ben" }, { sampling: { ...sampling, seed: 99 }, maxTokens: 30 });
    assert.equal(a.text, b.text);
    assert.notEqual(a.text, c.text);
  });

  test("stop strings end the text before them", async () => {
    const result = await pair.generate({ text: "Once upon a time, there was a little" }, { stop: ["Lily"], maxTokens: 40 });
    assert.equal(result.finishReason, "stop");
    assert.ok(!result.text.includes("Lily"), result.text);
  });

  test("a generation that fills a member's context ends with 'length' and keeps its text, even when the last piece is several of that member's tokens", async () => {
    // These seeds chose, near the end of s260k's 512-token context, a piece of ts656k's that is
    // several s260k tokens: counted before s260k re-tokenized it, the generation failed instead.
    for (const [method, seed] of [["gac", 13], ["unite", 2]] as const) {
      const options = { method, maxTokens: 600, sampling: { temperature: 0.5, seed } };
      const result = await pair.generate({ text: "Lily and Ben" }, options);
      assert.equal(result.finishReason, "length", `${method} seed ${seed}`);
      assert.ok(result.steps > 200 && result.steps < 600, `${method} seed ${seed}: ${result.steps} steps`);
      let streamed = "";
      for await (const step of pair.stream({ text: "Lily and Ben" }, options)) streamed += step.text;
      assert.equal(streamed, result.text);
      const tokens = pair.members[0]!.tokenizeContinuation(textToSurface("Lily and Ben" + result.text));
      assert.ok(tokens.ids.length > 480, `the text reaches the end of s260k's context (${tokens.ids.length} tokens)`);
    }
  });
});

describe("the same model listed twice", () => {
  test("reproduces the single model with GaC and UniTE, healing on and off", async () => {
    const twice = await Ensemble.create({
      members: [
        { name: "a", model: S260K },
        { name: "b", model: S260K },
      ],
      maxTokens: 30,
    });
    try {
      for (const method of ["gac", "unite"] as const) {
        for (const heal of [true, false]) {
          for (const prompt of PROMPTS) {
            const single = await twice.generate({ text: prompt }, { only: "a", heal, method });
            const both = await twice.generate({ text: prompt }, { heal, method });
            assert.equal(both.text, single.text, `${method} heal=${heal} ${prompt}`);
          }
        }
      }
    } finally {
      await twice.dispose();
    }
  });
});

describe("extending a distribution", () => {
  test("more ids read at the same position get the probabilities a fresh request gives them", async () => {
    const member = await LlamaMember.load({ name: "m", modelPath: TS656K, contextSize: 256 });
    try {
      const prompt = member.promptTokens({ text: "Once upon a time, there was a little girl" });
      const tokens = [...prompt.prefix, ...prompt.text.ids];
      const position = tokens.length - 1;
      const [base] = await member.distributions(tokens, [{ position, topK: 5 }]);
      const extra = [100, 200, 300, 1500];
      const [extended] = await member.distributions(tokens, [{ position, topK: 0, extraIds: extra, extend: base }]);
      const [fresh] = await member.distributions(tokens, [{ position, topK: 5, extraIds: extra }]);
      for (const id of extra) {
        const a = extended!.probs[[...extended!.ids].indexOf(id)]!;
        const b = fresh!.probs[[...fresh!.ids].indexOf(id)]!;
        // llama.cpp sums the total logit weight in float32, in a different order when it ranks the vocabulary.
        assert.ok(Math.abs(a - b) < 1e-5 * b, `token ${id}: ${a} vs ${b}`);
      }
      assert.ok(Math.abs(extended!.unlistedMass - fresh!.unlistedMass) < 1e-6);
    } finally {
      await member.dispose();
    }
  });
});

describe("KV-cache sync", () => {
  test("distributions after erasing and re-evaluating equal a fresh evaluation", async () => {
    const warm = await LlamaMember.load({ name: "warm", modelPath: TS656K, contextSize: 256 });
    try {
      const prompt = warm.promptTokens({ text: "Once upon a time, there was a little girl who liked to play" });
      const tokens = [...prompt.prefix, ...prompt.text.ids];
      const variants = [tokens, tokens.slice(0, -3), [...tokens.slice(0, -2), 100, 200, 300], tokens];
      for (const variant of variants) {
        const last = variant.length - 1;
        const request = [{ position: last - 1, topK: 20 }, { position: last, topK: 20, extraIds: [5, 6, 7] }];
        const [w0, w1] = await warm.distributions(variant, request);
        const fresh = await LlamaMember.load({ name: "fresh", modelPath: TS656K, contextSize: 256 });
        try {
          const [f0, f1] = await fresh.distributions(variant, request);
          for (const [w, f] of [[w0!, f0!], [w1!, f1!]] as const) {
            assert.deepEqual([...w.ids], [...f.ids]);
            for (let i = 0; i < w.probs.length; i++) assert.ok(Math.abs(w.probs[i]! - f.probs[i]!) < 1e-6);
          }
        } finally {
          await fresh.dispose();
        }
      }
    } finally {
      await warm.dispose();
    }
  });
});
