/**
 * Embedding matrices of a GGUF model, read row by row and dequantized in TypeScript exactly as
 * ggml's reference `dequantize_row_*` (ggml-quants.c) does, in float32 arithmetic (every
 * intermediate product is rounded to float32 with Math.fround, as the C code's `float` variables are).
 *
 * Only the raw bytes of one row are held at a time; the caller decides what to keep of each row.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { readGgufFileInfo, type GgufFileInfo } from "node-llama-cpp";

const f = Math.fround;

/** The ggml types this module dequantizes: code → name, elements per block, bytes per block. */
export const SUPPORTED_TYPES = {
  0: { name: "F32", block: 1, bytes: 4 },
  1: { name: "F16", block: 1, bytes: 2 },
  2: { name: "Q4_0", block: 32, bytes: 18 },
  3: { name: "Q4_1", block: 32, bytes: 20 },
  6: { name: "Q5_0", block: 32, bytes: 22 },
  7: { name: "Q5_1", block: 32, bytes: 24 },
  8: { name: "Q8_0", block: 32, bytes: 34 },
  10: { name: "Q2_K", block: 256, bytes: 84 },
  11: { name: "Q3_K", block: 256, bytes: 110 },
  12: { name: "Q4_K", block: 256, bytes: 144 },
  13: { name: "Q5_K", block: 256, bytes: 176 },
  14: { name: "Q6_K", block: 256, bytes: 210 },
  30: { name: "BF16", block: 1, bytes: 2 },
} as const satisfies Record<number, { name: string; block: number; bytes: number }>;

type TypeCode = keyof typeof SUPPORTED_TYPES;

/** Names of ggml types this module does not read, for messages. */
const OTHER_TYPE_NAMES: Record<number, string> = {
  9: "Q8_1", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
  22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0",
};

export class TensorReadError extends Error {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = "TensorReadError";
  }
}

