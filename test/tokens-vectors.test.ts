/**
 * Exact surfaces of real vocabularies, checked against llama.cpp itself (node-llama-cpp 3.22.1).
 *
 * 1. llama.cpp's tokenizer test vectors (/work/shared/vocab/*.gguf.inp / .out, the files
 *    tests/test-tokenizer-0.cpp reads): ids must equal the .out line, and the concatenated surfaces of
 *    those ids must spell the text's UTF-8 bytes exactly (SPM: " " + text, the documented dummy prefix).
 *    .inp files without a .gguf here are skipped: ggml-vocab-command-r, ggml-vocab-gemma-4,
 *    ggml-vocab-qwen35. .gguf files without vectors (baichuan, gpt-neox) only get the per-token checks.
 * 2. Every token of every vocabulary and of the shared models: our kind equals llama.cpp's token
 *    attributes, our EOG set (metadata rules, no model) equals `model.isEogToken`, `<0xNN>` byte tokens
 *    are that single byte, and our surface equals llama.cpp's own piece (`model.detokenize([id], true)`)
 *    wherever that answer is exact.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import {
  TokenKind,
  bytesToSurface,
  isValidUtf8,
  surfaceToUtf8,
  surfaceToText,
  textToSurface,
  vocabularyFromGguf,
  type Vocabulary,
} from "../src/tokens/vocabulary.js";
import { SHARED } from "./helpers/models.js";
import { readVectors } from "./helpers/vocab-vectors.js";

const VOCAB_DIR = path.join(SHARED, "vocab");
const MODELS_DIR = path.join(SHARED, "models");

const vocabFiles = fs.readdirSync(VOCAB_DIR).filter((f) => f.endsWith(".gguf")).sort();
const withVectors = vocabFiles.filter(
  (f) => fs.existsSync(path.join(VOCAB_DIR, f + ".inp")) && fs.existsSync(path.join(VOCAB_DIR, f + ".out")),
);
const modelFiles = fs.existsSync(MODELS_DIR) ? fs.readdirSync(MODELS_DIR).filter((f) => f.endsWith(".gguf")).sort() : [];

let llama: Llama;
before(async () => {
  llama = await getLlama({
    gpu: false,
    maxThreads: os.availableParallelism(),
    logLevel: LlamaLogLevel.error,
    // tokenizer-only GGUFs have no tensors: llama.cpp logs a failed tensor load, yet the vocabOnly model loads fine
    logger: (level, message) => {
      if (/missing tensor 'token_embd\.weight'|llama_model_load_from_file_impl: failed to load model/.test(message)) return;
      console.error(`[llama.cpp ${level}] ${message.trimEnd()}`);
    },
  });
});
after(async () => {
  await llama?.dispose();
});

async function withModel<T>(modelPath: string, fn: (model: LlamaModel) => Promise<T> | T): Promise<T> {
  const model = await llama.loadModel({ modelPath, vocabOnly: true });
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

// --- BERT/WPM: llama.cpp's llm_tokenizer_wpm_session::preprocess, in JS, for the "strongest true property"
const RE_WS = /\p{White_Space}/u;
const RE_CONTROL = /\p{C}/u; // Cc Cf Co Cs (and Cn, which llama.cpp leaves undefined; none occur in the vectors)
const RE_MARK = /\p{M}/u;
const RE_PUNCT = /\p{P}/u;
const RE_SYMBOL = /\p{S}/u;
function isChineseChar(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}
function wpmWords(text: string): string[] {
  const words: string[] = [""];
  for (const ch of text.normalize("NFD")) {
    const cp = ch.codePointAt(0)!;
    if (RE_WS.test(ch)) {
      if (words.at(-1)!.length) words.push("");
      continue;
    }
    if (cp === 0 || cp === 0xfffd || RE_CONTROL.test(ch)) continue;
    if (RE_MARK.test(ch)) continue; // strip_accents
    const lower = ch.toLowerCase();
    const s = [...lower].length === 1 ? lower : ch;
    if (RE_PUNCT.test(ch) || (cp < 0x7f && RE_SYMBOL.test(ch)) || isChineseChar(cp)) {
      if (words.at(-1)!.length) words.push("");
      words[words.length - 1] = s;
      words.push("");
    } else {
      words[words.length - 1] += s;
    }
  }
  if (!words.at(-1)!.length) words.pop();
  return words;
}

/** llama.cpp's detokenize "clean_spaces" passes (BPE/WPM vocabularies), for comparing single-token pieces. */
function cleanSpaces(s: string): string {
  const pass = (t: string, f: (t: string, i: number, out: string[]) => void) => {
    const out: string[] = t.length ? [t[0]!] : [];
    for (let i = 1; i < t.length; i++) f(t, i, out);
    return out.join("");
  };
  let t = pass(s, (t, i, out) => {
    if (t[i - 1] === " " && "?!.,".includes(t[i]!)) out.pop();
    out.push(t[i]!);
  });
  t = pass(t, (t, i, out) => {
    if (t[i] === "'" && i + 1 < t.length && t[i - 1] === " " && t[i + 1] === " ") out.pop();
    out.push(t[i]!);
  }); // (approximate for the second pass; only used as an explanation of a difference)
  t = pass(t, (t, i, out) => {
    if (t[i - 1] === " " && t[i] === "'" && i + 1 < t.length) {
      const x1 = t[i + 1]!;
      const x2 = t[i + 2];
      if (x1 === "s" || x1 === "m" || (x1 === "r" && x2 === "e") || (x1 === "v" && x2 === "e")) out.pop();
    }
    out.push(t[i]!);
  });
  return t;
}

