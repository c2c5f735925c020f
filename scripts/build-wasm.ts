/**
 * Compiles the alignment kernel's WebAssembly text (src/align/wasm/dots.wat) to the committed
 * binary next to it, with wabt: `npm run build:wasm`. test/align-kernel.test.ts recompiles it and
 * checks the committed bytes are the same, so the two cannot drift apart.
 */
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import wabtInit from "wabt";

export const KERNEL_WAT = fileURLToPath(new URL("../src/align/wasm/dots.wat", import.meta.url));
export const KERNEL_WASM = fileURLToPath(new URL("../src/align/wasm/dots.wasm", import.meta.url));

/** The post-MVP features the kernel uses: 128-bit SIMD, and a shared memory (threads). */
const FEATURES = { simd: true, threads: true };

export async function compileWat(file: string): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const module = wabt.parseWat(file, await readFile(file, "utf8"), FEATURES);
  try {
    // wabt's typings leave out validate's features argument; without it, a shared memory is rejected.
    (module as unknown as { validate(features: typeof FEATURES): void }).validate(FEATURES);
    return module.toBinary({}).buffer;
  } finally {
    module.destroy();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const bytes = await compileWat(KERNEL_WAT);
  await writeFile(KERNEL_WASM, bytes);
  console.log(`${KERNEL_WASM}: ${bytes.length} bytes`);
}
