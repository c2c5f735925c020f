import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { bytesVote, type ByteAggregate, type CommitRule } from "../src/methods/bytes.js";
import { gac } from "../src/methods/gac.js";
import { argmax } from "../src/methods/combined.js";
import { END_TEXT, type MemberCandidates } from "../src/methods/candidates.js";
import { referenceBytesVote } from "./helpers/byte-reference.js";
import { seededRandom } from "../src/engine/sampling.js";

/** A member's complete distribution over the given texts (the rest of the mass nowhere). */
function complete(entries: Record<string, number>): MemberCandidates {
  const sorted = Object.entries(entries).sort((a, b) => b[1] - a[1]);
  const texts = sorted.map(([t]) => t);
  return {
    texts,
    probs: Float64Array.from(sorted, ([, p]) => p),
    lowerScale: 1,
    hiExtra: new Float64Array(texts.length),
    unlistedMax: 0,
    paths: texts.map((_, id) => ({ kind: "append" as const, id })),
    index: new Map(texts.map((t, i) => [t, i])),
    complete: true,
  };
}

/** The same member listing only its top `n` texts, with the bounds a plain sparse distribution has. */
function truncated(full: MemberCandidates, n: number): MemberCandidates {
  if (n >= full.texts.length) return full;
  const probs = full.probs.slice(0, n);
  const rest = 1 - probs.reduce((a, b) => a + b, 0);
  return {
    ...full,
    texts: full.texts.slice(0, n),
    probs,
    hiExtra: new Float64Array(n),
    unlistedMax: Math.max(0, Math.min(probs[n - 1]!, rest)),
    paths: full.paths.slice(0, n),
    index: new Map(full.texts.slice(0, n).map((t, i) => [t, i])),
    complete: false,
  };
}

/** A random vocabulary over a small alphabet (so members share prefixes), with random probabilities. */
function randomMember(random: () => number, size: number, withEnd: boolean): MemberCandidates {
  const alphabet = [" ", "a", "b", "c", "\xe2"];
  const entries: Record<string, number> = {};
  while (Object.keys(entries).length < size) {
    let t = "";
    const length = 1 + Math.floor(random() * 4);
    for (let i = 0; i < length; i++) t += alphabet[Math.floor(random() * alphabet.length)]!;
    entries[t] = Math.pow(random(), 8);
  }
  if (withEnd) entries[END_TEXT] = random() * 0.2;
  const total = Object.values(entries).reduce((a, b) => a + b, 0);
  for (const k of Object.keys(entries)) entries[k]! /= total;
  return complete(entries);
}

const AGGREGATES: ByteAggregate[] = ["mix", "product"];
const RULES: CommitRule[] = ["settled", "ending"];

