import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const SHARED = path.resolve(here, "../../../shared");
export const S260K = path.join(SHARED, "models/stories260K-f32.gguf");
export const TS656K = path.join(SHARED, "models/TinyStories-656K-f32.gguf");
export const TINYSTORIES_DEV = path.join(SHARED, "data/tinystories/dev.txt");

export const PAIR = [
  { name: "s260k", model: S260K, primary: true },
  { name: "ts656k", model: TS656K },
] as const;
