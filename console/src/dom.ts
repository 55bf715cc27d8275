// Tiny DOM helpers. Text always goes in as text (never as HTML), so stored prompts and answers cannot inject markup.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function clear(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

export function time(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "–";
  const d = new Date(seconds * 1000);
  return d.toLocaleString(undefined, { hour12: false });
}

export function shortTime(seconds: number, span: number, step = 60): string {
  const d = new Date(seconds * 1000);
  const hm = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: step < 60 ? "2-digit" : undefined, hour12: false });
  if (span <= 86400) return hm;
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + hm;
}

export function ms(value: number | null | undefined): string {
  if (value === null || value === undefined) return "–";
  return value >= 1000 ? (value / 1000).toFixed(2) + " s" : value.toFixed(value < 10 ? 2 : 0) + " ms";
}

export function num(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined) return "–";
  return value.toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** "1 turn", "2 turns", "1,204 requests": a count with its noun in the right number. */
export function plural(n: number, singular: string, pluralForm = singular + "s"): string {
  return `${num(n)} ${n === 1 ? singular : pluralForm}`;
}

/** Costs per currency kept as exact decimal strings (the usage rollups'), e.g. "0.0012 USD". */
export function amounts(cost: Record<string, string> | undefined): string {
  const entries = Object.entries(cost ?? {});
  return entries.length ? entries.map(([cur, v]) => `${v} ${cur}`).join(" + ") : "0";
}

export function money(cost: Record<string, number> | undefined): string {
  const entries = Object.entries(cost ?? {});
  if (!entries.length) return "0";
  return entries.map(([cur, v]) => `${v.toPrecision(4).replace(/\.?0+$/, "")} ${cur}`).join(" + ");
}

export function pretty(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

export function badge(status: string): HTMLElement {
  return h("span", { class: `badge badge-${status}` }, status);
}

export function table(headers: string[], rows: (Child | Child[])[][], attrs: Attrs = {}): HTMLTableElement {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))),
    ),
  );
}

export function card(title: string, ...body: (Child | Child[])[]): HTMLElement {
  return h("section", { class: "card" }, h("h3", {}, title), ...body);
}

export function stat(label: string, value: string, testid: string): HTMLElement {
  return h("div", { class: "stat", "data-testid": testid }, h("div", { class: "stat-value" }, value), h("div", { class: "stat-label" }, label));
}

export function select(name: string, options: [string, string][], value: string, onchange: (v: string) => void): HTMLSelectElement {
  const el = h("select", { name, "aria-label": name }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
  el.addEventListener("change", () => onchange(el.value));
  return el;
}