/** kind llama.cpp's attributes imply (same precedence as vocabularyFromGguf) */
function kindFromAttributes(model: LlamaModel, id: number): number {
  const a = model.getTokenAttributes(id as Token);
  if (a.unknown) return TokenKind.unknown;
  if (a.unused) return TokenKind.unused;
  if (a.control) return TokenKind.control;
  if (a.userDefined) return TokenKind.user;
  if (a.normal) return TokenKind.normal;
  if (a.byte) return TokenKind.byte;
  return TokenKind.unknown;
}

interface TokenCheckStats {
  tokens: number;
  textTokens: number;
  exact: number;
  cleanSpaces: number;
  invalidUtf8: number;
  byteTokens: number;
}

/** Per-token checks against llama.cpp for one loaded vocabulary. */
function checkEveryToken(model: LlamaModel, vocab: Vocabulary, name: string): TokenCheckStats {
  const ggml = (model.fileInfo.metadata as { tokenizer: { ggml: Record<string, unknown> } }).tokenizer.ggml;
  const rawTokens = ggml.tokens as string[];
  // llama.cpp's detokenize drops one leading space of the first piece when the vocabulary's add_space_prefix is set
  const stripsLeadingSpace =
    typeof ggml.add_space_prefix === "boolean" ? ggml.add_space_prefix : vocab.tokenizerModel === "llama";
  const stats: TokenCheckStats = { tokens: vocab.size, textTokens: 0, exact: 0, cleanSpaces: 0, invalidUtf8: 0, byteTokens: 0 };
  const failures: string[] = [];
  const fail = (msg: string) => { if (failures.length < 20) failures.push(msg); };

  assert.equal(vocab.size, rawTokens.length);
  for (let id = 0; id < vocab.size; id++) {
    const kind = vocab.kinds[id]!;
    const surface = vocab.surfaces[id]!;
    const expectedKind = kindFromAttributes(model, id);
    if (kind !== expectedKind) fail(`${id} ${JSON.stringify(rawTokens[id])}: kind ${kind}, llama.cpp attributes say ${expectedKind}`);
    if (vocab.eog.has(id) !== model.isEogToken(id as Token)) fail(`${id} ${JSON.stringify(rawTokens[id])}: eog ${vocab.eog.has(id)} vs llama.cpp ${model.isEogToken(id as Token)}`);
    for (let i = 0; i < surface.length; i++) if (surface.charCodeAt(i) > 0xff) { fail(`${id}: surface char > 0xff`); break; }

    if (kind !== TokenKind.normal && kind !== TokenKind.user && kind !== TokenKind.byte) {
      if (surface !== "") fail(`${id}: non-text token has surface ${JSON.stringify(surface)}`);
      continue;
    }
    stats.textTokens++;
    if (surface === "") fail(`${id}: text token with empty surface`);
    const byteMatch = /^<0x([0-9A-Fa-f]{2})>$/.exec(rawTokens[id]!);
    if (kind === TokenKind.byte) {
      stats.byteTokens++;
      if (!byteMatch) fail(`${id}: BYTE token ${JSON.stringify(rawTokens[id])} is not <0xNN>`);
      else if (surface.length !== 1 || surface.charCodeAt(0) !== Number.parseInt(byteMatch[1]!, 16)) {
        fail(`${id}: ${rawTokens[id]} has surface ${JSON.stringify(surface)}`);
      }
    }

    const expected = stripsLeadingSpace && surface.startsWith(" ") ? surface.slice(1) : surface;
    const piece = model.detokenize([id as Token], true);
    if (!isValidUtf8(surface)) {
      // llama.cpp's piece is these same bytes, but it reaches JS through a UTF-8 decode with U+FFFD:
      // compare the lossy forms (the exact bytes are covered by the round-trip vectors and byte checks)
      stats.invalidUtf8++;
      if (piece !== surfaceToText(expected)) fail(`${id}: lossy ${JSON.stringify(surfaceToText(expected))} vs ${JSON.stringify(piece)}`);
      continue;
    }
    const got = textToSurface(piece);
    if (got === expected) stats.exact++;
    else if (cleanSpaces(expected) === got) stats.cleanSpaces++; // " ." -> "." etc.: detokenize's cleanup, not the piece
    else fail(`${id} ${JSON.stringify(rawTokens[id])}: surface ${JSON.stringify(surface)} vs llama.cpp ${JSON.stringify(got)}`);
  }
  assert.deepEqual(failures, [], `${name}: per-token mismatches`);
  return stats;
}

