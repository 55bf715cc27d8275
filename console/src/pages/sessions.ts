// Sessions: the latest sessions, and one session's turns in order.
import { api, query, type SessionRow, type Turn } from "../api";
import { badge, h, ms, num, plural, table, time } from "../dom";
import { go, href, type Route } from "../router";

export async function sessionsPage(root: HTMLElement, route: Route): Promise<void> {
  if (route.parts[1]) return turns(root, route.parts[1]);
  const project = route.params.get("project") ?? "";
  const user = route.params.get("user") ?? "";
  const list = await api<{ data: SessionRow[] }>("/sessions" + query({ project, user, limit: 100 }));
  const projectInput = h("input", { name: "project", placeholder: "project", value: project, "aria-label": "project" });
  const userInput = h("input", { name: "user", placeholder: "user", value: user, "aria-label": "user" });
  const idInput = h("input", { name: "session", placeholder: "open a session id", "aria-label": "session id" });
  const form = h("form", { class: "filters" }, projectInput, userInput, h("button", { type: "submit" }, "Filter"), idInput, h("button", { type: "button", onclick: () => idInput.value.trim() && go(["sessions", idInput.value.trim()]) }, "Open"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go(["sessions"], { project: projectInput.value.trim(), user: userInput.value.trim() });
  });
  root.append(
    h("h2", {}, "Sessions"),
    form,
    list.data.length
      ? table(
          ["session", "project", "user", "turns", "errors", "first", "last"],
          list.data.map((s) => [
            h("a", { href: href(["sessions", s.session_id]), "data-testid": "session-link" }, s.session_id),
            s.project,
            s.user ?? "",
            num(s.turns),
            num(s.errors),
            time(s.first_at),
            time(s.last_at),
          ]),
          { "data-testid": "session-table" },
        )
      : h("p", { class: "muted" }, "No sessions yet: the chat API records one per session_id."),
  );
}

async function turns(root: HTMLElement, id: string): Promise<void> {
  const s = await api<{ session_id: string; project: string; turns: Turn[] }>(`/sessions/${encodeURIComponent(id)}`);
  root.append(
    h("p", {}, h("a", { href: "#/sessions" }, "← Sessions")),
    h("h2", {}, "Session ", h("code", {}, s.session_id)),
    h("p", { class: "muted" }, `${s.project} · ${plural(s.turns.length, "turn")}`),
    h(
      "ol",
      { class: "conversation", "data-testid": "session-turns" },
      s.turns.map((t) =>
        h(
          "li",
          { "data-testid": "session-turn" },
          h("div", { class: "bubble user" }, h("div", { class: "role" }, t.user ?? "user"), t.input ?? "–"),
          h(
            "div",
            { class: "bubble assistant" },
            h("div", { class: "role" }, `${t.model} `, badge(t.status), ` · ${ms(t.latency === null ? null : t.latency * 1000)} · ${plural(t.total_tokens, "token")} · `, h("a", { href: href(["logs", t.id]) }, "details")),
            t.answer || "–",
          ),
        ),
      ),
    ),
  );
}
