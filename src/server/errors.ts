import { ContextOverflowError, MemberError, MemberRejectedError, MemberUnavailableError } from "../members/member.js";
import { ConstraintError } from "../constraints/constraint.js";

export type ErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "rate_limit_error" | "server_error";

/** An error in OpenAI's shape: `{ error: { message, type, param, code } }` with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** HTTP headers the answer carries (Retry-After on 429). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: ErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const invalid = (param: string | null, message: string, code: string | null = null) =>
  new ApiError(400, message, "invalid_request_error", param, code);

/**
 * The API error for anything a generation threw. `beforeFirstStep`: the prompt was being
 * prepared, so a member's complaint is about the input (a character its vocabulary cannot encode).
 */
export function toApiError(error: unknown, promptParam: string, beforeFirstStep: boolean): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof ContextOverflowError) return invalid(promptParam, error.message, "context_length_exceeded");
  if (error instanceof ConstraintError) {
    return beforeFirstStep ? invalid("max_tokens", error.message, "constraint_too_long") : new ApiError(500, error.message, "server_error", null, "constraint_failed");
  }
  if (error instanceof MemberUnavailableError) {
    return new ApiError(error.unavailable ? 503 : 502, error.message, "server_error", null, "member_failed");
  }
  if (error instanceof MemberRejectedError) return new ApiError(502, error.message, "server_error", null, "member_failed");
  if (error instanceof MemberError) {
    return beforeFirstStep ? invalid(promptParam, error.message) : new ApiError(502, error.message, "server_error", null, "member_failed");
  }
  return new ApiError(500, `internal error: ${(error as Error)?.message ?? String(error)}`, "server_error");
}
