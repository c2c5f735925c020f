import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";
import { Ensemble } from "../src/engine/ensemble.js";
import { PAIR } from "./helpers/models.js";
import { startServer, type RunningServer } from "./helpers/server.js";

const CHROMIUM = "/usr/bin/chromium";
const skip = existsSync(CHROMIUM) ? false : `Debian's chromium is not installed at ${CHROMIUM} (apt-get install -y chromium; .ci/run installs it)`;
const PROMPT = "The dog ran to the park and";

interface TraceStep {
  text: string;
  ensembled: boolean;
  trace: { members: { name: string; top: { text: string }[] }[]; winner: { text: string } };
}

describe("trace page at GET / in headless Chromium", { skip }, () => {
  let ensemble: Ensemble;
  let served: RunningServer;
  let browser: Browser;

  before(async () => {
    ensemble = await Ensemble.create({ members: PAIR, threads: 1, gate: { threshold: 0.6 } });
    served = await startServer({ models: [{ id: "pair", ensemble }], apiKey: "sk-page" });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
  });
  after(async () => {
    await browser?.close();
    await served?.close();
    await ensemble?.dispose();
  });

  test("type a prompt, watch the answer stream coloured by agreement, hover for every member's candidates", async () => {
    const response = await fetch(`${served.url}/v1/completions`, {
      method: "POST",
      headers: { authorization: "Bearer sk-page", "content-type": "application/json" },
      body: JSON.stringify({ model: "pair", prompt: PROMPT, max_tokens: 30, ensemble: { trace: true } }),
    });
    const expected = (await response.json()) as { choices: { text: string }[]; ensemble: { trace: TraceStep[] } };
    const agreement = (s: TraceStep) => s.trace.members.filter((m) => m.top[0]?.text === s.trace.winner.text).length / s.trace.members.length;
    const shown = expected.ensemble.trace.filter((s) => s.text !== "");

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(served.url);
    await page.fill("#apiKey", "sk-page");
    await page.waitForFunction(() => /missing API key/.test(document.getElementById("status")!.textContent!));
    await page.dispatchEvent("#apiKey", "change");
    await page.waitForSelector("#model option[value=pair]", { state: "attached" });
    await page.fill("#prompt", PROMPT);
    await page.fill("#maxTokens", "30");
    await page.click("#go");
    await page.waitForFunction(() => document.getElementById("status")!.textContent!.startsWith("done"), undefined, { timeout: 60_000 });
    // max_tokens counts the primary member's tokens; a step may win fewer or more of them
    assert.match((await page.textContent("#status"))!, new RegExp(`^done: ${expected.ensemble.trace.length} steps, finish reason length`));

    assert.equal(await page.textContent("#output"), expected.choices[0]!.text);
    const tokens = await page.$$eval("#output span.token", (spans) =>
      spans.map((s) => ({ text: s.textContent, agreement: Number((s as HTMLElement).dataset.agreement), ensembled: (s as HTMLElement).dataset.ensembled, background: (s as HTMLElement).style.background })),
    );
    assert.deepEqual(tokens.map((t) => t.text), shown.map((s) => s.text));
    assert.deepEqual(tokens.map((t) => t.agreement), shown.map((s) => Number(agreement(s).toFixed(2))));
    assert.ok(tokens.some((t) => t.ensembled === "false") && tokens.some((t) => t.ensembled === "true"), "gating: some steps by the primary alone, some voted");
    for (const t of tokens) assert.match(t.background, t.ensembled === "true" ? /^rgb/ : /rgb\(228, 228, 228\)/);

    const voted = shown.findIndex((s) => s.ensembled);
    await page.hover(`#output span.token >> nth=${voted}`);
    assert.equal(await page.isVisible("#tip"), true);
    const rows = await page.$$eval("#tip tr.member td:first-child", (cells) => cells.map((c) => c.textContent));
    assert.deepEqual(rows.map((r) => r!.replace(" (healed)", "")), ["s260k", "ts656k"]);
    const winner = await page.textContent("#tip div .win");
    assert.ok(winner!.startsWith(JSON.stringify(shown[voted]!.trace.winner.text)), winner!);
    await page.mouse.move(0, 0);
    assert.equal(await page.isVisible("#tip"), false);
    assert.deepEqual(errors, []);
  });
});
