// The playground sends a prompt through either public face, as a program would, and streams the answer.
// It calls the face with a short-lived app key that it creates through the management API (an admin key
// never opens the faces), kept in this tab's session storage until it expires. On the Dify face it fills the
// project's input form (../form.ts), uploading its files first as the same end user.
import { api, type Key, type ProjectDetail } from "../api";
import { clear, h, plural } from "../dom";
import { inputForm } from "../form";
import { href } from "../router";

const LIFETIME = 3600;
/** The Dify face's end user of the playground's requests and of the files they upload (Dify ties one to the other). */
const USER = "console-playground";

/** An upload the Dify face refused: its message, for the status line. */
class UploadError extends Error {}

/** A refusal's message: the face's JSON error `message`, else the body as it came. */
async function refusal(resp: Response): Promise<string> {
  const text = await resp.text();
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof message === "string" && message) return message;
  } catch {
    // not JSON: the text itself
  }
  return text || `HTTP ${resp.status}`;
}

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

/** The variables a system prompt template names ({{ name }}), to prefill its arguments. */
export function templateVariables(template: string | null): string[] {
  if (!template) return [];
  const names = [...template.matchAll(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]);
  return [...new Set(names)];
}

/** A random UUID (v4) for the conversation's session: crypto.randomUUID needs a secure context, this does not. */
function uuid4(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

interface Turn {
  role: "user" | "assistant";
  content: string;
}

/** The chat face's generation parameters: [body field, label, input attributes]. */
const PARAMS: [string, string, Record<string, string>][] = [
  ["temperature", "temperature", { min: "0", max: "2", step: "0.1" }],
  ["top_p", "top_p", { min: "0", max: "1", step: "0.05" }],
  ["max_tokens", "max_tokens", { min: "1", step: "1" }],
];

export function playground(p: ProjectDetail): HTMLElement {
  const faces: [string, string][] = [["chat", "Chat API (/api/v1/chat/completions)"]];
  if (p.mode === "completion") faces.unshift(["dify", "Dify API (/v1/completion-messages)"]);
  const face = h("select", { name: "face", "aria-label": "face" }, faces.map(([v, l]) => h("option", { value: v }, l)));
  const model = h("select", { name: "model", "aria-label": "model" }, p.models.map((m) => h("option", { value: m.name, selected: m.name === p.default_model }, m.name)));
  const inputs = inputForm(p.config.inputs);
  const message = h("textarea", { name: "message", rows: 3, placeholder: "Your message", "aria-label": "message" });
  const template = p.config.system_prompt_template;
  const variables = templateVariables(template);
  const args = h("textarea", {
    name: "system_prompt_args",
    rows: 3,
    "aria-label": "system_prompt_args",
    spellcheck: "false",
  });
  args.value = JSON.stringify(Object.fromEntries(variables.map((v) => [v, ""])), null, 2);
  const argsField = template
    ? h("label", { class: "field" }, "System prompt arguments (JSON object for ", h("code", {}, template.length > 60 ? template.slice(0, 60) + "…" : template), ")", args)
    : null;
  const params = PARAMS.map(([name, label, attrs]) => h("input", { type: "number", name, "aria-label": label, placeholder: "default", ...attrs }));
  const dify = inputs.element;
  const newChat = h("button", { type: "button", class: "more", "data-testid": "playground-new" }, "New conversation");
  const chat = h(
    "div",
    { class: "playground" },
    h("label", { class: "field" }, "Model", model),
    argsField,
    h("div", { class: "params" }, params.map((el, i) => h("label", { class: "field" }, PARAMS[i][1], el))),
    h("label", { class: "field" }, "Message", message),
  );
  const conversation = h("ol", { class: "conversation", "data-testid": "playground-conversation" });
  const status = h("p", { class: "muted", "data-testid": "playground-status" });
  const send = h("button", { type: "submit" }, "Send");
  let history: Turn[] = [];
  let session = uuid4();
  const showFields = () => {
    dify.hidden = face.value !== "dify";
    chat.hidden = face.value !== "chat";
    newChat.hidden = face.value !== "chat";
  };
  const reset = () => {
    history = [];
    session = uuid4();
    clear(conversation);
    status.textContent = "";
  };
  face.addEventListener("change", () => {
    showFields();
    reset();
  });
  model.addEventListener("change", reset);
  newChat.addEventListener("click", reset);
  showFields();
  const form = h("form", { class: "playground", "data-testid": "playground" }, h("label", { class: "field" }, "Face", face), dify, chat, h("div", { class: "row" }, send, newChat));

  /** The chat body's optional fields, or an error message naming the one that is wrong. */
  const options = (): Record<string, unknown> | string => {
    const out: Record<string, unknown> = {};
    if (template) {
      let parsed: unknown;
      try {
        parsed = args.value.trim() ? JSON.parse(args.value) : {};
      } catch {
        return "system_prompt_args is not valid JSON";
      }
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return "system_prompt_args must be a JSON object";
      out.system_prompt_args = parsed;
    }
    for (const el of params) {
      if (el.value.trim() === "") continue;
      const v = Number(el.value);
      if (!Number.isFinite(v)) return `${el.name} must be a number`;
      out[el.name] = el.name === "max_tokens" ? Math.trunc(v) : v;
    }
    return out;
  };

  /** A request to a face with the playground's app key, sent again with a new key if the face refuses it. */
  const withKey = async (send: (key: string) => Promise<Response>): Promise<Response> => {
    const resp = await send(await appKey(p.project));
    return resp.status === 401 ? send(await appKey(p.project, true)) : resp;
  };

  /** A file of the form uploaded through the Dify face (once per file picked), as the completion's end user. */
  const uploaded = new WeakMap<File, string>();
  const upload = async (file: File): Promise<string> => {
    const known = uploaded.get(file);
    if (known) return known;
    status.textContent = `Uploading ${file.name}…`;
    const resp = await withKey((key) => {
      const body = new FormData();
      body.append("file", file);
      body.append("user", USER);
      return fetch("/v1/files/upload", { method: "POST", headers: { Authorization: `Bearer ${key}` }, body });
    });
    if (!resp.ok) throw new UploadError(`Cannot upload ${file.name}: ${await refusal(resp)} (HTTP ${resp.status}).`);
    const id = ((await resp.json()) as { id: string }).id;
    uploaded.set(file, id);
    return id;
  };

  const call = async (key: string, messages: Turn[], extra: Record<string, unknown>, values: Record<string, unknown>): Promise<Response> => {
    const headers = { Authorization: `Bearer ${key}`, "Content-Type": "application/json" };
    if (face.value === "dify") {
      return fetch("/v1/completion-messages", { method: "POST", headers, body: JSON.stringify({ inputs: values, user: USER, response_mode: "streaming" }) });
    }
    const body = { model: `${p.project}/${model.value}`, messages, stream: true, session_id: session, ...extra };
    return fetch("/api/v1/chat/completions", { method: "POST", headers, body: JSON.stringify(body) });
  };

  const bubble = (role: string, text: string): HTMLElement => h("div", { class: `bubble ${role}` }, h("div", { class: "role" }, role), text);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const extra = face.value === "chat" ? options() : {};
    if (typeof extra === "string") {
      status.textContent = `Cannot send: ${extra}.`;
      return;
    }
    if (face.value === "chat" && !message.value.trim()) {
      status.textContent = "Cannot send: write a message first.";
      return;
    }
    const problem = face.value === "dify" ? inputs.check() : null;
    if (problem) {
      status.textContent = `Cannot send: ${problem}.`;
      return;
    }
    send.disabled = true;
    if (face.value === "dify") clear(conversation); // one completion at a time: no conversation
    for (const old of conversation.querySelectorAll("[data-testid=playground-answer]")) old.removeAttribute("data-testid");
    const output = h("pre", { class: "answer", "data-testid": "playground-answer" });
    const asked = face.value === "chat" ? message.value : "";
    const turn = h(
      "li",
      { "data-testid": "playground-turn" },
      face.value === "chat" ? bubble("user", asked) : null,
      h("div", { class: "bubble assistant" }, h("div", { class: "role" }, "assistant"), output),
    );
    conversation.append(turn);
    status.textContent = "Sending…";
    const messages: Turn[] = [...history, { role: "user", content: asked }];
    try {
      const values = face.value === "dify" ? await inputs.values(upload) : {};
      status.textContent = "Sending…";
      const resp = await withKey((key) => call(key, messages, extra, values));
      if (!resp.ok) {
        turn.remove();
        status.textContent = `Error ${resp.status}: ${await resp.text()}`;
        return;
      }
      status.textContent = "Streaming…";
      let id: string | null = null;
      let finish: string | null = null;
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
          finish = choice?.finish_reason ?? finish;
          id = choice?.completion_id ?? e.id ?? id;
        }
      }
      if (face.value === "chat") {
        history = [...messages, { role: "assistant", content: output.textContent ?? "" }];
        message.value = "";
      }
      const turns = history.filter((t) => t.role === "user").length;
      clear(
        status,
        "Done",
        finish === "length" ? " (cut at max_tokens)" : "",
        face.value === "chat" ? ` · ${plural(turns, "turn")} in this conversation` : "",
        ". ",
        id ? h("a", { href: href(["logs", id]), "data-testid": "playground-log-link" }, "See it in the logs") : "",
      );
    } catch (e) {
      if (e instanceof UploadError) turn.remove();
      status.textContent = e instanceof UploadError ? e.message : `Failed: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      send.disabled = false;
    }
  });
  return h("div", {}, form, conversation, status);
}
