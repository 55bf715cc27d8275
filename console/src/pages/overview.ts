// Overview: requests, errors, latency and TTFT percentiles, tokens and cost over time, per project and model.
import { api, query, type Overview, type ProjectSummary } from "../api";
import { chart } from "../charts";
import { card, h, money, ms, num, select, shortTime, stat, table } from "../dom";
import { rejectionsTable } from "./rejections";
import { go, type Route } from "../router";

const RANGES = ["hour", "day", "week"];

export async function overviewPage(root: HTMLElement, route: Route): Promise<void> {
  const p = route.params;
  const range = RANGES.includes(p.get("range") ?? "") ? p.get("range")! : "day";
  const project = p.get("project") ?? "";
  const model = p.get("model") ?? "";
  const [data, projects] = await Promise.all([
    api<Overview>("/overview" + query({ range, project, model })),
    api<{ data: ProjectSummary[] }>("/projects"),
  ]);
  const nav = (changes: Record<string, string>) => go(["overview"], { range, project, model, ...changes });
  const models = [...new Set(projects.data.filter((x) => !project || x.project === project).flatMap((x) => x.models))];
  const toolbar = h(
    "div",
    { class: "toolbar" },
    h("div", { class: "segmented", role: "group", "aria-label": "Range" }, RANGES.map((r) =>
      h("button", { class: r === range ? "active" : "", "data-range": r, onclick: () => nav({ range: r }) }, r),
    )),
    select("project", [["", "All projects"], ...projects.data.map((x): [string, string] => [x.project, x.name])], project, (v) => nav({ project: v, model: "" })),
    select("model", [["", "All models"], ...models.map((m): [string, string] => [m, m])], model, (v) => nav({ model: v })),
  );
  const t = data.totals;
  const span = data.end - data.start;
  const labels = data.series.map((b) => shortTime(b.t, span));
  const currencies = [...new Set(data.series.flatMap((b) => Object.keys(b.cost)))];
  root.append(
    h("h2", {}, "Overview"),
    toolbar,
    h(
      "div",
      { class: "stats" },
      stat("requests", num(t.requests), "total-requests"),
      stat("errors", num(t.errors), "total-errors"),
      stat("rejected before any model call", num(t.rejected), "total-rejected"),
      stat("latency p50 / p95", `${ms(t.latency_ms.p50)} / ${ms(t.latency_ms.p95)}`, "total-latency"),
      stat("TTFT p50 / p95", `${ms(t.ttft_ms.p50)} / ${ms(t.ttft_ms.p95)}`, "total-ttft"),
      stat("tokens", num(t.tokens), "total-tokens"),
      stat("cost", money(t.cost), "total-cost"),
    ),
    h(
      "div",
      { class: "grid" },
      chart("Requests", labels, [
        { label: "requests", data: data.series.map((b) => b.requests), kind: "bar" },
        { label: "errors", data: data.series.map((b) => b.errors), kind: "bar" },
        { label: "rejected", data: data.series.map((b) => b.rejected), kind: "bar" },
      ], "chart-requests"),
      chart("Latency and TTFT (ms)", labels, [
        { label: "latency p50", data: data.series.map((b) => b.latency_ms.p50) },
        { label: "latency p95", data: data.series.map((b) => b.latency_ms.p95), dashed: true },
        { label: "TTFT p50", data: data.series.map((b) => b.ttft_ms.p50) },
        { label: "TTFT p95", data: data.series.map((b) => b.ttft_ms.p95), dashed: true },
      ], "chart-latency"),
      chart("Tokens", labels, [
        { label: "prompt", data: data.series.map((b) => b.prompt_tokens), kind: "bar" },
        { label: "completion", data: data.series.map((b) => b.completion_tokens), kind: "bar" },
      ], "chart-tokens"),
      chart("Cost", labels, currencies.map((c) => ({ label: c, data: data.series.map((b) => b.cost[c] ?? 0) })), "chart-cost"),
    ),
    card(
      "Per project and model",
      data.breakdown.length
        ? table(
            ["project", "model", "requests", "errors", "latency p50", "latency p95", "TTFT p50", "TTFT p95", "tokens", "cost"],
            data.breakdown.map((b) => [
              b.project,
              h("a", { href: `#/logs?project=${encodeURIComponent(b.project)}&model=${encodeURIComponent(b.model)}` }, b.model),
              num(b.requests),
              num(b.errors),
              ms(b.latency_ms.p50),
              ms(b.latency_ms.p95),
              ms(b.ttft_ms.p50),
              ms(b.ttft_ms.p95),
              num(b.tokens),
              money(b.cost),
            ]),
            { "data-testid": "breakdown" },
          )
        : h("p", { class: "muted" }, "No requests in this range."),
    ),
    card(
      "Rejected before any model call",
      h("p", { class: "muted" }, "Refused requests leave no record in the logs; they are counted here by project, API, status and code", model ? " (for every model of the project: a refusal names none)." : "."),
      rejectionsTable(data.rejections, "rejections"),
    ),
  );
}
