// Projects: the catalog as loaded (read-only), the project's keys, and a playground through either face.
import { api, ApiError, query, type Key, type ProjectDetail, type ProjectSummary, type Rejection, type UserSpend } from "../api";
import { amounts, badge, card, clear, h, money, ms, num, pretty, table, time } from "../dom";
import { href, type Route } from "../router";
import { playground } from "./playground";
import { rejectionsTable } from "./rejections";

export async function projectsPage(root: HTMLElement, route: Route): Promise<void> {
  if (route.parts[1]) return one(root, route.parts[1]);
  const list = await api<{ data: ProjectSummary[] }>("/projects");
  root.append(
    h("h2", {}, "Projects"),
    table(
      ["project", "name", "mode", "models", "default model", "campaigns", "description"],
      list.data.map((p) => [
        h("a", { href: href(["projects", p.project]), "data-testid": "project-link" }, p.project),
        p.name,
        p.mode,
        p.models.join(", "),
        p.default_model,
        p.campaigns.join(", ") || "–",
        p.description,
      ]),
      { "data-testid": "project-table" },
    ),
  );
}

async function one(root: HTMLElement, name: string): Promise<void> {
  const p = await api<ProjectDetail>(`/projects/${encodeURIComponent(name)}`);
  const c = p.config;
  const keysBox = h("div", { "data-testid": "keys" });
  const rejectedBox = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const usersBox = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  root.append(
    h("p", {}, h("a", { href: "#/projects" }, "← Projects")),
    h("h2", {}, p.name, " ", h("code", {}, p.project)),
    h("p", { class: "muted" }, `${p.mode} app · ${p.description || "no description"}`),
    h(
      "div",
      { class: "grid" },
      card(
        "Prompt",
        h("div", { "data-testid": "catalog-prompt" },
          c.prompt !== null ? h("pre", {}, c.prompt) : h("p", { class: "muted" }, "No completion prompt (chat app)."),
          c.system_prompt ? [h("h4", {}, "System prompt"), h("pre", {}, c.system_prompt)] : null,
          c.system_prompt_template ? [h("h4", {}, "System prompt template (chat API)"), h("pre", {}, c.system_prompt_template)] : null,
        ),
      ),
      card(
        "Inputs",
        c.inputs.length
          ? table(["variable", "type", "label", "required", "options", "default"], c.inputs.map((f) => [h("code", {}, f.variable), f.type, f.label ?? "", f.required ? "yes" : "no", f.options?.join(", ") ?? "", f.default === null ? "" : String(f.default)]))
          : h("p", { class: "muted" }, "No inputs."),
      ),
    ),
    card(
      "Models",
      table(
        ["model", "type", "deployments", "price in / out", "fallbacks"],
        p.models.map((m) => [
          h("strong", {}, m.name, m.name === p.default_model ? " (default)" : ""),
          m.type,
          m.deployments.map((d) => `${d.provider} (${d.kind}): ${d.model}`).join(", "),
          `${m.price.input} / ${m.price.output} ${m.price.currency} per ${m.price.unit} tokens`,
          m.fallbacks.join(" → ") || "–",
        ]),
        { "data-testid": "catalog-models" },
      ),
    ),
    h(
      "div",
      { class: "grid" },
      card("Tools", Object.keys(c.tools).length ? table(["tool", "enabled", "description", "parameters"], Object.entries(c.tools).map(([n, t]) => [h("code", {}, n), t.enabled ? "yes" : "no", t.description, h("pre", {}, pretty(t.parameters))])) : h("p", { class: "muted" }, "No tools.")),
      card(
        "Metrics and campaigns",
        Object.keys(c.metrics).length ? h("ul", {}, Object.entries(c.metrics).map(([n, m]) => h("li", {}, `${n}: ${m.kind}, ${m.higher_is_better ? "higher" : "lower"} is better`))) : h("p", { class: "muted" }, "No metrics."),
        p.campaigns.length
          ? table(["campaign", "models", "traffic", "metric", "status"], p.campaigns.map((x) => [h("a", { href: href(["campaigns", p.project, x.key]) }, x.key), x.models.join(" vs "), `${Math.round(x.traffic_split * 100)} %`, x.metric, badge(x.status)]))
          : h("p", { class: "muted" }, "No campaigns."),
      ),
    ),
    card("API keys", keysBox),
    h("div", { class: "grid" }, card("Rejected requests (last 7 days)", rejectedBox), card("Spend per end user (last 30 days)", usersBox)),
    card("Playground", playground(p)),
  );
  await Promise.all([keys(keysBox, p.project), rejected(rejectedBox, p.project), users(usersBox, p.project)]);
}