for (const file of withVectors) {
  test(`test vectors: ${file}`, async () => {
    const modelPath = path.join(VOCAB_DIR, file);
    const { texts, ids } = readVectors(modelPath);
    assert.equal(texts.length, ids.length, "one .out line per .inp text");
    await withModel(modelPath, (model) => {
      const vocab = vocabularyFromGguf(model.fileInfo.metadata);
      const isWpm = vocab.tokenizerModel === "bert";
      let exact = 0;
      let unkTexts = 0;
      for (let i = 0; i < texts.length; i++) {
        const bytes = texts[i]!;
        assert.ok(isValidUtf8(bytes), `text ${i} is valid UTF-8`);
        const text = surfaceToText(bytes);
        // (a) llama.cpp ids: add_special = false (no BOS; the .out lines have none), parse_special = false
        const got = [...model.tokenize(text, false)];
        assert.deepEqual(got, ids[i], `${file} text ${i} ${JSON.stringify(text)}: ids`);

        // (b) exact bytes
        const concat = got.map((id) => vocab.surfaces[id]).join("");
        if (!isWpm) {
          const expected = vocab.addsLeadingSpace && bytes !== "" ? " " + bytes : bytes;
          assert.equal(concat, expected, `${file} text ${i} ${JSON.stringify(text)}: surfaces spell the text`);
          exact++;
          continue;
        }
        // BERT/WPM cannot round-trip: the normalizer lowercases, strips accents (NFD + drop marks), drops
        // control/format characters (e.g. U+200D), splits off punctuation, collapses whitespace, and
        // replaces a whole word it cannot spell by [UNK]. Strongest true property: every normalized word
        // is either spelled exactly as " " + word by its tokens (phantom space) or is one [UNK] token.
        const words = wpmWords(text);
        let t = 0;
        let hadUnk = false;
        for (const word of words) {
          assert.ok(t < got.length, `${file} text ${i}: tokens for word ${JSON.stringify(word)}`);
          if (got[t] === vocab.unk) {
            hadUnk = true;
            t++;
            continue;
          }
          const target = " " + textToSurface(word);
          let spelled = "";
          while (t < got.length && spelled.length < target.length && got[t] !== vocab.unk) spelled += vocab.surfaces[got[t++]!];
          assert.equal(spelled, target, `${file} text ${i} ${JSON.stringify(text)}: word ${JSON.stringify(word)}`);
        }
        assert.equal(t, got.length, `${file} text ${i}: every token belongs to a word`);
        if (hadUnk) unkTexts++;
        else exact++;
      }
      const stats = checkEveryToken(model, vocab, file);
      console.log(`${file}: ${texts.length} vectors, ids equal; ${exact} spelled exactly${isWpm ? ` (normalized words), ${unkTexts} with [UNK] words` : ""}; per token ${JSON.stringify(stats)}`);
    });
  });
}

