// Campaigns: per campaign, its models side by side, the metric's running mean over time, and significance.
import { api, type Campaign } from "../api";
import { chart } from "../charts";
import { badge, card, h, ms, num, shortTime, table } from "../dom";
import { href, type Route } from "../router";

function interval(ci: [number, number] | null): string {
  return ci ? `[${ci[0].toFixed(2)}, ${ci[1].toFixed(2)}]` : "–";
}

function verdict(c: Campaign): HTMLElement {
  if (c.significant) return h("p", { class: "verdict yes", "data-testid": "verdict" }, `Significant (p < ${c.alpha}): ${c.leader} leads on ${c.metric}.`);
  const p = c.comparisons.map((x) => x.p_value).filter((x): x is number => x !== null);
  const detail = p.length ? `lowest p = ${Math.min(...p).toFixed(3)}` : "not enough feedback yet";
  return h("p", { class: "verdict no", "data-testid": "verdict" }, `Not significant yet (${detail}).`);
}

function modelsTable(c: Campaign): HTMLElement {
  return table(
    ["model", "requests", "errors", "feedback", `${c.metric} mean`, "95 % interval", "cost", "latency p50", "latency p95", "TTFT p50"],
    c.models.map((m) => [
      h("strong", {}, m.model, m.model === c.leader ? " ★" : ""),
      num(m.requests),
      num(m.errors),
      num(m.feedback_count),
      m.metric_mean === null ? "–" : m.metric_mean.toFixed(3),
      interval(m.metric_ci95),
      `${m.cost} ${m.currency ?? ""}`,
      ms(m.latency_ms.p50),
      ms(m.latency_ms.p95),
      ms(m.ttft_ms.p50),
    ]),
    { "data-testid": "campaign-models" },
  );
}

export async function campaignsPage(root: HTMLElement, route: Route): Promise<void> {
  if (route.parts[1] && route.parts[2]) return one(root, route.parts[1], route.parts[2]);
  const list = await api<{ data: Campaign[] }>("/campaigns");
  root.append(h("h2", {}, "Campaigns"));
  if (!list.data.length) root.append(h("p", { class: "muted" }, "No campaigns in the catalog."));
  for (const c of list.data) {
    root.append(
      card(
        `${c.project} / ${c.key}`,
        h("p", {}, badge(c.status), ` metric ${c.metric} (${c.higher_is_better ? "higher" : "lower"} is better) · ${Math.round(c.traffic_split * 100)} % of traffic · `, h("a", { href: href(["campaigns", c.project, c.key]), "data-testid": "campaign-link" }, "details and chart")),
        verdict(c),
        modelsTable(c),
      ),
    );
  }
}

async function one(root: HTMLElement, project: string, key: string): Promise<void> {
  const c = await api<Campaign>(`/projects/${encodeURIComponent(project)}/campaigns/${encodeURIComponent(key)}`);
  const s = c.series;
  const models = Object.keys(s?.models ?? {});
  const points = models.length ? s!.models[models[0]] : [];
  const span = points.length ? points[points.length - 1].t - points[0].t : 0;
  root.append(
    h("p", {}, h("a", { href: "#/campaigns" }, "← Campaigns")),
    h("h2", {}, `${c.project} / ${c.key}`),
    h("p", { class: "muted" }, `id ${c.id} · `, badge(c.status), ` · ${Math.round(c.traffic_split * 100)} % of traffic`),
    verdict(c),
    modelsTable(c),
    card(
      "Pairwise comparisons (Welch's t-test)",
      table(
        ["models", "p-value", "significant"],
        c.comparisons.map((x) => [x.models.join(" vs "), x.p_value === null ? "–" : x.p_value.toPrecision(3), x.significant ? "yes" : "no"]),
      ),
    ),
    models.length
      ? chart(
          `${c.metric}: running mean`,
          points.map((p) => shortTime(p.t, span, s!.bucket ?? 60)),
          models.map((m) => ({ label: m, data: s!.models[m].map((p) => p.mean) })),
          "chart-campaign",
        )
      : h("p", { class: "muted" }, "No feedback on this metric yet."),
  );
}
