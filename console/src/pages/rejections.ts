// Requests refused before any model call (a bad key, a client mistake, a rate limit or budget, a store or limits
// unavailable): they leave no record in the logs, so the server counts them apart (GET /admin/v1/rejections).
import type { Rejection } from "../api";
import { badge, h, num, table, time } from "../dom";

const MEANING: Record<string, string> = {
  unauthorized: "no key, or a wrong, revoked or expired key",
  rate_limit_exceeded: "a rate limit (requests or tokens per minute)",
  insufficient_quota: "a budget (cost per day or month) was used up",
  invalid_param: "the request itself was wrong",
  not_found: "no such project, model, message or route",
  service_unavailable: "limits or the database could not be checked",
};

export function rejectionsTable(rows: Rejection[], testid: string, keyNames: Map<string, string> | null = null): HTMLElement {
  if (!rows.length) return h("p", { class: "muted", "data-testid": testid }, "No request was refused in this range.");
  const withKey = keyNames !== null;
  return table(
    ["project", ...(withKey ? ["key"] : []), "API", "status", "code", "requests", "last seen"],
    rows.map((r) => [
      r.project ?? h("span", { class: "muted" }, "unknown (no valid key)"),
      ...(withKey ? [r.key_id ? keyNames.get(r.key_id) ?? r.key_id : "–"] : []),
      r.face,
      badge(String(r.status)),
      h("span", { title: MEANING[r.code] ?? "" }, h("code", {}, r.code)),
      num(r.requests),
      time(r.last_at),
    ]),
    { "data-testid": testid },
  );
}
