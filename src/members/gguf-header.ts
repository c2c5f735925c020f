/**
 * The first 24 bytes of a GGUF file (magic, version, tensor count, metadata count): enough to tell
 * a model from another file, and a vocabulary-only GGUF (no tensors) from a model, before
 * llama.cpp is asked to load it (it answers a vocabulary-only file with raw log lines).
 */
import { closeSync, openSync, readSync } from "node:fs";

export const GGUF_MAGIC = "GGUF";

export interface GgufHeader {
  /** The first four bytes as latin1 ("GGUF" for a GGUF file; fewer for a shorter file). */
  readonly magic: string;
  readonly version?: number;
  readonly tensorCount?: bigint;
}

/** Reads the header; throws what the file system throws (ENOENT, EISDIR, EACCES…). */
export function readGgufHeader(file: string): GgufHeader {
  const fd = openSync(file, "r");
  try {
    const buffer = Buffer.alloc(24);
    const read = readSync(fd, buffer, 0, 24, 0);
    const magic = buffer.subarray(0, Math.min(4, read)).toString("latin1");
    if (magic !== GGUF_MAGIC || read < 16) return { magic };
    const version = buffer.readUInt32LE(4);
    // GGUF v1 counted tensors in 32 bits; v2 and later in 64.
    const tensorCount = version === 1 ? BigInt(buffer.readUInt32LE(8)) : buffer.readBigUInt64LE(8);
    return { magic, version, tensorCount };
  } finally {
    closeSync(fd);
  }
}

/** The problem with using this file as a model, or undefined when its header looks like one. */
export function ggufModelProblem(file: string, header: GgufHeader): string | undefined {
  if (header.magic !== GGUF_MAGIC) {
    const start = header.magic.length === 0 ? "it is empty" : `it starts with ${JSON.stringify(header.magic)}`;
    return `${file} is not a GGUF file (${start}, not "GGUF") — point \`model\` at a .gguf file (convert other formats with llama.cpp's convert_hf_to_gguf.py)`;
  }
  if (header.tensorCount === 0n) {
    return `${file} is a vocabulary-only GGUF (it holds a tokenizer but no weights) — use the full model's GGUF as \`model\`; a vocabulary-only file serves only as a remote member's \`tokenizer\``;
  }
  return undefined;
}
