// The console: a login with an admin key, then one page per menu entry. Everything it shows comes from the
// management API (/admin/v1), which works the same without it.
import "./style.css";

import { adminKey, api, ApiError, setAdminKey, whenUnauthorized } from "./api";
import { destroyCharts } from "./charts";
import { clear, h } from "./dom";
import { campaignsPage } from "./pages/campaigns";
import { logsPage } from "./pages/logs";
import { overviewPage } from "./pages/overview";
import { projectsPage } from "./pages/projects";
import { sessionsPage } from "./pages/sessions";
import { current, href, type Route } from "./router";

type Page = (root: HTMLElement, route: Route) => Promise<void>;

const PAGES: [string, string, Page][] = [
  ["overview", "Overview", overviewPage],
  ["logs", "Logs", logsPage],
  ["sessions", "Sessions", sessionsPage],
  ["campaigns", "Campaigns", campaignsPage],
  ["projects", "Projects", projectsPage],
];

const app = document.getElementById("app")!;
let renderId = 0;

function login(message = ""): void {
  destroyCharts();
  const input = h("input", { type: "password", name: "admin-key", placeholder: "adm-…", autocomplete: "off", required: true, "aria-label": "Admin key" });
  const error = h("p", { class: "error", role: "alert" }, message);
  const form = h(
    "form",
    { class: "login" },
    h("h1", {}, "promptd console"),
    h("p", { class: "muted" }, "Log in with an admin key (", h("code", {}, "promptd keys create --admin"), ")."),
    input,
    h("button", { type: "submit" }, "Log in"),
    error,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    try {
      await api("/me", {}, key);
      setAdminKey(key);
      if (!location.hash || location.hash === "#/") location.hash = "#/overview";
      void render();
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 401 ? "This is not a valid admin key." : String(e);
    }
  });
  clear(app, form);
  input.focus();
}

async function render(): Promise<void> {
  if (!adminKey()) return login();
  const route = current();
  const name = route.parts[0] ?? "overview";
  const page = PAGES.find(([n]) => n === name) ?? PAGES[0];
  const id = ++renderId;
  destroyCharts();
  const main = h("main", { "data-testid": `page-${page[0]}` }, h("p", { class: "muted" }, "Loading…"));
  const nav = h(
    "nav",
    {},
    h("span", { class: "brand" }, "promptd"),
    PAGES.map(([n, label]) => h("a", { href: href([n]), class: n === page[0] ? "active" : "" }, label)),
    h("button", { class: "link logout", onclick: () => { setAdminKey(null); login(); } }, "Log out"),
  );
  clear(app, nav, main);
  try {
    const content = h("div", {});
    await page[2](content, route);
    if (id === renderId) clear(main, content);
  } catch (e) {
    if (id !== renderId) return;
    if (e instanceof ApiError && e.status === 401) return;
    clear(main, h("p", { class: "error", role: "alert" }, e instanceof ApiError ? `${e.message} (${e.code})` : String(e)));
  }
}

whenUnauthorized(() => {
  setAdminKey(null);
  login("Your admin key is no longer valid; log in again.");
});
window.addEventListener("hashchange", () => void render());
void render();
