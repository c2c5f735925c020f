import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import { builtLlamaServer, llamaServerBinary } from "../../scripts/build-llama-server.js";

/**
 * A real llama.cpp server (built by `npm run build:llama-server`) on a free loopback port.
 * Outside CI a missing binary skips the tests that need it, with the command that builds it; with
 * `CI` set it is a failure, so CI never passes without having run them.
 */
export function llamaServerSkip(): string | false {
  if (builtLlamaServer() !== undefined || process.env.CI) return false;
  return `llama-server is not built (${llamaServerBinary()}); run \`npm run build:llama-server\` (15–25 min on 2 cores, once)`;
}

export interface LlamaServerOptions {
  readonly model: string;
  /** Context per slot. */
  readonly contextSize?: number;
  /** Slots: requests the server decodes together. */
  readonly parallel?: number;
  /** Listen on this port (a restart keeps its port). */
  readonly port?: number;
}

export class LlamaServer {
  private log = "";

  private constructor(
    readonly url: string,
    readonly port: number,
    private readonly child: ChildProcess,
  ) {}

  static async start(options: LlamaServerOptions): Promise<LlamaServer> {
    const binary = builtLlamaServer();
    if (binary === undefined) throw new Error(`llama-server is not built (${llamaServerBinary()}): run \`npm run build:llama-server\``);
    const port = options.port ?? (await freePort());
    const parallel = options.parallel ?? 1;
    const contextSize = options.contextSize ?? 512;
    const args = ["-m", options.model, "--host", "127.0.0.1", "--port", String(port), "-c", String(contextSize * parallel), "-np", String(parallel), "-t", "1", "-tb", "1", "--no-warmup"];
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    const server = new LlamaServer(`http://127.0.0.1:${port}`, port, child);
    const keep = (chunk: Buffer) => {
      server.log = (server.log + chunk.toString("utf8")).slice(-8000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    await server.ready();
    return server;
  }

  /** Waits for /health to answer 200 (the model is loaded). */
  private async ready(): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new Error(`llama-server exited with ${this.child.exitCode}:\n${this.log}`);
      try {
        const response = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(1000) });
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await this.stop();
    throw new Error(`llama-server did not become healthy within 60 s:\n${this.log}`);
  }

  /** Kills the server (as a machine going away would) and waits until it is gone. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.kill("SIGKILL");
    await exited;
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