describe("byte-level voting (methods/bytes)", () => {
  test("one word's votes add up across tokenizers: ' He' and ' He ' back the same bytes (GaC splits them)", () => {
    // One step of the shared pair (issue 13): s260k puts spaces before words, TinyStories-656K after them.
    const s260k = complete({ " T": 0.256, " He": 0.208, " She": 0.186, " It": 0.15, " A": 0.2 });
    const ts656k = complete({ " He ": 0.181, " It ": 0.115, " She ": 0.071, " T": 0.03, " A ": 0.103, " Lily ": 0.25, " Max ": 0.25 });
    const byGac = gac([s260k, ts656k], [1, 1]);
    assert.equal(byGac.texts[argmax(byGac.scores)], " T");
    const vote = bytesVote([s260k, ts656k], [1, 1]);
    assert.equal(vote.text, " He");
    assert.ok(Math.abs(vote.probability - (0.208 + 0.181) / 2) < 1e-12, `mass of ' He' is the mean of both members' mass: ${vote.probability}`);
    assert.deepEqual(vote.memberMass.map((m) => +m.toFixed(3)), [0.208, 0.181]);
    assert.ok(vote.proven);
  });

  test("the committed bytes and their probability equal a brute-force computation (random members, both aggregates and rules)", () => {
    const random = seededRandom(7);
    let checked = 0;
    for (let trial = 0; trial < 300; trial++) {
      const members = [randomMember(random, 5 + Math.floor(random() * 40), random() < 0.5), randomMember(random, 5 + Math.floor(random() * 40), random() < 0.5)];
      const weights = [0.2 + random(), 0.2 + random()];
      for (const aggregate of AGGREGATES) {
        for (const rule of RULES) {
          const reference = referenceBytesVote(members, weights, aggregate, rule);
          if (reference.margin < 1e-12) continue; // a tie: rounding decides
          const vote = bytesVote(members, weights, { aggregate, rule });
          assert.equal(vote.text, reference.text, `trial ${trial} ${aggregate}/${rule}`);
          assert.ok(Math.abs(vote.probability - reference.probability) < 1e-9, `trial ${trial} ${aggregate}/${rule}: ${vote.probability} vs ${reference.probability}`);
          assert.ok(vote.proven);
          checked++;
        }
      }
    }
    assert.ok(checked > 1000, `checked ${checked}`);
  });

  test("with only the top texts listed, a decision said to be proven is the full-vocabulary decision", () => {
    const random = seededRandom(11);
    const counts = { proven: 0, unproven: 0 };
    for (let trial = 0; trial < 300; trial++) {
      const full = [randomMember(random, 30 + Math.floor(random() * 60), random() < 0.5), randomMember(random, 30 + Math.floor(random() * 60), random() < 0.5)];
      const weights = [0.2 + random(), 0.2 + random()];
      const listed = full.map((m) => truncated(m, 8 + Math.floor(random() * 30)));
      for (const aggregate of AGGREGATES) {
        for (const rule of RULES) {
          const exact = bytesVote(full, weights, { aggregate, rule });
          const sparse = bytesVote(listed, weights, { aggregate, rule });
          if (!sparse.proven) {
            counts.unproven++;
            continue;
          }
          counts.proven++;
          assert.equal(sparse.text, exact.text, `trial ${trial} ${aggregate}/${rule}`);
        }
      }
    }
    // Both outcomes must occur, or the test proves nothing about the bounds.
    assert.ok(counts.proven > 100 && counts.unproven > 10, JSON.stringify(counts));
  });

  test("the same distribution twice, or a member with weight 0, changes nothing", () => {
    const random = seededRandom(3);
    for (let trial = 0; trial < 100; trial++) {
      const a = randomMember(random, 20, true);
      const b = randomMember(random, 20, true);
      for (const aggregate of AGGREGATES) {
        const alone = bytesVote([a], [1], { aggregate });
        assert.equal(bytesVote([a, a], [1, 1], { aggregate }).text, alone.text);
        assert.equal(bytesVote([a, b], [1, 0], { aggregate }).text, alone.text);
      }
    }
  });

  test("the alternatives are disjoint from the committed piece: their scores never sum above 1", () => {
    const random = seededRandom(5);
    for (let trial = 0; trial < 200; trial++) {
      const members = [randomMember(random, 40, true), randomMember(random, 40, false)];
      for (const aggregate of AGGREGATES) {
        const vote = bytesVote(members, [1, 1], { aggregate });
        const sum = vote.combined.scores.reduce((x, y) => x + y, 0);
        assert.ok(sum <= 1 + 1e-9, `${aggregate}: ${sum}`);
        assert.equal(vote.combined.texts[0], vote.text);
        assert.equal(vote.combined.scores[0], vote.probability);
      }
    }
  });

  test("a member with ~0 mass on a byte slows the product but does not veto it: the floor", () => {
    const a = complete({ " cat": 0.9, " dog": 0.1 });
    const b = complete({ " cat": 0.6, " dog": 0.4 });
    const c = complete({ " dog": 1 });
    assert.equal(bytesVote([a, b], [1, 1], { aggregate: "product" }).text, " cat");
    // c gives " c" probability 0: floored at 1e-4, a's and b's votes for "c" cannot outweigh it.
    assert.equal(bytesVote([a, b, c], [1, 1, 1], { aggregate: "product" }).text, " dog");
    // With a large floor, c's zero counts for little.
    assert.equal(bytesVote([a, b, c], [1, 1, 0.05], { aggregate: "product", floor: 0.5 }).text, " cat");
  });

  test("sampling draws bytes from the scores, seeded", () => {
    const a = complete({ " He": 0.5, " She": 0.3, [END_TEXT]: 0.2 });
    const b = complete({ " He ": 0.4, " She ": 0.6 });
    const draw = (seed: number) => {
      const random = seededRandom(seed);
      const choose = (scores: Float64Array) => {
        const total = scores.reduce((x, y) => x + y, 0);
        let r = random() * total;
        for (let i = 0; i < scores.length; i++) if ((r -= scores[i]!) < 0) return i;
        return scores.length - 1;
      };
      return bytesVote([a, b], [1, 1], {}, choose).text;
    };
    const seen = new Map<string, number>();
    for (let seed = 0; seed < 400; seed++) {
      const text = draw(seed);
      seen.set(text, (seen.get(text) ?? 0) + 1);
    }
    assert.equal(draw(1), draw(1));
    // " He" has mass 0.45, " She" 0.45, END 0.1; " She " is committed at " She" (a's piece ends there) or goes on to the space.
    const she = (seen.get(" She") ?? 0) + (seen.get(" She ") ?? 0);
    assert.ok(Math.abs(she / 400 - 0.45) < 0.08, JSON.stringify([...seen]));
    assert.ok(Math.abs((seen.get(END_TEXT) ?? 0) / 400 - 0.1) < 0.05, JSON.stringify([...seen]));
  });
});
