/**
 * How much probability token healing leaves out at a foreign boundary (issue 13, item 3).
 *
 * Healing drops a member's last tokens (the open tail, bytes `r`) and follows its own tokenization
 * of `r`: the tail's tokens, then any token extending what is left. The exact probability that the
 * member's next bytes continue `r` sums over *every* covering tokenization of `r` (ByteSampler's
 * "valid covering tree"): token sequences whose first k−1 tokens spell a proper prefix of `r` and
 * whose last token reaches its end. This enumerates that tree by brute force on the shared models
 * (their vocabularies are small), from the same point as healing, and prints the share of the
 * covering mass healing's paths hold (the tail's own tokens and the other splits it follows), and
 * how often the most probable continuation differs.
 *
 *   node --import tsx bench/covering-mass.ts [--limit 200] [--seed 0] [--show] [--tail-only]
 *   (--show: contexts losing over 5 %; --tail-only: follow the tail's own tokens only, as healing did
 *   before it followed other splits)
 */
import { LlamaMember } from "../src/members/llama.js";
import { MemberTrack } from "../src/engine/member-track.js";
import { nextWord } from "../src/eval/tasks/next-word.js";
import { TokenKind } from "../src/tokens/vocabulary.js";
import { S260K, TS656K, TINYSTORIES_DEV } from "../test/helpers/models.js";

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const LIMIT = arg("--limit", 200);
const SEED = arg("--seed", 0);
/** Paths below this probability are not followed (their mass is counted as lost to both sides). */
const PRUNE = 1e-9;

interface Cover {
  /** Total mass of every covering tokenization, and of those healing follows. */
  total: number;
  healed: number;
  /** Mass of each continuation beyond `r` (the last token's remainder; "" when it ends exactly at `r`). */
  byRemainder: Map<string, { all: number; healed: number }>;
  evaluations: number;
}

/** Healing follows the tail's own tokens, and the other splits in `branches` (one token further each). */
async function cover(member: LlamaMember, prefix: readonly number[], r: string, tail: readonly number[], branches: readonly (readonly number[])[]): Promise<Cover> {
  const vocab = member.vocabulary;
  const result: Cover = { total: 0, healed: 0, byRemainder: new Map(), evaluations: 0 };
  const usable = (id: number) => {
    const kind = vocab.kinds[id];
    return (kind === TokenKind.normal || kind === TokenKind.byte || kind === TokenKind.user) && (vocab.surfaces[id]?.length ?? 0) > 0;
  };
  const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  // onTailPath: the sequence so far is the tail's first tokens or a followed branch, so healing takes its next step.
  const visit = async (sequence: number[], consumed: number, mass: number, onTailPath: boolean): Promise<void> => {
    const tokens = [...prefix, ...sequence];
    const [dist] = await member.distributions(tokens, [{ position: tokens.length - 1, topK: 1, full: true }]);
    result.evaluations++;
    const rest = r.slice(consumed);
    for (let k = 0; k < dist!.ids.length; k++) {
      const id = dist!.ids[k]!;
      const p = mass * dist!.probs[k]!;
      if (p < PRUNE || !usable(id)) continue;
      const surface = vocab.surfaces[id]!;
      if (surface.startsWith(rest)) {
        const healedToo = onTailPath;
        const remainder = surface.slice(rest.length);
        const entry = result.byRemainder.get(remainder) ?? { all: 0, healed: 0 };
        entry.all += p;
        if (healedToo) entry.healed += p;
        result.byRemainder.set(remainder, entry);
        result.total += p;
        if (healedToo) result.healed += p;
      } else if (rest.startsWith(surface)) {
        const next = [...sequence, id];
        const onTail = onTailPath && tail[sequence.length] === id && sequence.length + 1 < tail.length && same(next, tail.slice(0, next.length));
        const stillOnPath = onTail || branches.some((b) => same(b, next));
        await visit(next, consumed + surface.length, p, stillOnPath);
      }
    }
  };
  await visit([], 0, 1, true);
  return result;
}

