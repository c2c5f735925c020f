import { createHash, timingSafeEqual } from "node:crypto";
import { ApiError } from "./errors.js";

/**
 * Why a key cannot be used, or undefined. An empty key is refused rather than read as "no
 * authentication": `--api-key "$KEY"` with KEY unset must not start an open server. Clients
 * cannot send a key with spaces at its ends or control characters (HTTP trims and refuses them).
 */
export function apiKeyProblem(key: string): string | undefined {
  if (key === "") return "the API key is empty; give a key, or leave out --api-key and unset CHORUS_API_KEY to serve without one";
  if (key.trim() !== key) return "the API key starts or ends with whitespace, which HTTP clients cannot send; remove it";
  if (/[\x00-\x1f\x7f]/.test(key)) return "the API key contains a control character, which HTTP headers cannot carry; use printable characters";
  return undefined;
}

const digest = (text: string) => createHash("sha256").update(text, "utf8").digest();

/**
 * Checks `Authorization: Bearer <key>` headers against one key. Both sides are hashed first, so
 * the comparison takes the same time whatever the header holds (timingSafeEqual needs equal lengths).
 */
export function bearerCheck(key: string): (header: string | undefined) => void {
  const problem = apiKeyProblem(key);
  if (problem) throw new Error(problem);
  const expected = digest(key);
  return (header) => {
    const match = /^bearer[ \t]+(.*)$/i.exec(header ?? "");
    if (!match) {
      throw new ApiError(401, "missing API key: send `Authorization: Bearer <key>`", "authentication_error", null, "invalid_api_key");
    }
    if (!timingSafeEqual(digest(match[1]!.trim()), expected)) {
      throw new ApiError(401, "incorrect API key", "authentication_error", null, "invalid_api_key");
    }
  };
}
