import fs from "node:fs";

/** Texts exactly as test-tokenizer-0.cpp reads them: split on "\n__ggml_vocab_test__\n", no trailing empty text. */
export function readVectors(file: string): { texts: string[]; ids: number[][] } {
  const raw = fs.readFileSync(file + ".inp").toString("latin1");
  const sep = "\n__ggml_vocab_test__\n";
  const texts: string[] = [];
  let pos = 0;
  while (pos < raw.length) {
    const next = raw.indexOf(sep, pos);
    if (next === -1) {
      texts.push(raw.slice(pos));
      break;
    }
    texts.push(raw.slice(pos, next));
    pos = next + sep.length;
  }
  const outText = fs.readFileSync(file + ".out", "utf8");
  const lines = outText.split("\n");
  if (lines.at(-1) === "") lines.pop(); // std::getline yields no line after the final newline
  const ids = lines.map((line) => {
    const s = line.trim();
    return s === "" ? [] : s.split(" ").map((x) => Number.parseInt(x, 10));
  });
  return { texts, ids }; // texts are byte strings; every .inp here is valid UTF-8 (asserted below)
}
