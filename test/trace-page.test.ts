import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { Ensemble } from "../src/engine/ensemble.js";
import { PAIR } from "./helpers/models.js";
import { startServer, type RunningServer } from "./helpers/server.js";
import { tempDir } from "./helpers/temp-dir.js";

const CHROMIUM = "/usr/bin/chromium";
const skip = existsSync(CHROMIUM) ? false : `Debian's chromium is not installed at ${CHROMIUM} (apt-get install -y chromium; .ci/run installs it)`;
const PROMPT = "The dog ran to the park and";
const KEY = "sk-page";
const VIEWPORT = { width: 900, height: 640 };

interface TraceStep {
  index: number;
  text: string;
  ensembled: boolean;
  trace: { members: { name: string; top: { text: string; probability: number }[]; winnerMass: number }[]; winner: { text: string } };
}
interface Answer {
  choices: { text: string; finish_reason: string }[];
  ensemble?: { trace: TraceStep[]; members: { name: string; weight: number }[] };
}
interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** The page's colour measure, from the API's own trace: the least mass any voting member put on the winning bytes. */
const agreement = (s: TraceStep) => Math.min(...s.trace.members.map((m) => m.winnerMass));

/** Width and height from a PNG's IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  assert.equal(png.subarray(1, 4).toString("latin1"), "PNG", "a PNG file");
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

function inside(inner: Box, outer: Box, what: string): void {
  const slack = 0.5;
  assert.ok(
    inner.x >= outer.x - slack && inner.y >= outer.y - slack && inner.x + inner.width <= outer.x + outer.width + slack && inner.y + inner.height <= outer.y + outer.height + slack,
    `${what}: ${JSON.stringify(inner)} is not inside ${JSON.stringify(outer)}`,
  );
}

describe("trace page at GET / in headless Chromium", { skip }, () => {
  let ensemble: Ensemble;
  let served: RunningServer;
  let browser: Browser;
  const shots = tempDir("chorus-trace-page-");

  async function api(body: Record<string, unknown>): Promise<{ status: number; body: Answer & { error?: { message: string } } }> {
    const response = await fetch(`${served.url}/v1/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Answer & { error?: { message: string } } };
  }

  /** A page with the key typed in and the model's controls loaded; page errors are collected. */
  async function openPage(errors: string[]): Promise<Page> {
    const page = await browser.newPage({ viewport: VIEWPORT, acceptDownloads: true });
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(served.url);
    await page.fill("#apiKey", KEY);
    await page.waitForFunction(() => /missing API key/.test(document.getElementById("status")!.textContent!));
    await page.dispatchEvent("#apiKey", "change");
    await page.waitForSelector("#model option[value=pair]", { state: "attached" });
    await page.waitForSelector("#weights input.weight", { state: "attached" });
    await page.fill("#prompt", PROMPT);
    return page;
  }

  /** Clicks a button and returns the JSON bodies of the requests the page posts until the status line says `until`. */
  async function run(page: Page, button: string, until: RegExp): Promise<Record<string, unknown>[]> {
    const sent: Record<string, unknown>[] = [];
    const listen = (request: { method(): string; postDataJSON(): unknown }) => {
      if (request.method() === "POST") sent.push(request.postDataJSON() as Record<string, unknown>);
    };
    page.on("request", listen);
    await page.click(button);
    await page.waitForFunction((source) => new RegExp(source).test(document.getElementById("status")!.textContent!), until.source, { timeout: 60_000 });
    page.off("request", listen);
    return sent;
  }

  async function tokens(page: Page) {
    return page.$$eval("#output span.token", (spans) =>
      spans.map((s) => {
        const e = s as HTMLElement;
        return { text: e.textContent!, agreement: Number(e.dataset.agreement), ensembled: e.dataset.ensembled, background: e.style.background, width: e.getBoundingClientRect().width, classes: e.className };
      }),
    );
  }

  /** The background the page should give a voted piece of this agreement, as Chromium writes it. */
  function expectedBackground(page: Page, share: number): Promise<string> {
    return page.evaluate((hue) => {
      const probe = document.createElement("div");
      probe.style.background = `hsl(${hue},65%,82%)`;
      return probe.style.background;
    }, Math.round(120 * share));
  }

  /** Hovers a piece and checks the tooltip lies inside the viewport and its table inside the tooltip. */
  async function hoverAndCheckTip(page: Page, selector: string, at?: { x: number; y: number }): Promise<Box> {
    await page.hover(selector, at ? { position: at } : undefined);
    assert.equal(await page.isVisible("#tip"), true);
    const viewport = page.viewportSize()!;
    const tip = (await page.locator("#tip").boundingBox())!;
    inside(tip, { x: 0, y: 0, ...viewport }, "the tooltip in the viewport");
    inside((await page.locator("#tip table").boundingBox())!, tip, "the table in the tooltip");
    const fit = await page.$eval("#tip", (t) => ({ tip: [t.scrollWidth, t.clientWidth], table: [t.querySelector("table")!.scrollWidth, t.clientWidth] }));
    assert.ok(fit.tip[0]! <= fit.tip[1]!, `the tooltip does not scroll sideways: ${fit.tip.join(" > ")}`);
    assert.ok(fit.table[0]! <= fit.table[1]!, `the table fits the tooltip's width: ${fit.table.join(" > ")}`);
    return tip;
  }

  before(async () => {
    ensemble = await Ensemble.create({ members: PAIR, threads: 1, gate: { threshold: 0.6 } });
    served = await startServer({ models: [{ id: "pair", ensemble }], apiKey: KEY });
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

  test("type a prompt, watch the answer stream coloured by cross-vocabulary agreement, hover for every member's candidates", async () => {
    const expected = (await api({ model: "pair", prompt: PROMPT, max_tokens: 30, ensemble: { trace: true } })).body;
    const trace = expected.ensemble!.trace;
    const shown = trace.filter((s) => s.text !== "");
    // The engine's winnerMass is at least what the listed top candidates that agree with the winner's bytes hold.
    for (const s of trace.filter((t) => t.ensembled)) {
      const w = s.trace.winner.text;
      for (const m of s.trace.members) {
        const listed = m.top.filter((c) => (w === "<end>" || c.text === "<end>" ? c.text === w : c.text.startsWith(w) || w.startsWith(c.text))).reduce((a, c) => a + c.probability, 0);
        assert.ok(m.winnerMass >= Math.min(1, listed) - 1e-9 && m.winnerMass <= 1, `step ${s.index}, ${m.name}: winnerMass ${m.winnerMass} vs its listed agreeing mass ${listed}`);
      }
    }

    const errors: string[] = [];
    const page = await openPage(errors);
    // The controls start at the model's defaults: its method, one weight per member, the configured gate.
    assert.equal(await page.inputValue("#method"), "gac");
    assert.deepEqual(await page.$$eval("#weights input.weight", (inputs) => inputs.map((i) => [(i as HTMLInputElement).dataset.member, (i as HTMLInputElement).value])), [["s260k", "1"], ["ts656k", "1"]]);
    assert.equal(await page.isChecked("#gate"), true);
    assert.equal(await page.inputValue("#threshold"), "0.6");
    await page.fill("#maxTokens", "30");
    const [sent] = await run(page, "#go", /^done/);
    assert.deepEqual(sent, { model: "pair", stream: true, max_tokens: 30, prompt: PROMPT, ensemble: { method: "gac", trace: true, weights: [1, 1], gate: { threshold: 0.6 } } });
    // max_tokens counts the primary member's tokens; a step may win fewer or more of them
    assert.match((await page.textContent("#status"))!, new RegExp(`^done: ${trace.length} steps, finish reason length`));

    assert.equal(await page.textContent("#output"), expected.choices[0]!.text);
    const got = await tokens(page);
    assert.deepEqual(got.map((t) => t.text), shown.map((s) => s.text));
    assert.deepEqual(got.map((t) => t.agreement), shown.map((s) => Number(agreement(s).toFixed(2))));
    assert.ok(got.some((t) => t.ensembled === "false") && got.some((t) => t.ensembled === "true"), "gating: some steps by the primary alone, some voted");
    for (const [k, t] of got.entries()) assert.equal(t.background, t.ensembled === "true" ? await expectedBackground(page, agreement(shown[k]!)) : "rgb(228, 228, 228)", `piece ${k} ${JSON.stringify(t.text)}`);
    // Whitespace pieces are wide enough to hover.
    const spaces = got.filter((t) => /^[ \t]+$/.test(t.text));
    assert.ok(spaces.length > 0, "this prompt's answer has pieces that are only a space");
    for (const t of spaces) {
      assert.match(t.classes, /\bspace\b/);
      assert.ok(t.width >= 10, `a space piece is ${t.width} px wide`);
    }

    const voted = shown.findIndex((s) => s.ensembled);
    await hoverAndCheckTip(page, `#output span.token >> nth=${voted}`);
    const rows = await page.$$eval("#tip tr.member td:first-child", (cells) => cells.map((c) => c.textContent));
    assert.deepEqual(rows.map((r) => r!.replace(" (healed)", "")), ["s260k", "ts656k"]);
    const masses = await page.$$eval("#tip tr.member td.mass", (cells) => cells.map((c) => c.textContent));
    assert.deepEqual(masses, shown[voted]!.trace.members.map((m) => m.winnerMass.toFixed(3)));
    const winner = await page.textContent("#tip div .win");
    assert.ok(winner!.startsWith(JSON.stringify(shown[voted]!.trace.winner.text)), winner!);

    // The screenshot is the viewport's size, and the tooltip's lies within it.
    const shot = await page.screenshot({ path: path.join(shots, "page.png") });
    assert.deepEqual(pngSize(shot), VIEWPORT);
    assert.deepEqual(pngSize(readFileSync(path.join(shots, "page.png"))), VIEWPORT);
    const tipShot = pngSize(await page.locator("#tip").screenshot({ path: path.join(shots, "tip.png") }));
    assert.ok(tipShot.width <= VIEWPORT.width && tipShot.height <= VIEWPORT.height, JSON.stringify(tipShot));

    // The rightmost voted piece: the tooltip flips to the pointer's left rather than leave the window.
    const rightmost = await page.$$eval("#output span.token", (spans) => {
      const boxes = spans.map((s, i) => ({ i, voted: (s as HTMLElement).dataset.ensembled === "true", right: s.getBoundingClientRect().right }));
      return boxes.filter((b) => b.voted).sort((a, b) => b.right - a.right)[0]!.i;
    });
    await hoverAndCheckTip(page, `#output span.token >> nth=${rightmost}`);
    // A narrow window: the tooltip wraps its candidates to fit.
    await page.setViewportSize({ width: 420, height: 480 });
    await hoverAndCheckTip(page, `#output span.token >> nth=${voted}`);
    assert.deepEqual(pngSize(await page.screenshot({ path: path.join(shots, "narrow.png") })), { width: 420, height: 480 });
    await page.mouse.move(0, 0);
    assert.equal(await page.isVisible("#tip"), false);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test("the controls go into the request as the API takes them: method, weights, gate off, temperature, seed, chat", async () => {
    const errors: string[] = [];
    const page = await openPage(errors);
    await page.selectOption("#method", "bytes");
    await page.fill("#weights input[data-member=ts656k]", "0.5");
    await page.uncheck("#gate");
    await page.fill("#maxTokens", "12");
    await page.fill("#temperature", "0.8");
    await page.fill("#seed", "7");
    const [sent] = await run(page, "#go", /^done/);
    const body = { model: "pair", stream: true, max_tokens: 12, temperature: 0.8, seed: 7, prompt: PROMPT, ensemble: { method: "bytes", trace: true, weights: [1, 0.5], gate: null } };
    assert.deepEqual(sent, body);
    assert.equal(await page.textContent("#ensembleNote"), "bytes · weights 1, 0.5 · no gate · temperature 0.8 · seed 7");
    const expected = (await api({ ...body, stream: false })).body;
    assert.deepEqual(expected.ensemble!.members.map((m) => m.weight), [1, 0.5]);
    const trace = expected.ensemble!.trace;
    assert.ok(trace.every((s) => s.ensembled), "no gate: every step voted");
    assert.equal(await page.textContent("#output"), expected.choices[0]!.text);
    assert.match((await page.textContent("#status"))!, new RegExp(`^done: ${trace.length} steps`));
    const shown = trace.filter((s) => s.text !== "");
    assert.deepEqual((await tokens(page)).map((t) => t.agreement), shown.map((s) => Number(agreement(s).toFixed(2))));

    // Chat: the same controls, sent to /v1/chat/completions with the prompt as a user message.
    await page.check("#chat");
    const chatRequest = page.waitForRequest((r) => r.method() === "POST");
    await run(page, "#go", /^done/);
    const request = await chatRequest;
    assert.equal(new URL(request.url()).pathname, "/v1/chat/completions");
    assert.deepEqual((request.postDataJSON() as { messages: unknown }).messages, [{ role: "user", content: PROMPT }]);
    assert.ok((await tokens(page)).length > 0);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test("invalid values show the server's 400 message in the status line, and the page goes on working", async () => {
    const errors: string[] = [];
    const page = await openPage(errors);
    await page.fill("#maxTokens", "8");
    for (const [control, value, field] of [
      ["#weights input[data-member=s260k]", "-1", "ensemble.weights[0]"],
      ["#threshold", "1.5", "ensemble.gate.threshold"],
      ["#temperature", "5", "temperature"],
    ] as const) {
      await page.fill(control, value);
      const [sent] = await run(page, "#go", /^error/);
      const refused = await api({ ...sent!, stream: false });
      assert.equal(refused.status, 400);
      assert.ok(refused.body.error!.message.startsWith(field), refused.body.error!.message);
      assert.equal(await page.textContent("#status"), `error: ${refused.body.error!.message}`);
      assert.equal(await page.getAttribute("#status", "class"), "error");
      assert.equal(await page.isEnabled("#go"), true);
      await page.fill(control, control === "#threshold" ? "0.6" : control === "#temperature" ? "" : "1");
    }
    await run(page, "#go", /^done/);
    assert.ok((await tokens(page)).length > 0);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test("compare with each member alone: one column per member, each the API's answer with ensemble.only; the run downloads as JSON", async () => {
    const errors: string[] = [];
    const page = await openPage(errors);
    await page.fill("#maxTokens", "16");
    await run(page, "#go", /^done/);
    const sent = await run(page, "#compare", /^compared/);
    assert.equal(await page.textContent("#status"), "compared: 2 members alone");
    assert.deepEqual(sent.map((b) => b.ensemble), [{ method: "gac", only: "s260k" }, { method: "gac", only: "ts656k" }]);
    const columns = await page.$$eval(".column.alone", (cs) => cs.map((c) => ({ member: (c as HTMLElement).dataset.member, text: c.querySelector(".text")!.textContent, note: c.querySelector(".note")!.textContent })));
    assert.deepEqual(columns.map((c) => c.member), ["s260k", "ts656k"]);
    for (const [k, column] of columns.entries()) {
      const alone = (await api({ ...sent[k]!, stream: false, ensemble: { ...(sent[k]!.ensemble as object), trace: true } })).body;
      assert.deepEqual(alone.ensemble!.members.map((m) => m.weight), column.member === "s260k" ? [1, 0] : [0, 1]);
      assert.equal(column.text, alone.choices[0]!.text, `${column.member} alone`);
      assert.equal(column.note, `done, finish reason ${alone.choices[0]!.finish_reason}`);
    }
    const ensembleText = await page.textContent("#output");
    assert.notEqual(ensembleText, "");
    // The columns sit side by side, the ensemble's first.
    const boxes = await page.$$eval("#columns > .column", (cs) => cs.map((c) => c.getBoundingClientRect().toJSON() as { x: number; y: number; width: number }));
    assert.equal(boxes.length, 3);
    assert.ok(boxes[0]!.x < boxes[1]!.x && boxes[1]!.x < boxes[2]!.x && boxes.every((b) => b.y === boxes[0]!.y), JSON.stringify(boxes));

    const downloading = page.waitForEvent("download");
    await page.click("#download");
    const download = await downloading;
    assert.equal(download.suggestedFilename(), "chorus-trace.json");
    const file = path.join(shots, "trace.json");
    await download.saveAs(file);
    const saved = JSON.parse(readFileSync(file, "utf8")) as {
      endpoint: string;
      request: { ensemble: { method: string } };
      steps: TraceStep[];
      result: { text: string; finish_reason: string; ensemble: { steps: number } };
      alone: Record<string, { text: string; request: { ensemble: { only: string } } }>;
    };
    assert.equal(saved.endpoint, "/v1/completions");
    assert.equal(saved.request.ensemble.method, "gac");
    assert.equal(saved.result.text, ensembleText);
    assert.equal(saved.result.finish_reason, "length");
    assert.equal(saved.steps.length, saved.result.ensemble.steps);
    assert.equal(saved.steps.map((s) => s.text).join(""), ensembleText);
    assert.ok(saved.steps.every((s) => s.trace.members.every((m) => typeof m.winnerMass === "number")));
    assert.deepEqual(Object.keys(saved.alone), ["s260k", "ts656k"]);
    for (const column of columns) {
      assert.equal(saved.alone[column.member!]!.text, column.text);
      assert.equal(saved.alone[column.member!]!.request.ensemble.only, column.member);
    }
    assert.deepEqual(pngSize(await page.screenshot({ path: path.join(shots, "compare.png") })), VIEWPORT);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
