import { ApiError } from "./errors.js";

/**
 * Requests to one ensemble: up to `parallel` generations at once (the ensemble's; each has its own
 * sequence per member); at most `capacity` wait beyond them; more are turned away with 429.
 */
export class GenerationQueue {
  private running = 0;
  private readonly waiting: { resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor(
    readonly capacity: number,
    readonly parallel = 1,
  ) {}

  get stats(): { running: number; waiting: number; parallel: number } {
    return { running: this.running, waiting: this.waiting.length, parallel: this.parallel };
  }

  /** Waits for a turn; the returned function hands the turn on. Leaves the line if `signal` aborts. */
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.running >= this.parallel) {
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
      // A turn handed on by the one that ended: `running` stays as it is.
    } else {
      this.running++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next.resolve();
      else this.running--;
    };
  }

  /** Turns away everyone still waiting (shutdown). */
  rejectWaiting(error: unknown): void {
    for (const entry of this.waiting.splice(0)) entry.reject(error);
  }
}
