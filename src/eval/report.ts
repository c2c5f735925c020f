/** Summaries of eval results: accuracy with Wilson intervals, the table, Markdown and an SVG chart. */
import path from "node:path";
import type { ResultRecord } from "./results.js";
import { writeFileAtomic } from "./results.js";

export interface SystemSummary {
  readonly name: string;
  readonly n: number;
  readonly correct: number;
  readonly accuracy: number;
  readonly ci95: readonly [number, number];
  /** Generation steps (chosen pieces of text, whose length differs by system) per second, prompt evaluation included. */
  readonly tokensPerSecond: number;
  /** Mean time per item, prompt evaluation included: the cost that compares across systems. */
  readonly msPerItem: number;
  /** Share of steps on which every member voted; null for a member alone. */
  readonly ensembledShare: number | null;
  /** Items that could not run (scored as wrong). */
  readonly errors: number;
}

/** The ensemble against its best member alone, item by item. */
export interface Comparison {
  readonly system: string;
  readonly baseline: string;
  /** Accuracy difference (system − baseline), in [-1, 1]. */
  readonly difference: number;
  /** 95 % interval of the paired difference (normal approximation over items both ran). */
  readonly ci95: readonly [number, number];
  /** Items only the system got right, and only the baseline. */
  readonly wins: number;
  readonly losses: number;
}

/** What the ensemble ran with, so that two runs' reports can be told apart. */
export interface RunSettings {
  readonly method: string;
  /** Member name → weight, in member order. */
  readonly weights: Readonly<Record<string, number>>;
  /** The gating threshold, or null for no gating. */
  readonly gate: number | null;
  readonly heal: boolean;
}

export interface Summary {
  readonly task: string;
  readonly n: number;
  readonly settings?: RunSettings;
  readonly systems: readonly SystemSummary[];
  readonly comparison?: Comparison;
}

/** Wilson score interval: stays inside [0, 1] and is honest for small n and extreme accuracies. */
export function wilson(correct: number, n: number, z = 1.959963984540054): [number, number] {
  if (n === 0) return [0, 1];
  const p = correct / n;
  const z2 = z * z;
  const center = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, center - half), Math.min(1, center + half)];
}

/** Paired accuracy difference of two systems over the same items, with a normal-approximation 95 % interval. */
export function pairedDifference(a: readonly boolean[], b: readonly boolean[]): { difference: number; ci95: [number, number]; wins: number; losses: number } {
  const n = a.length;
  const d = a.map((x, i) => Number(x) - Number(b[i]));
  const mean = n ? d.reduce((s, v) => s + v, 0) / n : 0;
  const variance = n > 1 ? d.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1) : 0;
  const half = 1.959963984540054 * Math.sqrt(variance / Math.max(1, n));
  return { difference: mean, ci95: [mean - half, mean + half], wins: d.filter((v) => v > 0).length, losses: d.filter((v) => v < 0).length };
}

export function summarize(
  task: string,
  itemIds: readonly string[],
  systems: readonly { name: string; isEnsemble: boolean }[],
  lookup: (id: string, system: string) => ResultRecord | undefined,
  settings?: RunSettings,
): Summary {
  const systemSummaries = systems.map(({ name, isEnsemble }) => {
      const records = itemIds.map((id) => lookup(id, name)).filter((r): r is ResultRecord => r !== undefined);
      const correct = records.filter((r) => r.correct).length;
      const tokens = records.reduce((s, r) => s + r.tokens, 0);
      const ms = records.reduce((s, r) => s + r.ms, 0);
      const ensembled = records.reduce((s, r) => s + r.ensembledSteps, 0);
      return {
        name,
        n: records.length,
        correct,
        accuracy: records.length ? correct / records.length : 0,
        ci95: wilson(correct, records.length),
        tokensPerSecond: ms > 0 ? (1000 * tokens) / ms : 0,
        msPerItem: records.length ? ms / records.length : 0,
        ensembledShare: isEnsemble ? (tokens ? ensembled / tokens : 0) : null,
        errors: records.filter((r) => r.error !== undefined).length,
      };
    });
  return { task, n: itemIds.length, settings, systems: systemSummaries, comparison: compareWithBestMember(itemIds, systems, systemSummaries, lookup) };
}

