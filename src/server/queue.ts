import { ApiError } from "./errors.js";

/**
 * Requests to one ensemble, one generation at a time (an ensemble's members hold one sequence
 * each): at most `capacity` wait; more are turned away with 429.
 */
export class GenerationQueue {
  private running = false;
  private readonly waiting: { resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor(readonly capacity: number) {}

  get stats(): { running: number; waiting: number } {
    return { running: this.running ? 1 : 0, waiting: this.waiting.length };
  }

  /** Waits for this ensemble's turn; the returned function hands the turn on. Leaves the line if `signal` aborts. */
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.running) {
      if (this.waiting.length >= this.capacity) {
        throw new ApiError(429, `the queue for this model is full (${this.capacity} waiting); retry later`, "rate_limit_error", null, "queue_full");
      }
      await new Promise<void>((resolve, reject) => {
        const entry = { resolve, reject };
        this.waiting.push(entry);
        signal.addEventListener(
          "abort",
          () => {
            const at = this.waiting.indexOf(entry);
            if (at >= 0) this.waiting.splice(at, 1);
            reject(signal.reason);
          },
          { once: true },
        );
      });
    }
    this.running = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next.resolve();
      else this.running = false;
    };
  }

  /** Turns away everyone still waiting (shutdown). */
  rejectWaiting(error: unknown): void {
    for (const entry of this.waiting.splice(0)) entry.reject(error);
  }
}