/** IEEE binary16 bits → number (exact). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

let halfTable: Float32Array | undefined;
/** All 65,536 binary16 values as float32 (exact), for converting whole F16 rows quickly. */
function halves(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

const bf16Scratch = new Float32Array(1);
const bf16Bits = new Uint32Array(bf16Scratch.buffer);
/** bfloat16 bits → number (exact: the upper half of a binary32). */
export function bf16ToFloat(h: number): number {
  bf16Bits[0] = h << 16;
  return bf16Scratch[0]!;
}

/** 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml's get_scale_min_k4). */
function scaleMinK4(j: number, s: Uint8Array, at: number): [number, number] {
  if (j < 4) return [s[at + j]! & 63, s[at + j + 4]! & 63];
  return [(s[at + j + 4]! & 0xf) | ((s[at + j - 4]! >> 6) << 4), (s[at + j + 4]! >> 4) | ((s[at + j]! >> 6) << 4)];
}

/**
 * Dequantizes `count` values of ggml type `type` from `src` (starting at byte `at`) into `out`
 * (starting at `outAt`). `count` must be a whole number of blocks.
 */
export function dequantize(type: number, src: Uint8Array, at: number, count: number, out: Float32Array, outAt = 0): void {
  const info = SUPPORTED_TYPES[type as TypeCode];
  if (!info) throw new Error(`unsupported tensor type ${typeName(type)}`);
  if (count % info.block !== 0) throw new Error(`${count} values are not a whole number of ${info.name} blocks of ${info.block}`);
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const half = (o: number) => halfToFloat(view.getUint16(o, true));
  const blocks = count / info.block;
  let y = outAt;
  switch (type as TypeCode) {
    case 0:
      for (let i = 0; i < count; i++) out[y++] = view.getFloat32(at + 4 * i, true);
      return;
    case 1: {
      const table = halves();
      for (let i = 0; i < count; i++) out[y++] = table[src[at + 2 * i]! | (src[at + 2 * i + 1]! << 8)]!;
      return;
    }
    case 30:
      for (let i = 0; i < count; i++) out[y++] = bf16ToFloat(view.getUint16(at + 2 * i, true));
      return;
    case 2: // Q4_0: d, qs[16]
      for (let b = 0, p = at; b < blocks; b++, p += 18, y += 32) {
        const d = half(p);
        for (let j = 0; j < 16; j++) {
          const q = src[p + 2 + j]!;
          out[y + j] = ((q & 0x0f) - 8) * d;
          out[y + j + 16] = ((q >> 4) - 8) * d;
        }
      }
      return;
    case 3: // Q4_1: d, m, qs[16]
      for (let b = 0, p = at; b < blocks; b++, p += 20, y += 32) {
        const d = half(p);
        const m = half(p + 2);
        for (let j = 0; j < 16; j++) {
          const q = src[p + 4 + j]!;
          out[y + j] = f((q & 0x0f) * d) + m;
          out[y + j + 16] = f((q >> 4) * d) + m;
        }
      }
      return;
    case 6: // Q5_0: d, qh[4], qs[16]
      for (let b = 0, p = at; b < blocks; b++, p += 22, y += 32) {
        const d = half(p);
        const qh = view.getUint32(p + 2, true);
        for (let j = 0; j < 16; j++) {
          const q = src[p + 6 + j]!;
          const h0 = ((qh >>> j) << 4) & 0x10;
          const h1 = (qh >>> (j + 12)) & 0x10;
          out[y + j] = (((q & 0x0f) | h0) - 16) * d;
          out[y + j + 16] = (((q >> 4) | h1) - 16) * d;
        }
      }
      return;
    case 7: // Q5_1: d, m, qh[4], qs[16]
      for (let b = 0, p = at; b < blocks; b++, p += 24, y += 32) {
        const d = half(p);
        const m = half(p + 2);
        const qh = view.getUint32(p + 4, true);
        for (let j = 0; j < 16; j++) {
          const q = src[p + 8 + j]!;
          const h0 = ((qh >>> j) << 4) & 0x10;
          const h1 = (qh >>> (j + 12)) & 0x10;
          out[y + j] = f(((q & 0x0f) | h0) * d) + m;
          out[y + j + 16] = f(((q >> 4) | h1) * d) + m;
        }
      }
      return;
    case 8: // Q8_0: d, qs[32] (int8)
      for (let b = 0, p = at; b < blocks; b++, p += 34, y += 32) {
        const d = half(p);
        for (let j = 0; j < 32; j++) out[y + j] = view.getInt8(p + 2 + j) * d;
      }
      return;
    case 10: // Q2_K: scales[16], qs[64], d, dmin
      for (let b = 0, p = at; b < blocks; b++, p += 84) {
        const d = half(p + 80);
        const min = half(p + 82);
        let q = p + 16;
        let is = 0;
        for (let n = 0; n < 256; n += 128) {
          for (let shift = 0; shift < 8; shift += 2) {
            for (const half16 of [0, 16]) {
              const sc = src[p + is++]!;
              const dl = f(d * (sc & 0xf));
              const ml = f(min * (sc >> 4));
              for (let l = 0; l < 16; l++) out[y++] = f(dl * ((src[q + l + half16]! >> shift) & 3)) - ml;
            }
          }
          q += 32;
        }
      }
      return;
    case 11: // Q3_K: hmask[32], qs[64], scales[12], d
      for (let b = 0, p = at; b < blocks; b++, p += 110) {
        const dAll = half(p + 108);
        const s = p + 96;
        const scale = (j: number) =>
          ((j < 8 ? src[s + j]! & 0xf : src[s + j - 8]! >> 4) | (((src[s + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3) << 4)) - 32;
        let q = p + 32;
        let is = 0;
        let m = 1;
        for (let n = 0; n < 256; n += 128) {
          for (let shift = 0; shift < 8; shift += 2) {
            for (const half16 of [0, 16]) {
              const dl = f(dAll * scale(is++));
              for (let l = 0; l < 16; l++) {
                const v = ((src[q + l + half16]! >> shift) & 3) - (src[p + l + half16]! & m ? 0 : 4);
                out[y++] = dl * v;
              }
            }
            m <<= 1;
          }
          q += 32;
        }
      }
      return;
    case 12: // Q4_K: d, dmin, scales[12], qs[128]
      for (let b = 0, p = at; b < blocks; b++, p += 144) {
        const d = half(p);
        const min = half(p + 2);
        let q = p + 16;
        for (let j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
          const [sc1, m1s] = scaleMinK4(is, src, p + 4);
          const [sc2, m2s] = scaleMinK4(is + 1, src, p + 4);
          const d1 = f(d * sc1), m1 = f(min * m1s), d2 = f(d * sc2), m2 = f(min * m2s);
          for (let l = 0; l < 32; l++) out[y++] = f(d1 * (src[q + l]! & 0xf)) - m1;
          for (let l = 0; l < 32; l++) out[y++] = f(d2 * (src[q + l]! >> 4)) - m2;
        }
      }
      return;
    case 13: // Q5_K: d, dmin, scales[12], qh[32], qs[128]
      for (let b = 0, p = at; b < blocks; b++, p += 176) {
        const d = half(p);
        const min = half(p + 2);
        const qh = p + 16;
        let ql = p + 48;
        let u1 = 1;
        let u2 = 2;
        for (let j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
          const [sc1, m1s] = scaleMinK4(is, src, p + 4);
          const [sc2, m2s] = scaleMinK4(is + 1, src, p + 4);
          const d1 = f(d * sc1), m1 = f(min * m1s), d2 = f(d * sc2), m2 = f(min * m2s);
          for (let l = 0; l < 32; l++) out[y++] = f(d1 * ((src[ql + l]! & 0xf) + (src[qh + l]! & u1 ? 16 : 0))) - m1;
          for (let l = 0; l < 32; l++) out[y++] = f(d2 * ((src[ql + l]! >> 4) + (src[qh + l]! & u2 ? 16 : 0))) - m2;
        }
      }
      return;
    case 14: // Q6_K: ql[128], qh[64], scales[16] (int8), d
      for (let b = 0, p = at; b < blocks; b++, p += 210) {
        const d = half(p + 208);
        let ql = p;
        let qh = p + 128;
        let sc = p + 192;
        for (let n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const h = src[qh + l]!;
            const q1 = ((src[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
            const q2 = ((src[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
            const q3 = ((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
            const q4 = ((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
            out[y + l] = f(d * view.getInt8(sc + is)) * q1;
            out[y + l + 32] = f(d * view.getInt8(sc + is + 2)) * q2;
            out[y + l + 64] = f(d * view.getInt8(sc + is + 4)) * q3;
            out[y + l + 96] = f(d * view.getInt8(sc + is + 6)) * q4;
          }
        }
      }
      return;
  }
}

export function typeName(code: number): string {
  return SUPPORTED_TYPES[code as TypeCode]?.name ?? OTHER_TYPE_NAMES[code] ?? `type ${code}`;
}

/** Bytes one row of `width` values of `type` takes. */
export function rowBytes(type: number, width: number): number {
  const info = SUPPORTED_TYPES[type as TypeCode];
  if (!info) throw new Error(`unsupported tensor type ${typeName(type)}`);
  return (width / info.block) * info.bytes;
}

/** Where a 2-D tensor lies in a GGUF file and how it is stored. */
export interface TensorLocation {
  readonly path: string;
  readonly name: string;
  readonly type: number;
  /** ne[0]: values per row (the embedding width). */
  readonly width: number;
  /** ne[1]: rows (the vocabulary size). */
  readonly rows: number;
  /** Absolute byte offset of the first row. */
  readonly fileOffset: number;
}

/** The input (`token_embd.weight`) and output (`output.weight`, or the input one when tied) embeddings. */
export interface EmbeddingTensors {
  readonly input: TensorLocation;
  readonly output: TensorLocation;
  readonly tied: boolean;
  readonly info: GgufFileInfo;
}

export async function locateEmbeddings(path: string): Promise<EmbeddingTensors> {
  let info: GgufFileInfo;
  try {
    info = await readGgufFileInfo(path, { logWarnings: false });
  } catch (error) {
    throw new TensorReadError(path, `cannot read the GGUF header (${(error as Error).message}); check that the file is a complete GGUF model`);
  }
  const tensors = info.fullTensorInfo ?? info.tensorInfo ?? [];
  const find = (name: string): TensorLocation | undefined => {
    const t = tensors.find((x) => x.name === name);
    if (!t) return undefined;
    if (t.filePart !== 1) throw new TensorReadError(path, `${name} lies in part ${t.filePart} of a split model; merge the parts with llama-gguf-split --merge first`);
    const [width, rows, ...rest] = t.dimensions.map(Number);
    if (width === undefined || rows === undefined || rest.some((d) => d !== 1)) {
      throw new TensorReadError(path, `${name} is not a 2-D matrix (dimensions ${t.dimensions.join("×")})`);
    }
    if (!(t.ggmlType in SUPPORTED_TYPES)) {
      throw new TensorReadError(
        path,
        `unsupported tensor type ${typeName(t.ggmlType)} for ${name}; supported: ${Object.values(SUPPORTED_TYPES).map((x) => x.name).join(", ")} — re-quantize the model to one of them (e.g. llama-quantize … Q8_0)`,
      );
    }
    return { path, name, type: t.ggmlType, width, rows, fileOffset: Number(t.fileOffset) };
  };
  const input = find("token_embd.weight");
  if (!input) {
    throw new TensorReadError(
      path,
      tensors.length === 0
        ? "the file holds no tensors (a vocabulary-only GGUF?); EVA and DeePEn need a model with its embedding weights"
        : "the model has no token_embd.weight tensor; EVA and DeePEn need the token embeddings",
    );
  }
  const output = find("output.weight");
  return { input, output: output ?? input, tied: output === undefined, info };
}

/** Rows per read: large enough for few system calls, small enough to never copy a whole matrix. */
const ROWS_PER_READ = 256;

/**
 * Calls `onRow(row, values)` for each row of the tensor in order; `values` is reused between calls.
 */
export function forEachRow(tensor: TensorLocation, onRow: (row: number, values: Float32Array) => void): void {
  const bytesPerRow = rowBytes(tensor.type, tensor.width);
  const buffer = Buffer.alloc(bytesPerRow * Math.min(ROWS_PER_READ, tensor.rows));
  const values = new Float32Array(tensor.width);
  const fd = openSync(tensor.path, "r");
  try {
    for (let row = 0; row < tensor.rows; ) {
      const n = Math.min(ROWS_PER_READ, tensor.rows - row);
      const want = n * bytesPerRow;
      let got = 0;
      while (got < want) {
        const r = readSync(fd, buffer, got, want - got, tensor.fileOffset + row * bytesPerRow + got);
        if (r === 0) throw new TensorReadError(tensor.path, `the file ends inside ${tensor.name} (truncated download?); fetch the model again`);
        got += r;
      }
      for (let k = 0; k < n; k++, row++) {
        dequantize(tensor.type, buffer, k * bytesPerRow, tensor.width, values);
        onRow(row, values);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** The whole matrix as float32, row-major (rows × width); the only full copy held. */
export function readMatrix(tensor: TensorLocation): Float32Array {
  const out = new Float32Array(tensor.rows * tensor.width);
  forEachRow(tensor, (row, values) => out.set(values, row * tensor.width));
  return out;
}
