import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Ensemble } from "../src/engine/ensemble.js";
import { LlamaMember } from "../src/members/llama.js";
import { MemberTrack } from "../src/engine/member-track.js";
import { bytesVote, type ByteAggregate } from "../src/methods/bytes.js";
import { END_TEXT, type MemberCandidates } from "../src/methods/candidates.js";
import { referenceBytesVote } from "./helpers/byte-reference.js";
import { PAIR, S260K, TS656K } from "./helpers/models.js";

const PROMPTS = ["Once upon a time, there was a little", "The dog ran to the park and", "Lily and Ben"];
const AGGREGATES: ByteAggregate[] = ["mix", "product"];

async function pieces(ensemble: Ensemble, prompt: string, options: Parameters<Ensemble["stream"]>[1]): Promise<string[]> {
  const out: string[] = [];
  for await (const step of ensemble.stream({ text: prompt }, options)) if (step.bytes) out.push(step.bytes);
  return out;
}

/** Drives real members through their tracks as the engine does, each step over their full distributions. */
async function fullSteps(members: readonly LlamaMember[], prompt: string, steps: number, visit: (candidates: MemberCandidates[]) => string): Promise<string[]> {
  const tracks = members.map((m) => new MemberTrack(m, m.promptTokens({ text: prompt }), true));
  let text = "";
  const chosen: string[] = [];
  for (let step = 0; step < steps; step++) {
    const candidates: MemberCandidates[] = [];
    for (const track of tracks) {
      const plan = track.planFetch(text, { topK: 128, full: true });
      const dists = await track.member.distributions(plan.tokens, plan.requests);
      const branches = track.branchPlans(plan, dists);
      const branchDists = [];
      for (const b of branches) branchDists.push((await track.member.distributions(b.tokens, [b.request]))[0]!);
      candidates.push(track.build(plan, dists, branches, branchDists));
    }
    const piece = visit(candidates);
    chosen.push(piece);
    if (piece === END_TEXT) break;
    const before = text.length;
    text += piece;
    for (const track of tracks) track.accept(piece, before, false);
  }
  return chosen;
}

describe("byte-level voting on the shared TinyStories pair", () => {
  let pair: Ensemble;
  let s260k: LlamaMember;
  let ts656k: LlamaMember;
  before(async () => {
    pair = await Ensemble.create({ members: PAIR, method: "bytes", maxTokens: 40 });
    s260k = await LlamaMember.load({ name: "s260k", modelPath: S260K, contextSize: 512 });
    ts656k = await LlamaMember.load({ name: "ts656k", modelPath: TS656K, contextSize: 512 });
  });
  after(async () => {
    await pair.dispose();
    await s260k.dispose();
    await ts656k.dispose();
  });

  test("3 prompts × 40 steps: the committed bytes and their probability equal a brute force over the full distributions", async () => {
    let compared = 0;
    for (const aggregate of AGGREGATES) {
      for (const prompt of PROMPTS) {
        await fullSteps([s260k, ts656k], prompt, 40, (candidates) => {
          const vote = bytesVote(candidates, [1, 1], { aggregate });
          const reference = referenceBytesVote(candidates, [1, 1], aggregate, "settled");
          if (reference.margin > 1e-12) {
            assert.equal(vote.text, reference.text, `${aggregate}, ${prompt}`);
            assert.ok(Math.abs(vote.probability - reference.probability) < 1e-9, `${aggregate}: ${vote.probability} vs ${reference.probability}`);
            compared++;
          }
          return vote.text;
        });
      }
    }
    assert.ok(compared >= 200, `compared ${compared} steps`);
  });

  test("with top-k lists and bounds, greedy output equals byte-level voting over full distributions (mix and product, healing on and off)", async () => {
    let escalated = 0;
    for (const aggregate of AGGREGATES) {
      for (const heal of [true, false]) {
        for (const prompt of PROMPTS) {
          const bounded = await pair.generate({ text: prompt }, { heal, bytes: { aggregate } });
          const full = await pair.generate({ text: prompt }, { heal, bytes: { aggregate }, fullDistributions: true });
          assert.equal(bounded.text, full.text, `${aggregate}, heal=${heal}: ${prompt}`);
          escalated += bounded.escalatedSteps;
        }
      }
    }
    console.log(`bytes: steps where the bound asked for more candidates: ${escalated} of ${2 * 2 * 3 * 40}`);
  });

  test("weights [1, 0] reproduce the member alone token for token; the same model twice votes as that model's own byte-level decoding", async () => {
    for (const prompt of PROMPTS) {
      for (const aggregate of AGGREGATES) {
        const alone = await pieces(pair, prompt, { only: "s260k", method: "gac" });
        assert.deepEqual(await pieces(pair, prompt, { weights: [1, 0], bytes: { aggregate } }), alone);
      }
    }
    // 40 steps, as the reference runs: maxTokens would count s260k's tokens, not pieces.
    const twice = await Ensemble.create({ members: [PAIR[0], { ...PAIR[0], name: "again", primary: false }], method: "bytes", maxTokens: Infinity });
    try {
      for (const prompt of PROMPTS) {
        for (const aggregate of AGGREGATES) {
          const own = await fullSteps([s260k], prompt, 40, (candidates) => bytesVote(candidates, [1], { aggregate }).text);
          assert.deepEqual(await pieces(twice, prompt, { bytes: { aggregate }, maxSteps: 40 }), own.filter((p) => p !== END_TEXT), `${aggregate}: ${prompt}`);
        }
      }
    } finally {
      await twice.dispose();
    }
  });

  test("trace, stop strings and sampling work with bytes", async () => {
    const traced = await pair.generate({ text: "Lily and Ben" }, { trace: true, maxTokens: 5, stop: ["."] });
    assert.ok(traced.steps > 0);
    const steps: unknown[] = [];
    for await (const step of pair.stream({ text: "Lily and Ben" }, { trace: true, maxTokens: 3 })) steps.push(step.trace);
    const first = steps[0] as { members: { winnerMass?: number }[]; winner: { probability: number } };
    assert.ok(first.members.every((m) => typeof m.winnerMass === "number"), "each member's mass on the winner is in the trace");
    const sampling = { temperature: 0.8, seed: 7 };
    const a = await pair.generate({ text: "Lily and Ben" }, { sampling, maxTokens: 20 });
    const b = await pair.generate({ text: "Lily and Ben" }, { sampling, maxTokens: 20 });
    assert.equal(a.text, b.text);
  });
});
