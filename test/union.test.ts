import { test } from "node:test";
import assert from "node:assert/strict";
import v8 from "node:v8";
import vm from "node:vm";
import { readGgufFileInfo } from "node-llama-cpp";
import { END, buildUnion } from "../src/tokens/union.js";
import { TokenKind, vocabularyFromGguf, type Vocabulary } from "../src/tokens/vocabulary.js";
import path from "node:path";
import { SHARED } from "./helpers/models.js";

type Kind = (typeof TokenKind)[keyof typeof TokenKind];

/** A hand-made vocabulary: [surface, kind] per token (control/unknown/unused surfaces are ''). */
function makeVocab(tokens: readonly (readonly [string, Kind])[], eog: readonly number[], eos?: number): Vocabulary {
  const surfaces = tokens.map(([s, k]) => (k === TokenKind.normal || k === TokenKind.user || k === TokenKind.byte ? s : ""));
  const kinds = Uint8Array.from(tokens.map(([, k]) => k));
  const bySurface = new Map<string, number>();
  for (const pass of [0, 1]) {
    tokens.forEach(([, k], id) => {
      const text = k === TokenKind.normal || k === TokenKind.user;
      if ((pass === 0 ? text : k === TokenKind.byte) && !bySurface.has(surfaces[id]!)) bySurface.set(surfaces[id]!, id);
    });
  }
  return {
    size: tokens.length,
    tokenizerModel: "test",
    surfaces,
    kinds,
    bos: undefined,
    eos,
    unk: undefined,
    eog: new Set(eog),
    addsLeadingSpace: false,
    bySurface,
  };
}

const N = TokenKind.normal;
const B = TokenKind.byte;
const C = TokenKind.control;
const U = TokenKind.user;

test("buildUnion: overlapping surfaces, duplicates, EOG -> END, control -> -1", () => {
  const a = makeVocab(
    [
      ["<s>", C], // 0
      ["</s>", C], // 1 eos
      ["a", B], // 2 byte token with the same bytes as the normal "a" below
      ["a", N], // 3
      ["b", N], // 4
      [" the", N], // 5
      ["\x80", B], // 6
      ["", TokenKind.unused], // 7
    ],
    [1],
    1,
  );
  const b = makeVocab(
    [
      ["b", N], // 0
      ["<|endoftext|>", C], // 1 eog
      ["<|im_end|>", C], // 2 eog (not eos)
      [" the", N], // 3
      [" the", U], // 4 duplicate surface, higher id
      ["c", N], // 5
      ["<pad>", C], // 6 control, not eog
      ["stop", N], // 7 a text token the model declares EOG
      ["?", TokenKind.unknown], // 8
    ],
    [2, 1, 7],
  );
  const u = buildUnion([a, b]);

  assert.equal(END, 0);
  assert.equal(u.surfaces[END], "");
  // union: END, then a's new surfaces in id order, then b's new ones
  assert.deepEqual(u.surfaces, ["", "a", "b", " the", "\x80", "c"]);
  assert.equal(u.size, 6);

  assert.deepEqual([...u.memberToUnion[0]!], [-1, END, 1, 1, 2, 3, 4, -1]);
  assert.deepEqual([...u.memberToUnion[1]!], [2, END, END, 3, 3, 5, -1, END, -1]);

  // canonical member token: normal before byte, then lowest id; END -> eos, else lowest EOG id
  assert.deepEqual([...u.unionToMember[0]!], [1, 3, 4, 5, 6, -1]);
  assert.deepEqual([...u.unionToMember[1]!], [1, -1, 0, 3, -1, 5]);

  for (let id = 1; id < u.size; id++) assert.equal(u.lookup(u.surfaces[id]!), id);
  assert.equal(u.lookup("zzz"), -1);
  assert.equal(u.lookup(""), -1);
  assert.equal(u.lookup("stop"), -1, "an EOG token's text is not a candidate of its own");
});

test("buildUnion: a member without EOG has no END token; one member; no members", () => {
  const a = makeVocab([["x", N], ["y", N]], []);
  const u = buildUnion([a]);
  assert.deepEqual(u.surfaces, ["", "x", "y"]);
  assert.deepEqual([...u.unionToMember[0]!], [-1, 0, 1]);
  const empty = buildUnion([]);
  assert.equal(empty.size, 1);
  assert.deepEqual(empty.memberToUnion, []);
});

