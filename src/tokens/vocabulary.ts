/**
 * The exact byte surface of every vocabulary entry of a GGUF tokenizer.
 *
 * llama.cpp's `detokenize` is lossy for our purpose (U+FFFD for partial UTF-8, SPM's leading space
 * dropped, GPT-2 "clean spaces"), so the bytes are derived here from the GGUF token list the way
 * llama.cpp's `token_to_piece(special = true)` derives them (src/llama-vocab.cpp), including the
 * text-based attribute overrides llama.cpp applies at load time (control-looking tokens, EOG list).
 *
 * Surfaces are latin1 "binary strings": one char per byte, char codes < 256. Use
 * {@link surfaceToUtf8}/{@link bytesToSurface}/{@link textToSurface} to convert.
 */
import type { GgufMetadata } from "node-llama-cpp";

/** Kind code per token (stored in a Uint8Array). */
export const TokenKind = { normal: 0, byte: 1, control: 2, user: 3, unknown: 4, unused: 5 } as const;
export type TokenKind = (typeof TokenKind)[keyof typeof TokenKind];

export interface Vocabulary {
  readonly size: number;
  /** GGUF tokenizer.ggml.model: 'llama' | 'gpt2' | 'bert' | ... */
  readonly tokenizerModel: string;
  /** exact bytes of each token as a latin1 "binary string" (one char per byte, char codes < 256); '' for control/unknown/unused tokens */
  readonly surfaces: readonly string[];
  /** TokenKind code per token */
  readonly kinds: Uint8Array;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly unk: number | undefined;
  /** end-of-generation ids */
  readonly eog: ReadonlySet<number>;
  /**
   * The tokenizer prepends a space to the text, so the surfaces of a tokenized text spell " " + text:
   * SPM/UGM (`tokenizer.ggml.add_space_prefix`, default true for 'llama'), and WPM ('bert'), whose
   * word-initial pieces are stored with a phantom `▁` (the first word of a text gets it too).
   */
  readonly addsLeadingSpace: boolean;
  /**
   * exact surface -> canonical token id with that surface, over normal/byte/user tokens: the lowest id
   * among normal/user tokens, else the lowest byte token (an SPM `<0x61>` and the normal piece "a" share
   * the surface "a"; the tokenizer only ever emits the normal piece, so that one is canonical).
   */
  readonly bySurface: ReadonlyMap<string, number>;
}

export interface VocabularyOptions {
  /** end-of-generation predicate, e.g. node-llama-cpp's `model.isEogToken`; default: llama.cpp's rules from the metadata */
  isEog?: (id: number) => boolean;
}

// ---------------------------------------------------------------------------------------------
// byte-string helpers

/** latin1 binary string (one char per byte) -> bytes */
export function surfaceToUtf8(surface: string): Buffer {
  return Buffer.from(surface, "latin1");
}

/** bytes -> latin1 binary string */
export function bytesToSurface(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/** JS text -> its UTF-8 bytes as a latin1 binary string */
export function textToSurface(text: string): string {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) >= 0x80) return Buffer.from(text, "utf8").toString("latin1");
  }
  return text; // ASCII: already one char per byte
}

/** latin1 binary string -> JS text (lossy: invalid UTF-8 becomes U+FFFD) */
export function surfaceToText(surface: string): string {
  for (let i = 0; i < surface.length; i++) {
    if (surface.charCodeAt(i) >= 0x80) return Buffer.from(surface, "latin1").toString("utf8");
  }
  return surface;
}