function argmaxBy(map: Map<string, { all: number; healed: number }>, key: "all" | "healed"): string {
  let best = "";
  let bestMass = -1;
  for (const [text, m] of map) if (m[key] > bestMass) [best, bestMass] = [text, m[key]];
  return best;
}

const items = (await nextWord.load(TINYSTORIES_DEV, { seed: SEED, shots: 0 })).slice(0, LIMIT);
process.stderr.write(`covering tokenizations at ${items.length} next-word contexts (seed ${SEED})\n`);
for (const [name, modelPath] of [
  ["s260k", S260K],
  ["ts656k", TS656K],
] as const) {
  const member = await LlamaMember.load({ name, modelPath, contextSize: 512 });
  const dropped: number[] = [];
  let changed = 0;
  let evaluations = 0;
  let measured = 0;
  try {
    for (const item of items) {
      const track = new MemberTrack(member, member.promptTokens({ text: item.prompt }), true);
      if (track.tokenCount + 8 > member.contextSize) continue;
      const plan = track.planFetch("", { topK: 1 });
      if (!plan.tail || plan.tail.length === 0) continue;
      const prefix = plan.tokens.slice(0, plan.tokens.length - plan.tail.length);
      const r = plan.tail.map((id) => member.vocabulary.surfaces[id]!).join("");
      const followed = process.argv.includes("--tail-only") ? [] : track.branchPlans(plan, await member.distributions(plan.tokens, plan.requests.map((q) => ({ ...q, full: true }))));
      const c = await cover(member, prefix, r, plan.tail, followed.map((b) => b.before));
      evaluations += c.evaluations;
      if (!(c.total > 0)) continue;
      measured++;
      dropped.push(1 - c.healed / c.total);
      if (process.argv.includes("--show") && 1 - c.healed / c.total > 0.05) {
        const top = [...c.byRemainder].sort((a, b) => b[1].all - a[1].all).slice(0, 3).map(([t, m]) => `${JSON.stringify(t)} ${(m.all / c.total).toFixed(3)}/${(m.healed / Math.max(1e-300, c.healed)).toFixed(3)}`);
        process.stderr.write(`${name} drops ${(100 * (1 - c.healed / c.total)).toFixed(1)} % at ${JSON.stringify(item.prompt.slice(-30))}: tail ${JSON.stringify(plan.tail.map((id) => member.vocabulary.surfaces[id]))}; top (all/healed) ${top.join(", ")}\n`);
      }
      if (process.argv.includes("--show") && 1 - c.healed / c.total > 0.05) {
        const top = [...c.byRemainder].sort((a, b) => b[1].all - a[1].all).slice(0, 3).map(([t, m]) => `${JSON.stringify(t)} ${(m.all / c.total).toFixed(3)}/${(m.healed / Math.max(1e-300, c.healed)).toFixed(3)}`);
        process.stderr.write(`${name} drops ${(100 * (1 - c.healed / c.total)).toFixed(1)} % at ${JSON.stringify(item.prompt.slice(-30))}: tail ${JSON.stringify(plan.tail.map((id) => member.vocabulary.surfaces[id]))}; top (all/healed) ${top.join(", ")}\n`);
      }
      if (argmaxBy(c.byRemainder, "all") !== argmaxBy(c.byRemainder, "healed")) changed++;
    }
  } finally {
    await member.dispose();
  }
  dropped.sort((a, b) => a - b);
  const mean = dropped.reduce((a, b) => a + b, 0) / Math.max(1, dropped.length);
  const q = (f: number) => dropped[Math.min(dropped.length - 1, Math.floor(f * dropped.length))] ?? 0;
  const over1 = dropped.filter((d) => d > 0.01).length;
  process.stdout.write(
    `${name}: ${measured} contexts · mass healing leaves out: mean ${(100 * mean).toFixed(3)} %, median ${(100 * q(0.5)).toFixed(3)} %, p90 ${(100 * q(0.9)).toFixed(3)} %, max ${(100 * q(1)).toFixed(3)} % · contexts over 1 %: ${over1} · most probable continuation changed: ${changed} · ${evaluations} evaluations\n`,
  );
}