function compareWithBestMember(
  itemIds: readonly string[],
  systems: readonly { name: string; isEnsemble: boolean }[],
  summaries: readonly SystemSummary[],
  lookup: (id: string, system: string) => ResultRecord | undefined,
): Comparison | undefined {
  const ensemble = systems.find((s) => s.isEnsemble);
  const members = summaries.filter((s) => systems.some((x) => x.name === s.name && !x.isEnsemble));
  if (!ensemble || members.length === 0) return undefined;
  const best = members.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
  const both = itemIds.filter((id) => lookup(id, ensemble.name) && lookup(id, best.name));
  const paired = pairedDifference(
    both.map((id) => lookup(id, ensemble.name)!.correct),
    both.map((id) => lookup(id, best.name)!.correct),
  );
  return { system: ensemble.name, baseline: best.name, ...paired };
}

const points = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(100 * x).toFixed(1)}`;

/** "ensemble − s260k (best member alone): +3.4 points (95 % CI +1.2 to +5.6; 61 items won, 27 lost)". */
export function comparisonLine(c: Comparison): string {
  return `${c.system} − ${c.baseline} (best member alone): ${points(c.difference)} points (paired 95 % CI ${points(c.ci95[0])} to ${points(c.ci95[1])}; ${c.wins} items only the ${c.system} got right, ${c.losses} only ${c.baseline})`;
}

const METHOD_LABELS: Record<string, string> = { gac: "GaC", unite: "UniTE", eva: "EVA", deepen: "DeePEn" };

/** "GaC, weights s260k 1 · ts656k 0.5, gate 0.9, healing on, n=200". */
export function settingsLine(summary: Summary): string {
  const parts: string[] = [];
  const s = summary.settings;
  if (s) {
    parts.push(METHOD_LABELS[s.method] ?? s.method);
    parts.push(`weights ${Object.entries(s.weights).map(([name, w]) => `${name} ${w}`).join(" · ")}`);
    parts.push(s.gate === null ? "no gating" : `gate ${s.gate}`);
    parts.push(`healing ${s.heal ? "on" : "off"}`);
  }
  parts.push(`n=${summary.n}`);
  return parts.join(", ");
}

/**
 * A warning when the items are too few to tell the ensemble from its best member: the paired
 * 95 % interval of the difference spans 0 (or there is one item, and no interval at all).
 */
export function smallSampleWarning(summary: Summary): string | undefined {
  const c = summary.comparison;
  // Agreeing on every item is no difference, however few the items.
  if (!c || (c.wins === 0 && c.losses === 0)) return undefined;
  const spansZero = c.ci95[0] <= 0 && c.ci95[1] >= 0;
  if (!spansZero && summary.n > 1) return undefined;
  return `n=${summary.n} is too small to tell these apart: the paired 95 % interval of ${c.system} − ${c.baseline} (${points(c.ci95[0])} to ${points(c.ci95[1])} points) includes 0; run more items (--limit)`;
}

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

function rows(summary: Summary): string[][] {
  return summary.systems.map((s) => [
    s.name,
    pct(s.accuracy),
    `${pct(s.ci95[0])} – ${pct(s.ci95[1])}`,
    `${s.correct}/${s.n}${s.errors ? ` (${s.errors} could not run)` : ""}`,
    s.tokensPerSecond.toFixed(1),
    s.msPerItem.toFixed(1),
    s.ensembledShare === null ? "—" : pct(s.ensembledShare),
  ]);
}

const HEADER = ["system", "accuracy", "95 % CI", "correct", "tok/s", "ms/item", "ensembled steps"];

export function textTable(summary: Summary): string {
  const all = [HEADER, ...rows(summary)];
  const widths = HEADER.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  const table = [`${summary.task}: ${summary.n} items — ${settingsLine(summary)}`, line(HEADER), widths.map((w) => "-".repeat(w)).join("  "), ...rows(summary).map(line)];
  if (summary.comparison) table.push("", comparisonLine(summary.comparison));
  const warning = smallSampleWarning(summary);
  if (warning) table.push(`warning: ${warning}`);
  return table.join("\n");
}

export function markdownTable(summary: Summary): string {
  const align = HEADER.map((_, c) => (c === 0 ? "---" : "---:"));
  return [`| ${HEADER.join(" | ")} |`, `| ${align.join(" | ")} |`, ...rows(summary).map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

const escapeXml = (s: string) => s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);

/** Horizontal accuracy bars with their 95 % intervals as whiskers. */
export function svgChart(summary: Summary): string {
  const barHeight = 26;
  const left = 150;
  const width = 420;
  const warning = smallSampleWarning(summary);
  const heading = [
    `<text x="10" y="20" font-size="14">${escapeXml(`${summary.task}: ${settingsLine(summary)}`)}</text>`,
    `<text x="10" y="38">accuracy (bars) and 95 % Wilson interval (whiskers)</text>`,
    ...(warning ? [`<text x="10" y="56" fill="#b00020">${escapeXml(`n=${summary.n} is too small to tell the ensemble from its best member (paired interval includes 0)`)}</text>`] : []),
  ];
  const top = 20 + 18 * heading.length;
  const height = top + summary.systems.length * (barHeight + 10) + 30;
  const x = (v: number) => left + v * width;
  const parts = summary.systems.map((s, i) => {
    const y = top + i * (barHeight + 10);
    const mid = y + barHeight / 2;
    const fill = s.ensembledShare === null ? "#8fa8c8" : "#d9822b";
    return [
      `<text x="${left - 8}" y="${mid + 4}" text-anchor="end">${escapeXml(s.name)}</text>`,
      `<rect x="${left}" y="${y}" width="${(s.accuracy * width).toFixed(1)}" height="${barHeight}" fill="${fill}"/>`,
      `<line x1="${x(s.ci95[0]).toFixed(1)}" x2="${x(s.ci95[1]).toFixed(1)}" y1="${mid}" y2="${mid}" stroke="#222" stroke-width="1.5"/>`,
      ...[s.ci95[0], s.ci95[1]].map((v) => `<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${mid - 6}" y2="${mid + 6}" stroke="#222" stroke-width="1.5"/>`),
      `<text x="${(x(s.ci95[1]) + 6).toFixed(1)}" y="${mid + 4}">${pct(s.accuracy)}</text>`,
    ].join("");
  });
  const axisY = height - 24;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map(
    (v) => `<line x1="${x(v)}" x2="${x(v)}" y1="${top - 4}" y2="${axisY}" stroke="#ddd"/><text x="${x(v)}" y="${axisY + 14}" text-anchor="middle">${v * 100} %</text>`,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 90}" height="${height}" font-family="sans-serif" font-size="12">`,
    ...heading,
    ...ticks,
    ...parts,
    "</svg>",
  ].join("\n");
}

