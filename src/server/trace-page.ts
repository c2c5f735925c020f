export const TRACE_PAGE = "<!doctype html><title>chorus</title>";
