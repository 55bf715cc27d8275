// Logs: the requests, filtered and paged (newest first), and one request in full.
import { api, query, type LogRow, type Message } from "../api";
import { badge, card, h, ms, num, pretty, table, time } from "../dom";
import { go, href, type Route } from "../router";

const FILTERS: [string, string][] = [
  ["q", "text"],
  ["project", "project"],
  ["model", "model"],
  ["user", "user"],
  ["session", "session"],
  ["label", "label name:value"],
  ["tag", "tag"],
  ["campaign", "campaign"],
  ["request_id", "request id"],
];

function localInput(seconds: string | null): string {
  if (!seconds) return "";
  const d = new Date(Number(seconds) * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function filterForm(p: URLSearchParams): HTMLFormElement {
  const form = h(
    "form",
    { class: "filters", "data-testid": "log-filters" },
    FILTERS.map(([name, label]) => h("input", { name, placeholder: label, "aria-label": label, value: p.get(name) ?? "" })),
    h("select", { name: "status", "aria-label": "status" }, ["", "normal", "stopped", "error"].map((s) => h("option", { value: s, selected: s === (p.get("status") ?? "") }, s || "any status"))),
    h("select", { name: "face", "aria-label": "face" }, ["", "dify", "chat", "import"].map((s) => h("option", { value: s, selected: s === (p.get("face") ?? "") }, s || "any face"))),
    h("label", {}, "from ", h("input", { type: "datetime-local", name: "start", value: localInput(p.get("start")) })),
    h("label", {}, "to ", h("input", { type: "datetime-local", name: "end", value: localInput(p.get("end")) })),
    h("button", { type: "submit" }, "Search"),
    h("a", { href: "#/logs", class: "button-link" }, "Clear"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const out: Record<string, string> = {};
    for (const [k, v] of data.entries()) {
      const s = String(v).trim();
      if (!s) continue;
      out[k] = k === "start" || k === "end" ? String(new Date(s).getTime() / 1000) : s;
    }
    go(["logs"], out);
  });
  return form;
}

function rowCells(m: LogRow): (Node | string)[] {
  return [
    h("a", { href: href(["logs", m.id]), "data-testid": "log-link" }, time(m.created_at)),
    m.project,
    m.model,
    m.face,
    badge(m.status),
    m.user ?? "",
    h("span", { class: "preview" }, (m.query ?? m.answer_preview ?? "").slice(0, 80)),
    ms(m.latency === null ? null : m.latency * 1000),
    num(m.total_tokens),
    `${m.total_price} ${m.currency}`,
  ];
}

export async function logsPage(root: HTMLElement, route: Route): Promise<void> {
  if (route.parts[1]) return detail(root, route.parts[1]);
  const p = route.params;
  const params: Record<string, string | string[]> = {};
  for (const name of ["q", "project", "model", "user", "session", "status", "face", "campaign", "request_id", "start", "end"]) {
    const v = p.get(name);
    if (v) params[name] = v;
  }
  for (const name of ["label", "tag"]) if (p.getAll(name).length) params[name] = p.getAll(name);
  const body = h("tbody", {});
  const more = h("button", { class: "more" }, "Load more");
  const count = h("span", { class: "muted", "data-testid": "log-count" });
  let shown = 0;
  const load = async (cursor: string | null) => {
    const page = await api<{ data: LogRow[]; next_cursor: string | null }>("/messages" + query({ ...params, limit: 50, cursor }));
    for (const m of page.data) body.append(h("tr", { "data-testid": "log-row" }, rowCells(m).map((c) => h("td", {}, c))));
    shown += page.data.length;
    count.textContent = `${shown} shown`;
    more.hidden = !page.next_cursor;
    more.onclick = () => void load(page.next_cursor);
  };
  await load(null);
  const headers = ["time", "project", "model", "face", "status", "user", "input / answer", "latency", "tokens", "cost"];
  root.append(
    h("h2", {}, "Logs"),
    filterForm(p),
    h("div", { class: "toolbar" }, count),
    h("table", { "data-testid": "log-table" }, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), body),
    more,
  );
}

function pre(value: unknown, testid?: string): HTMLElement {
  return h("pre", { "data-testid": testid }, value === null || value === undefined ? "–" : pretty(value));
}

async function detail(root: HTMLElement, id: string): Promise<void> {
  const m = await api<Message>(`/messages/${encodeURIComponent(id)}`);
  const facts: [string, Node | string][] = [
    ["id", m.id],
    ["request id", m.request_id ? h("code", { "data-testid": "request-id" }, m.request_id) : "–"],
    ["time", time(m.created_at)],
    ["project", m.project],
    ["face", m.face],
    ["model", `${m.model} (${m.provider}: ${m.upstream_model})`],
    ["status", badge(m.status)],
    ["error", m.error ? `${m.error_code ?? ""} ${m.error}` : "–"],
    ["finish reason", m.finish_reason ?? "–"],
    ["user", m.user ?? "–"],
    ["session", m.session_id ? h("a", { href: href(["sessions", m.session_id]) }, m.session_id) : "–"],
    ["campaign", m.campaign ?? "–"],
    ["catalog version", m.catalog_version ? h("code", { "data-testid": "catalog-version", title: "the catalog that served it (GET /admin/v1/catalog shows the one in force)" }, m.catalog_version) : "–"],
    ["labels", m.labels ? Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(", ") : "–"],
    ["tags", m.tags?.join(", ") || "–"],
    ["latency", ms(m.latency === null ? null : m.latency * 1000)],
    ["TTFT", ms(m.ttft === null ? null : m.ttft * 1000)],
    ["tokens", `${m.prompt_tokens} prompt + ${m.completion_tokens} completion = ${m.total_tokens}`],
    ["cost", `${m.prompt_price} + ${m.completion_price} = ${m.total_price} ${m.currency}`],
  ];
  const attempts = m.attempts ?? [];
  const cited = m.retriever_resources ?? [];
  root.append(
    h("p", {}, h("a", { href: "#/logs" }, "← Logs")),
    h("h2", {}, "Request ", h("code", {}, m.id)),
    h("dl", { class: "facts", "data-testid": "message-facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h(
      "div",
      { class: "grid" },
      card("Inputs", pre(m.inputs, "message-inputs")),
      card("Rendered prompt", h("div", { "data-testid": "message-prompt" }, (m.prompt ?? []).map((x) => h("div", { class: "turn" }, h("div", { class: "role" }, x.role), h("pre", {}, pretty(x.content)))))),
    ),
    card("Answer", pre(m.answer, "message-answer")),
    card(
      "Routing attempts",
      attempts.length
        ? table(
            ["#", "model", "provider", "status", "error", "started at", "duration", "TTFT", "tokens", "cost"],
            attempts.map((a, i) => [
              String(i + 1),
              a.model ?? "",
              a.provider ?? "",
              badge(a.status ?? "?"),
              [a.error_code, a.error].filter(Boolean).join(": "),
              ms(a.started === undefined ? null : a.started * 1000),
              ms(a.duration === undefined ? null : a.duration * 1000),
              ms(a.ttft === undefined || a.ttft === null ? null : a.ttft * 1000),
              a.usage ? `${a.usage.prompt_tokens ?? 0} + ${a.usage.completion_tokens ?? 0}` : "",
              a.cost ?? "",
            ]),
            { "data-testid": "message-attempts" },
          )
        : h("p", { class: "muted" }, "No attempts recorded."),
    ),
    card(
      "Retrieved knowledge",
      cited.length
        ? table(
            ["#", "knowledge base", "document", "score", "segment"],
            cited.map((r) => [String(r.position), r.dataset_name, r.document_name, r.score.toFixed(3), h("span", { class: "preview" }, r.content)]),
            { "data-testid": "message-knowledge" },
          )
        : h("p", { class: "muted" }, "No knowledge was retrieved."),
    ),
    card(
      "Feedback",
      h(
        "div",
        { "data-testid": "message-feedback" },
        m.feedbacks.length || m.metric_feedback.length
          ? h(
              "ul",
              {},
              m.feedbacks.map((f) => h("li", {}, `${f.rating}${f.content ? ": " + f.content : ""} (${time(f.created_at)})`)),
              m.metric_feedback.map((f) => h("li", {}, `${f.metric} = ${f.value}${f.reason ? " (" + f.reason + ")" : ""}${f.details ? ": " + f.details : ""}`)),
            )
          : h("p", { class: "muted" }, "No feedback."),
      ),
    ),
  );

}
