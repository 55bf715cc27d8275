// Hash routes: #/page/arg?filters. The page is re-rendered whenever the hash changes.

export interface Route {
  parts: string[];
  params: URLSearchParams;
}

export function current(): Route {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, q = ""] = raw.split("?", 2);
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(q) };
}

export function href(parts: string[], params?: Record<string, string | string[] | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v === null || v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) if (x !== "") q.append(k, x);
  }
  const s = q.toString();
  return "#/" + parts.map(encodeURIComponent).join("/") + (s ? "?" + s : "");
}

export function go(parts: string[], params?: Record<string, string | string[] | null | undefined>): void {
  location.hash = href(parts, params);
}