async function rejected(box: HTMLElement, project: string): Promise<void> {
  const [found, list] = await Promise.all([
    api<{ data: Rejection[] }>("/rejections" + query({ project, range: "week" })),
    api<{ data: Key[] }>("/keys" + query({ project })),
  ]);
  const names = new Map(list.data.map((k) => [k.id, `${k.prefix}… ${k.name}`.trim()]));
  clear(box, rejectionsTable(found.data, "project-rejections", names));
}

async function users(box: HTMLElement, project: string): Promise<void> {
  const found = await api<{ data: UserSpend[] }>("/users" + query({ project, range: "month" }));
  clear(
    box,
    found.data.length
      ? table(
          ["end user", "requests", "errors", "tokens", "cost", "latency p50"],
          found.data.map((u) => [
            u.user !== null ? h("a", { href: href(["logs"], { project, user: u.user }) }, u.user) : h("span", { class: "muted" }, "no user given"),
            num(u.requests),
            num(u.errors),
            num(u.tokens),
            money(u.cost),
            ms(u.latency_ms.p50),
          ]),
          { "data-testid": "user-spend" },
        )
      : h("p", { class: "muted", "data-testid": "user-spend" }, "No requests in the last 30 days."),
  );
}

function budgetLeft(k: Key): Node | string {
  const rows = Object.entries(k.budget ?? {}).map(([name, b]) =>
    h("div", {}, `${name === "cost_per_day" ? "today" : "this month"}: ${b!.remaining} of ${b!.limit} left`),
  );
  return rows.length ? h("div", { "data-testid": "key-budget" }, rows) : "no budget";
}

async function keys(box: HTMLElement, project: string, fresh: Key | null = null): Promise<void> {
  const list = await api<{ data: Key[] }>(`/keys?project=${encodeURIComponent(project)}`);
  const name = h("input", { name: "key-name", placeholder: "name (e.g. billing service)", "aria-label": "key name" });
  const expires = h("select", { name: "key-expires", "aria-label": "expires" }, [["", "never expires"], ["86400", "expires in 1 day"], ["2592000", "expires in 30 days"], ["31536000", "expires in 1 year"]].map(([v, l]) => h("option", { value: v }, l)));
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "filters" }, name, expires, h("button", { type: "submit" }, "Create key"), error);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const made = await api<Key>("/keys", { method: "POST", body: JSON.stringify({ project, name: name.value.trim(), expires_in: expires.value ? Number(expires.value) : null }) });
      await keys(box, project, made);
    } catch (e) {
      error.textContent = e instanceof ApiError ? e.message : String(e);
    }
  });
  const shown = fresh?.key
    ? h(
        "div",
        { class: "new-key", "data-testid": "new-key" },
        h("p", {}, h("strong", {}, "Copy this key now: "), "it is shown once and cannot be read again."),
        h("code", { "data-testid": "new-key-value" }, fresh.key),
        " ",
        h("button", {
          type: "button",
          onclick: async (ev: Event) => {
            const button = ev.currentTarget as HTMLButtonElement;
            try {
              await navigator.clipboard.writeText(fresh.key!);
              button.textContent = "Copied";
            } catch {
              const range = document.createRange();
              range.selectNodeContents(button.previousElementSibling!);
              getSelection()?.removeAllRanges();
              getSelection()?.addRange(range);
              button.textContent = "Selected: press Ctrl+C";
            }
          },
        }, "Copy"),
      )
    : null;
  clear(
    box,
    shown,
    form,
    table(
      ["prefix", "name", "state", "created", "expires", "limits", "spent today", "spent this month", "budget left", ""],
      list.data.map((k) => [
        h("code", {}, k.prefix + "…"),
        k.name,
        badge(k.state),
        time(k.created_at),
        k.expires_at ? time(k.expires_at) : "never",
        Object.entries(k.limits).map(([n, v]) => `${n} ${v}`).join(", ") || "–",
        h("span", { "data-testid": "key-spend-day" }, amounts(k.spend?.day.cost)),
        amounts(k.spend?.month.cost),
        budgetLeft(k),
        k.state === "active"
          ? h("button", {
              class: "danger",
              "data-testid": "revoke",
              onclick: async () => {
                if (!confirm(`Revoke key ${k.prefix}… (${k.name || "unnamed"})? Programs using it stop working.`)) return;
                await api(`/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
                await keys(box, project);
              },
            }, "Revoke")
          : "",
      ]),
      { "data-testid": "key-table" },
    ),
  );
}
