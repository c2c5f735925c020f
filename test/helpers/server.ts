import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { createServer, type ChorusServer, type ServerOptions } from "../../src/server/app.js";

export interface RunningServer {
  readonly server: ChorusServer;
  readonly url: string;
  client(apiKey?: string): OpenAI;
  close(): Promise<void>;
}

/** The real chorus server on a free loopback port. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const server = createServer(options);
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = server.app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    server,
    url,
    client: (apiKey = options.apiKey ?? "none") => new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 60_000 }),
    close: () => server.app.close(),
  };
}