/** summary.json, summary.md and chart.svg, each written whole or not at all. */
export function writeReports(dir: string, summary: Summary): { summary: string; markdown: string; chart: string } {
  const files = { summary: path.join(dir, "summary.json"), markdown: path.join(dir, "summary.md"), chart: path.join(dir, "chart.svg") };
  const json = {
    task: summary.task,
    n: summary.n,
    settings: summary.settings,
    systems: summary.systems.map((s) => ({
      name: s.name,
      accuracy: s.accuracy,
      ci95: s.ci95,
      tokensPerSecond: s.tokensPerSecond,
      msPerItem: s.msPerItem,
      ensembledShare: s.ensembledShare,
      correct: s.correct,
      n: s.n,
      errors: s.errors,
    })),
    comparison: summary.comparison,
  };
  writeFileAtomic(files.summary, JSON.stringify(json, null, 2) + "\n");
  const warning = smallSampleWarning(summary);
  writeFileAtomic(
    files.markdown,
    `${summary.task}: ${summary.n} items — ${settingsLine(summary)}\n\n${markdownTable(summary)}\n` +
      (summary.comparison ? `\n${comparisonLine(summary.comparison)}\n` : "") +
      (warning ? `\n**Warning:** ${warning}\n` : ""),
  );
  writeFileAtomic(files.chart, svgChart(summary) + "\n");
  return files;
}
