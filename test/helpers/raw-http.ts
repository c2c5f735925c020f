import http from "node:http";

export interface RawResponse {
  readonly status: number;
  readonly body: string;
}

/**
 * One HTTP request with the request target sent exactly as given (`/%761/completions`,
 * `http://host/v1/completions`): fetch would normalize it.
 */
export function rawRequest(base: string, method: string, target: string, options: { headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: hostname, port, method, path: target, headers: options.headers, agent: false }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      response.on("error", reject);
    });
    request.on("error", reject);
    request.end(options.body);
  });
}
