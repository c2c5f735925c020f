/** A one-line progress bar with an ETA on stderr (a line per stage and per quarter when stderr is not a terminal). */
export function progressBar(stream: NodeJS.WriteStream = process.stderr): { update: (stage: string, done: number, total: number) => void; end: () => void } {
  let stage = "";
  let started = 0;
  let lastDraw = 0;
  let lastQuarter = -1;
  let open = false;
  const end = () => {
    if (open && stream.isTTY) stream.write("\n");
    open = false;
  };
  const update = (next: string, done: number, total: number) => {
    const now = performance.now();
    if (next !== stage) {
      end();
      stage = next;
      started = now;
      lastQuarter = -1;
    }
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    const elapsed = (now - started) / 1000;
    const eta = fraction > 0 ? (elapsed * (1 - fraction)) / fraction : NaN;
    const etaText = fraction >= 1 ? `done in ${elapsed.toFixed(1)} s` : Number.isFinite(eta) && fraction > 0.01 ? `ETA ${formatSeconds(eta)}` : "ETA …";
    if (stream.isTTY) {
      if (now - lastDraw < 100 && fraction < 1) return;
      lastDraw = now;
      const width = 30;
      const filled = Math.round(fraction * width);
      stream.write(`\r${stage} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${etaText}\x1b[K`);
      open = true;
    } else {
      const quarter = Math.floor(fraction * 4);
      if (quarter === lastQuarter) return;
      lastQuarter = quarter;
      stream.write(`${stage}: ${(fraction * 100).toFixed(0)}% ${etaText}\n`);
    }
  };
  return { update, end };
}

function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(0)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}
