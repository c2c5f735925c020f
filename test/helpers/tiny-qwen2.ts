import path from "node:path";
import { makeRandomModel } from "../../bench/make-model.js";
import { SHARED } from "./models.js";

/** A small random-weight model (1 layer, width 32) with Qwen2's real 151,669-token vocabulary, written to `outPath`. */
export async function makeTinyQwen2Model(outPath: string): Promise<void> {
  await makeRandomModel({
    vocabPath: path.join(SHARED, "vocab", "ggml-vocab-qwen2.gguf"),
    outPath,
    embeddingLength: 32,
    layers: 1,
    heads: 2,
    feedForwardLength: 64,
    contextLength: 256,
    outputStd: 4 / Math.sqrt(32),
  });
}