test("union of Llama-3 (llama-bpe) and Qwen2 vocabularies from real GGUF metadata", async () => {
  const files = ["ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf"].map((f) => path.join(SHARED, "vocab", f));
  const infos = await Promise.all(files.map((f) => readGgufFileInfo(f, { readTensorInfo: false })));

  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;

  gc();
  const m0 = process.memoryUsage();
  const t0 = performance.now();
  const vocabs = infos.map((info) => vocabularyFromGguf(info.metadata));
  const t1 = performance.now();
  gc();
  const m1 = process.memoryUsage();
  const t2 = performance.now();
  const u = buildUnion(vocabs);
  const t3 = performance.now();
  gc();
  const m2 = process.memoryUsage();

  const mb = (x: number) => (x / 2 ** 20).toFixed(1);
  console.log(
    `vocabularies ${vocabs.map((v) => v.size).join(" + ")}: built in ${(t1 - t0).toFixed(0)} ms, ` +
      `heap +${mb(m1.heapUsed - m0.heapUsed)} MB, array buffers +${mb(m1.arrayBuffers - m0.arrayBuffers)} MB`,
  );
  console.log(
    `union ${u.size} entries: built in ${(t3 - t2).toFixed(0)} ms, heap +${mb(m2.heapUsed - m1.heapUsed)} MB, ` +
      `array buffers +${mb(m2.arrayBuffers - m1.arrayBuffers)} MB`,
  );
  assert.ok(t3 - t2 < 5000, "sanity bound");

  // sizes: END + every distinct text surface (EOG tokens of these two vocabularies are control tokens)
  const distinct = new Set<string>();
  vocabs.forEach((v) => v.surfaces.forEach((s, id) => {
    if (s !== "" && !v.eog.has(id)) distinct.add(s);
  }));
  assert.equal(u.size, 1 + distinct.size);
  const shared = [...distinct].filter((s) => vocabs.every((v) => v.bySurface.has(s))).length;
  console.log(`shared surfaces ${shared}; only Llama-3 ${vocabs[0]!.bySurface.size - shared}; only Qwen2 ${vocabs[1]!.bySurface.size - shared}`);

  // union side: unique surfaces, lookup round-trips, every entry reachable from some member
  assert.equal(u.surfaces[END], "");
  for (let id = 1; id < u.size; id++) {
    assert.equal(u.lookup(u.surfaces[id]!), id);
    assert.ok(u.unionToMember.some((t) => t[id] !== -1), `union id ${id} belongs to a member`);
  }

  vocabs.forEach((v, m) => {
    const toUnion = u.memberToUnion[m]!;
    const toMember = u.unionToMember[m]!;
    assert.equal(toUnion.length, v.size);
    assert.equal(toMember.length, u.size);
    for (let id = 0; id < v.size; id++) {
      const x = toUnion[id]!;
      if (v.eog.has(id)) assert.equal(x, END);
      else if (v.kinds[id] === TokenKind.control || v.kinds[id] === TokenKind.unknown || v.kinds[id] === TokenKind.unused) assert.equal(x, -1);
      else {
        assert.ok(x > END, `token ${id} of member ${m} is in the union`);
        assert.equal(u.surfaces[x], v.surfaces[id]);
        const back = toMember[x]!;
        assert.equal(v.surfaces[back], v.surfaces[id], "member -> union -> member keeps the surface");
        assert.equal(back, v.bySurface.get(v.surfaces[id]!), "the canonical token is the vocabulary's bySurface choice");
      }
    }
    for (let x = 1; x < u.size; x++) {
      const id = toMember[x]!;
      if (id === -1) assert.equal(v.bySurface.get(u.surfaces[x]!), undefined);
      else assert.equal(toUnion[id], x, "union -> member -> union is the identity");
    }
    assert.ok(v.eog.has(toMember[END]!), "END maps to an EOG token");
    assert.equal(toMember[END], v.eos);
  });

  // spot checks: ASCII words in both; the EOS tokens
  for (const word of [" the", "Hello", "\n\n", " ", "\xe4\xbd\xa0"]) {
    const x = u.lookup(word);
    assert.ok(x > END, JSON.stringify(word));
    assert.ok(u.unionToMember.every((t) => t[x]! >= 0), `${JSON.stringify(word)} is in both`);
  }
  assert.equal(u.memberToUnion[0]![128001], END); // <|end_of_text|>
  assert.equal(u.memberToUnion[0]![128009], END); // <|eot_id|>
  assert.equal(u.memberToUnion[0]![128000], -1); // <|begin_of_text|>
  assert.equal(u.memberToUnion[1]![151645], END); // <|im_end|>
  assert.equal(u.memberToUnion[1]![151644], -1); // <|im_start|>
});
