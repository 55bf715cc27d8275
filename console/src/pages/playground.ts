// The playground sends a prompt through either public face, as a program would, and streams the answer.
// It calls the face with a short-lived app key that it creates through the management API (an admin key
// never opens the faces), kept in this tab's session storage until it expires.
import { api, type Key, type ProjectDetail } from "../api";
import { clear, h } from "../dom";
import { href } from "../router";

const LIFETIME = 3600;

async function appKey(project: string, renew = false): Promise<string> {
  const slot = `promptd.playground.${project}`;
  const saved = JSON.parse(sessionStorage.getItem(slot) ?? "null") as { key: string; expires_at: number } | null;
  if (!renew && saved && saved.expires_at > Date.now() / 1000 + 60) return saved.key;
  const made = await api<Key>("/keys", { method: "POST", body: JSON.stringify({ project, name: "console playground", expires_in: LIFETIME }) });
  sessionStorage.setItem(slot, JSON.stringify({ key: made.key, expires_at: made.expires_at }));
  return made.key!;
}

/** The `data:` payloads of a Server-Sent Events response, as they arrive. */
async function* events(resp: Response): AsyncGenerator<string> {
  const reader = resp.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, cut).replace(/\r$/, "");
      buffer = buffer.slice(cut + 1);
      if (line.startsWith("data:")) yield line.slice(5).trim();
    }
  }
}

export function playground(p: ProjectDetail): HTMLElement {
  const faces: [string, string][] = [["chat", "Chat API (/api/v1/chat/completions)"]];
  if (p.mode === "completion") faces.unshift(["dify", "Dify API (/v1/completion-messages)"]);
  const face = h("select", { name: "face", "aria-label": "face" }, faces.map(([v, l]) => h("option", { value: v }, l)));
  const model = h("select", { name: "model", "aria-label": "model" }, p.models.map((m) => h("option", { value: m.name, selected: m.name === p.default_model }, m.name)));
  const inputs = p.config.inputs.map((f) => {
    const attrs = { name: f.variable, "data-variable": f.variable, placeholder: f.label ?? f.variable, "aria-label": f.label ?? f.variable };
    const el = f.type === "paragraph" ? h("textarea", { ...attrs, rows: 3 }) : f.type === "select" ? h("select", attrs, (f.options ?? []).map((o) => h("option", { value: o }, o))) : h("input", attrs);
    return h("label", { class: "field" }, f.label ?? f.variable, el);
  });
  const message = h("textarea", { name: "message", rows: 3, placeholder: "Your message", "aria-label": "message" });
  const dify = h("div", {}, inputs);
  const chat = h("div", {}, h("label", { class: "field" }, "Model", model), h("label", { class: "field" }, "Message", message));
  const output = h("pre", { class: "answer", "data-testid": "playground-answer" });
  const status = h("p", { class: "muted", "data-testid": "playground-status" });
  const send = h("button", { type: "submit" }, "Send");
  const showFields = () => {
    dify.hidden = face.value !== "dify";
    chat.hidden = face.value !== "chat";
  };
  face.addEventListener("change", showFields);
  showFields();
  const form = h("form", { class: "playground", "data-testid": "playground" }, h("label", { class: "field" }, "Face", face), dify, chat, send);

  const call = async (key: string): Promise<Response> => {
    const headers = { Authorization: `Bearer ${key}`, "Content-Type": "application/json" };
    if (face.value === "dify") {
      const values: Record<string, string> = {};
      for (const el of dify.querySelectorAll<HTMLInputElement>("[data-variable]")) values[el.dataset.variable!] = el.value;
      return fetch("/v1/completion-messages", { method: "POST", headers, body: JSON.stringify({ inputs: values, user: "console-playground", response_mode: "streaming" }) });
    }
    const body = { model: `${p.project}/${model.value}`, messages: [{ role: "user", content: message.value }], stream: true };
    return fetch("/api/v1/chat/completions", { method: "POST", headers, body: JSON.stringify(body) });
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    send.disabled = true;
    output.textContent = "";
    status.textContent = "Sending…";
    try {
      let resp = await call(await appKey(p.project));
      if (resp.status === 401) resp = await call(await appKey(p.project, true));
      if (!resp.ok) {
        status.textContent = `Error ${resp.status}: ${await resp.text()}`;
        return;
      }
      status.textContent = "Streaming…";
      let id: string | null = null;
      for await (const data of events(resp)) {
        if (data === "[DONE]") break;
        const e = JSON.parse(data);
        if (face.value === "dify") {
          if (e.event === "message") output.textContent += e.answer ?? "";
          if (e.event === "error") throw new Error(e.message);
          id = e.message_id ?? id;
        } else {
          if (e.error) throw new Error(typeof e.error === "string" ? e.error : e.error.message);
          const choice = e.choices?.[0];
          output.textContent += choice?.delta?.content ?? "";
          id = choice?.completion_id ?? e.id ?? id;
        }
      }
      clear(status, "Done. ", id ? h("a", { href: href(["logs", id]), "data-testid": "playground-log-link" }, "See it in the logs") : "");
    } catch (e) {
      status.textContent = `Failed: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      send.disabled = false;
    }
  });
  return h("div", {}, form, status, output);
}
