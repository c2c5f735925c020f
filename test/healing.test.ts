import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Ensemble } from "../src/engine/ensemble.js";
import { TINYSTORIES_DEV, TS656K } from "./helpers/models.js";

/** Next-word items from TinyStories validation stories: the context ends right after a word. */
function nextWordItems(count: number): { context: string; next: string }[] {
  const stories = readFileSync(TINYSTORIES_DEV, "utf8")
    .split("<|endoftext|>")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const items: { context: string; next: string }[] = [];
  for (const story of stories) {
    const words = [...story.matchAll(/ ([A-Za-z]+)\b/g)];
    const pick = words[Math.floor(words.length / 2)];
    if (!pick || pick.index! < 20) continue;
    items.push({ context: story.slice(0, pick.index!), next: pick[1]! });
    if (items.length === count) break;
  }
  return items;
}

function firstWord(generated: string, mustStartWithSpace: boolean): string {
  if (mustStartWithSpace && !generated.startsWith(" ")) return "";
  return /^[A-Za-z]+/.exec(generated.trimStart())?.[0] ?? "";
}

test("healing: ts656k alone continues a context ending mid-phrase as well as one ending on its own boundary", async () => {
  const ensemble = await Ensemble.create({ members: [{ name: "ts656k", model: TS656K }], maxTokens: 4 });
  try {
    const items = nextWordItems(120);
    let healedMidPhrase = 0;
    let plainMidPhrase = 0;
    let ownBoundary = 0;
    for (const { context, next } of items) {
      const healed = await ensemble.generate({ text: context }, { heal: true });
      const plain = await ensemble.generate({ text: context }, { heal: false });
      // "word " ends on the member's own boundary: its vocabulary's tokens carry the space after a word.
      const own = await ensemble.generate({ text: context + " " }, { heal: false });
      if (firstWord(healed.text, true) === next) healedMidPhrase++;
      if (firstWord(plain.text, true) === next) plainMidPhrase++;
      if (firstWord(" " + own.text, true) === next) ownBoundary++;
    }
    const pct = (n: number) => ((100 * n) / items.length).toFixed(1);
    console.log(
      `ts656k next-word accuracy on ${items.length} TinyStories items: mid-phrase healed ${pct(healedMidPhrase)} %, ` +
        `mid-phrase unhealed ${pct(plainMidPhrase)} %, own boundary ${pct(ownBoundary)} %`,
    );
    assert.ok(healedMidPhrase >= ownBoundary - items.length * 0.05, "healed mid-phrase accuracy should match the own-boundary accuracy");
    assert.ok(healedMidPhrase > plainMidPhrase + items.length * 0.05, "healing should beat the unhealed context clearly");
  } finally {
    await ensemble.dispose();
  }
});