for (const file of [...vocabFiles.filter((f) => !withVectors.includes(f)).map((f) => path.join(VOCAB_DIR, f)), ...modelFiles.map((f) => path.join(MODELS_DIR, f))]) {
  test(`every token: ${path.basename(file)}`, async () => {
    await withModel(file, (model) => {
      const vocab = vocabularyFromGguf(model.fileInfo.metadata);
      const stats = checkEveryToken(model, vocab, file);
      // round trip over some real text, where the vocabulary can encode it
      const text = "Once upon a time, there was a little girl named Lily. She loved to play outside.\n\"Hi!\" she said.";
      // llama.cpp aborts the process on a character a vocabulary without byte tokens cannot encode: check first
      const encodable = [...text].every((ch) => vocab.bySurface.has(textToSurface(ch)));
      const got: number[] = encodable ? [...model.tokenize(text, false)] : [];
      const roundTrip = encodable && (vocab.unk === undefined || !got.includes(vocab.unk));
      if (roundTrip) {
        const expected = vocab.addsLeadingSpace ? " " + textToSurface(text) : textToSurface(text);
        assert.equal(got.map((id) => vocab.surfaces[id]).join(""), expected);
      }
      console.log(`${path.basename(file)}: per token ${JSON.stringify(stats)}; sample text round trip ${roundTrip ? "exact" : "skipped (not encodable)"}`);
    });
  });
}

test("isEog option replaces the metadata rules", async () => {
  await withModel(path.join(VOCAB_DIR, "ggml-vocab-qwen2.gguf"), (model) => {
    const fromModel = vocabularyFromGguf(model.fileInfo.metadata, { isEog: (id) => model.isEogToken(id as Token) });
    const fromRules = vocabularyFromGguf(model.fileInfo.metadata);
    assert.deepEqual([...fromModel.eog].sort((a, b) => a - b), [...fromRules.eog].sort((a, b) => a - b));
    const only = vocabularyFromGguf(model.fileInfo.metadata, { isEog: (id) => id === 7 });
    assert.deepEqual([...only.eog], [7]);
  });
});

test("byte-string helpers agree with Node's UTF-8 codec", () => {
  const strict = new TextDecoder("utf-8", { fatal: true });
  const valid = (bytes: Uint8Array) => {
    try { strict.decode(bytes); return true; } catch { return false; }
  };
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const samples: Uint8Array[] = [
    Buffer.from("h\u00e9llo \u{1f999} \u4f60\u597d", "utf8"),
    Uint8Array.of(0xc3), Uint8Array.of(0xe4, 0xbd), Uint8Array.of(0xf0, 0x9f, 0xa6), Uint8Array.of(0xc0, 0x80),
    Uint8Array.of(0xed, 0xa0, 0x80), Uint8Array.of(0xf4, 0x90, 0x80, 0x80), Uint8Array.of(0xe0, 0x80, 0x80), Uint8Array.of(0x80),
  ];
  for (let i = 0; i < 20000; i++) {
    const n = 1 + Math.floor(rand() * 5);
    const a = new Uint8Array(n);
    for (let k = 0; k < n; k++) a[k] = rand() < 0.5 ? 0x80 + Math.floor(rand() * 0x80) : Math.floor(rand() * 256);
    samples.push(a);
  }
  for (const bytes of samples) {
    const surface = bytesToSurface(bytes);
    assert.equal(surface.length, bytes.length);
    assert.deepEqual(surfaceToUtf8(surface), Buffer.from(bytes));
    assert.equal(isValidUtf8(surface), valid(bytes), `isValidUtf8 ${Buffer.from(bytes).toString("hex")}`);
    if (valid(bytes)) {
      assert.equal(surfaceToText(surface), strict.decode(bytes));
      assert.equal(textToSurface(surfaceToText(surface)), surface);
    }
  }
});