/** Length in bytes of the UTF-8 sequence starting at `i`, or 0 when the bytes there are not valid UTF-8. */
export function utf8SequenceLength(bytes: string, i: number): number {
  const b0 = bytes.charCodeAt(i);
  let n: number;
  if (b0 < 0x80) return 1;
  else if (b0 >= 0xc2 && b0 < 0xe0) n = 2;
  else if (b0 >= 0xe0 && b0 < 0xf0) n = 3;
  else if (b0 >= 0xf0 && b0 < 0xf5) n = 4;
  else return 0;
  if (i + n > bytes.length) return 0;
  for (let k = 1; k < n; k++) {
    const b = bytes.charCodeAt(i + k);
    if (b < 0x80 || b > 0xbf) return 0;
  }
  const b1 = bytes.charCodeAt(i + 1);
  if (b0 === 0xe0 && b1 < 0xa0) return 0; // overlong
  if (b0 === 0xed && b1 > 0x9f) return 0; // surrogates
  if (b0 === 0xf0 && b1 < 0x90) return 0; // overlong
  if (b0 === 0xf4 && b1 > 0x8f) return 0; // above U+10FFFF
  return n;
}

/** Whether the bytes of a binary string are well-formed UTF-8 on their own. */
export function isValidUtf8(surface: string): boolean {
  for (let i = 0; i < surface.length; ) {
    const n = utf8SequenceLength(surface, i);
    if (n === 0) return false;
    i += n;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte-level BPE: invert bytes_to_unicode

/** code point -> byte for GPT-2's bytes_to_unicode table (code points 0..323); -1 where unmapped */
const GPT2_UNICODE_TO_BYTE: Int16Array = (() => {
  const table = new Int16Array(324).fill(-1);
  const direct = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (direct(b)) table[b] = b;
    else table[256 + n++] = b;
  }
  return table;
})();

let scratch = Buffer.alloc(1024);

/** GPT-2 byte-level text -> bytes; undefined when a char is outside the table (llama.cpp prints "[UNK_BYTE_…]") */
function decodeByteLevel(text: string): string | undefined {
  const n = text.length;
  if (n > scratch.length) scratch = Buffer.alloc(Math.max(n, 2 * scratch.length));
  for (let i = 0; i < n; i++) {
    const cp = text.charCodeAt(i);
    const b = cp < GPT2_UNICODE_TO_BYTE.length ? GPT2_UNICODE_TO_BYTE[cp]! : -1;
    if (b < 0) return undefined;
    scratch[i] = b;
  }
  return scratch.toString("latin1", 0, n);
}

const SPM_SPACE = "\u2581";

/** `▁` -> space, then UTF-8 bytes */
function unescapeWhitespace(text: string): string {
  return textToSurface(text.includes(SPM_SPACE) ? text.replaceAll(SPM_SPACE, " ") : text);
}

/** `<0xNN>` -> the byte, like llama.cpp's token_to_byte (strtol of chars 3..4) */
function parseByteToken(text: string): string | undefined {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
  return m ? String.fromCharCode(parseInt(m[1]!, 16)) : undefined;
}

/** llama.cpp's llama_unescape_rwkv_token over the UTF-8 bytes of the token text */
function unescapeRwkv(text: string): string {
  const bytes = textToSurface(text);
  let out = "";
  let escaping = false;
  let hexRemaining = 0;
  let hexAcc = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes.charCodeAt(i);
    if (hexRemaining !== 0) {
      const value = c >= 0x61 ? c - 0x61 + 10 : c - 0x30;
      hexAcc = ((hexAcc << 4) + value) & 0xff;
      if (--hexRemaining === 0) { out += String.fromCharCode(hexAcc); hexAcc = 0; }
      continue;
    }
    if (escaping) {
      if (c === 0x74) out += "\t";
      else if (c === 0x6e) out += "\n";
      else if (c === 0x72) out += "\r";
      else if (c === 0x78) hexRemaining = 2;
      else out += bytes[i];
      escaping = false;
      continue;
    }
    if (c === 0x5c) { escaping = true; continue; }
    out += bytes[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// llama.cpp's load-time rules (src/llama-vocab.cpp, llama_vocab::impl::load)

/** GGUF tokenizer.ggml.token_type values */
const GgufTokenType = { undefined: 0, normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** llama.cpp token attribute bits */
const Attr = { undefined: 0, unknown: 1, unused: 2, normal: 4, control: 8, userDefined: 16, byte: 32 } as const;

/** texts llama.cpp marks end-of-generation (and forces to CONTROL) */
const EOG_TEXTS = new Set([
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
  "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
  "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
]);
/** texts llama.cpp auto-detects as EOT (forced CONTROL) when tokenizer.ggml.eot_token_id is absent */
const EOT_TEXTS = new Set([
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
  "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
]);
const EOM_TEXTS = new Set(["<|eom_id|>"]);
const FIM_PRE_TEXTS = new Set(["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"]);
const FIM_SUF_TEXTS = new Set(["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"]);
const FIM_MID_TEXTS = new Set(["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"]);
const FIM_PAD_TEXTS = new Set(["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]);
const FIM_REP_TEXTS = new Set(["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]);
const FIM_SEP_TEXTS = new Set(["<|file_sep|>"]);
/** gpt-oss: always rendered as text */
const FORCED_USER_TEXTS = new Set(["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]);
const SPECIAL_TEXTS = new Set([
  ...EOG_TEXTS, ...EOT_TEXTS, ...EOM_TEXTS, ...FIM_PRE_TEXTS, ...FIM_SUF_TEXTS, ...FIM_MID_TEXTS, ...FIM_PAD_TEXTS,
  ...FIM_REP_TEXTS, ...FIM_SEP_TEXTS, ...FORCED_USER_TEXTS,
]);

type Family = "spm" | "bpe" | "wpm" | "ugm" | "rwkv" | "plamo2";

interface ModelDefaults { family: Family; bos?: number; eos?: number; unk?: number }

function modelDefaults(model: string): ModelDefaults {
  switch (model) {
    case "llama": return { family: "spm", bos: 1, eos: 2, unk: 0 };
    case "bert": return { family: "wpm", bos: 101, unk: 100 };
    case "gpt2":
    case "whitespace": return { family: "bpe", bos: 11, eos: 11 };
    case "gemma4": return { family: "bpe" };
    case "t5": return { family: "ugm", eos: 1, unk: 2 };
    case "rwkv": return { family: "rwkv" };
    case "plamo2": return { family: "plamo2", bos: 1, eos: 2, unk: 0 };
    default:
      throw new Error(`vocabularyFromGguf: unsupported tokenizer model '${model}' (no exact byte mapping is known for it)`);
  }
}

/** BPE pre-tokenizers whose pieces are stored SentencePiece-style, with `▁` for spaces */
const BPE_ESCAPED_WHITESPACE_PRE = new Set(["gemma4", "granite-embed-multi-311m", "sarvam-moe"]);

type Ggml = Record<string, unknown>;

function readId(ggml: Ggml, key: string, size: number): number | undefined {
  const v = ggml[key];
  if (typeof v !== "number" && typeof v !== "bigint") return undefined;
  const id = Number(v);
  return Number.isInteger(id) && id >= 0 && id < size ? id : undefined;
}

function attrFromType(type: number | undefined): number {
  switch (type) {
    case undefined:
    case GgufTokenType.normal: return Attr.normal;
    case GgufTokenType.unknown: return Attr.unknown;
    case GgufTokenType.control: return Attr.control;
    case GgufTokenType.userDefined: return Attr.userDefined;
    case GgufTokenType.unused: return Attr.unused;
    case GgufTokenType.byte: return Attr.byte;
    default: return Attr.undefined;
  }
}

function kindFromAttr(attr: number): TokenKind {
  if (attr & Attr.unknown) return TokenKind.unknown;
  if (attr & Attr.unused) return TokenKind.unused;
  if (attr & Attr.control) return TokenKind.control;
  if (attr & Attr.userDefined) return TokenKind.user;
  if (attr & Attr.normal) return TokenKind.normal;
  if (attr & Attr.byte) return TokenKind.byte;
  return TokenKind.unknown; // undefined attribute: llama.cpp renders nothing for it
}

/**
 * Builds the exact-bytes vocabulary of a GGUF file from its metadata
 * (node-llama-cpp's `readGgufFileInfo(path).metadata` or `model.fileInfo.metadata`).
 */
export function vocabularyFromGguf(metadata: GgufMetadata, options: VocabularyOptions = {}): Vocabulary {
  const ggml = ((metadata as { tokenizer?: { ggml?: Ggml } }).tokenizer?.ggml ?? {}) as Ggml;
  const model = typeof ggml.model === "string" ? ggml.model : "";
  const pre = typeof ggml.pre === "string" ? ggml.pre : "";
  const tokens = ggml.tokens as readonly string[] | undefined;
  if (!Array.isArray(tokens)) throw new Error("vocabularyFromGguf: metadata has no tokenizer.ggml.tokens");
  const tokenTypes = ggml.token_type as ArrayLike<number> | undefined;
  const size = tokens.length;
  const defaults = modelDefaults(model);
  const family = defaults.family;

  // --- special ids: model defaults (disabled when out of range), overridden by in-range GGUF keys
  const inRange = (id: number | undefined) => (id !== undefined && id >= 0 && id < size ? id : undefined);
  let bos = readId(ggml, "bos_token_id", size) ?? inRange(defaults.bos);
  const eos = readId(ggml, "eos_token_id", size) ?? inRange(defaults.eos);
  const unk = readId(ggml, "unknown_token_id", size) ?? inRange(defaults.unk);
  if (pre === "glm4" || pre === "chatglm-bpe") bos = undefined;

  // --- attributes, with llama.cpp's text-based overrides
  const attrs = new Uint16Array(size);
  for (let id = 0; id < size; id++) attrs[id] = attrFromType(tokenTypes ? tokenTypes[id] : undefined);

  // llama.cpp's token_to_id restricted to the texts its rules look for (the last id wins for duplicate texts)
  const byText = new Map<string, number>();
  for (let id = 0; id < size; id++) if (SPECIAL_TEXTS.has(tokens[id]!)) byText.set(tokens[id]!, id);

  const forceControl = (id: number) => { attrs[id]! |= Attr.control; };
  // like llama.cpp: an in-range GGUF id wins; otherwise the token is found by its text and forced to CONTROL
  const autoDetect = (keys: readonly string[], texts: ReadonlySet<string>): number[] => {
    for (const key of keys) {
      const id = readId(ggml, key, size);
      if (id !== undefined) return [id];
    }
    const found: number[] = [];
    for (const text of texts) {
      const id = byText.get(text);
      if (id !== undefined) { found.push(id); forceControl(id); }
    }
    return found;
  };
  const eot = autoDetect(["eot_token_id"], EOT_TEXTS);
  const eom = autoDetect(["eom_token_id"], EOM_TEXTS);
  autoDetect(["prefix_token_id", "fim_pre_token_id"], FIM_PRE_TEXTS);
  autoDetect(["suffix_token_id", "fim_suf_token_id"], FIM_SUF_TEXTS);
  autoDetect(["middle_token_id", "fim_mid_token_id"], FIM_MID_TEXTS);
  const fimPad = autoDetect(["fim_pad_token_id"], FIM_PAD_TEXTS);
  const fimRep = autoDetect(["fim_rep_token_id"], FIM_REP_TEXTS);
  const fimSep = autoDetect(["fim_sep_token_id"], FIM_SEP_TEXTS);

  // control tokens with "unused" in their text are unused
  for (let id = 0; id < size; id++) {
    if (attrs[id]! & Attr.control && tokens[id]!.includes("unused")) attrs[id]! |= Attr.unused;
  }

  const eogRules = new Set<number>([...fimPad, ...fimRep, ...fimSep]);
  for (const [text, id] of byText) {
    if (EOG_TEXTS.has(text)) { eogRules.add(id); forceControl(id); }
  }
  for (const [text, id] of byText) if (FORCED_USER_TEXTS.has(text)) attrs[id] = Attr.userDefined;
  if (eos !== undefined) eogRules.add(eos);
  for (const id of eot) eogRules.add(id);
  for (const id of eom) eogRules.add(id);
  {
    // o200k_harmony / solar-open: "<|end|>" is not EOG when "<|return|>"+"<|call|>" or "<|calls|>"+"<|flush|>" are
    const texts = new Map<string, number>();
    for (const id of eogRules) texts.set(tokens[id]!, id);
    const end = texts.get("<|end|>");
    const hasCall = texts.has("<|call|>") || texts.has("<|calls|>");
    if (end !== undefined && ((texts.has("<|return|>") && hasCall) || (hasCall && texts.has("<|flush|>")))) {
      eogRules.delete(end);
      attrs[end] = Attr.userDefined;
    }
    // gemma4 / paddleocr: "</s>" is not EOG when "<|tool_response>" is
    const s = texts.get("</s>");
    if (s !== undefined && texts.has("<|tool_response>")) {
      eogRules.delete(s);
      attrs[s] = Attr.normal;
    }
  }

  let eog: Set<number>;
  if (options.isEog) {
    eog = new Set();
    for (let id = 0; id < size; id++) if (options.isEog(id)) eog.add(id);
  } else {
    eog = eogRules;
  }

  // --- exact bytes
  const escapedBpe = model === "gemma4" || BPE_ESCAPED_WHITESPACE_PRE.has(pre);
  const kinds = new Uint8Array(size);
  const surfaces: string[] = new Array<string>(size);
  for (let id = 0; id < size; id++) {
    const text = tokens[id]!;
    let kind = kindFromAttr(attrs[id]!);
    let surface = "";
    if (text === "") {
      kind = TokenKind.unused; // llama.cpp renames it "[EMPTY_<id>]"; it has no text of its own
    } else if (kind === TokenKind.user) {
      surface = family === "rwkv" ? unescapeRwkv(text) : textToSurface(text); // stored and matched as plain text
    } else if (kind === TokenKind.byte) {
      const b = family === "rwkv" ? undefined : parseByteToken(text);
      if (b === undefined) kind = TokenKind.unknown;
      else surface = b;
    } else if (kind === TokenKind.normal) {
      let s: string | undefined;
      switch (family) {
        case "spm":
        case "ugm":
        case "wpm": s = unescapeWhitespace(text); break;
        case "bpe": s = escapedBpe ? unescapeWhitespace(text) : decodeByteLevel(text); break;
        case "rwkv": s = unescapeRwkv(text); break;
        case "plamo2": s = textToSurface(text); break;
      }
      if (s === undefined || s === "") kind = TokenKind.unknown;
      else surface = s;
    }
    kinds[id] = kind;
    surfaces[id] = surface;
  }

  // --- canonical id per surface: normal/user first (lowest id), byte tokens only as a fallback
  const bySurface = new Map<string, number>();
  for (let id = 0; id < size; id++) {
    const k = kinds[id];
    if ((k === TokenKind.normal || k === TokenKind.user) && !bySurface.has(surfaces[id]!)) bySurface.set(surfaces[id]!, id);
  }
  for (let id = 0; id < size; id++) {
    if (kinds[id] === TokenKind.byte && !bySurface.has(surfaces[id]!)) bySurface.set(surfaces[id]!, id);
  }

  const addSpacePrefix = typeof ggml.add_space_prefix === "boolean" ? ggml.add_space_prefix : undefined;
  const addsLeadingSpace =
    family === "wpm" ? true
    : family === "spm" ? (addSpacePrefix ?? true)
    : family === "ugm" ? (addSpacePrefix ?? false)
    : false;

  return {
    size,
    tokenizerModel: model,
    surfaces,
    kinds,
    bos,
    eos,
    unk,
    eog,
    addsLeadingSpace,
    bySurface,
  };
}
