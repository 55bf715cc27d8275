// A completion project's input form, shown as Dify's web app shows it: one control per variable by its type,
// required fields marked and checked before anything is sent, and the values as the Dify face takes them
// (text as text, a number as a JSON number, a checkbox as a boolean, files uploaded first and sent as Dify's
// file mappings).
import type { FormField } from "./api";
import { h } from "./dom";

/** A file's extensions by the type its mapping names: image, audio and video as promptd's upload classifies
 * them (faces/dify/files.py), documents as promptd reads them (documents.py). tests/console/test_form_source.py
 * keeps these lists in step with the server's. */
export const EXTENSIONS: Record<"image" | "audio" | "video" | "document", string[]> = {
  image: ["jpg", "jpeg", "png", "webp", "gif", "svg"],
  audio: ["mp3", "m4a", "wav", "amr", "mpga", "ogg", "webm", "flac"],
  video: ["mp4", "mov", "mpeg", "webm", "avi", "mkv"],
  document: ["txt", "text", "md", "markdown", "mdx", "html", "htm", "csv", "pdf", "docx"],
};

/** Uploads a file (POST /v1/files/upload) and gives its id. */
export type Upload = (file: File) => Promise<string>;

/** A file field's value sent to the Dify face. */
interface FileMapping {
  type: string;
  transfer_method: "local_file" | "remote_url";
  upload_file_id?: string;
  url?: string;
}

export interface InputForm {
  element: HTMLElement;
  /** What keeps the form from being sent (the first problem, in form order), or null. */
  check(): string | null;
  /** The `inputs` of a completion request: files uploaded first; a value left out is omitted. */
  values(upload: Upload): Promise<Record<string, unknown>>;
}

interface Control {
  element: HTMLElement;
  problem(): string | null;
  value(upload: Upload): Promise<unknown>;
}

function extension(name: string): string {
  const path = name.split(/[?#]/, 1)[0];
  const base = path.slice(path.lastIndexOf("/") + 1);
  return base.includes(".") ? base.slice(base.lastIndexOf(".") + 1).toLowerCase() : "";
}

/** The kind promptd's upload gives a file (`file_kind`): image, audio or video by MIME type or extension, else a
 * document. */
function kind(ext: string, mime: string): string {
  for (const k of ["image", "audio", "video"] as const) if (mime.startsWith(`${k}/`) || EXTENSIONS[k].includes(ext)) return k;
  return "document";
}

function customExtensions(f: FormField): string[] {
  return (f.allowed_file_extensions ?? []).map((e) => e.toLowerCase().replace(/^\./, ""));
}

/** The `type` a file goes as in this field's mapping, or null when the field does not take it: `custom` for an
 * extension the field lists, else the file's kind if the field takes it. */
export function fileType(f: FormField, name: string, mime: string): string | null {
  const types = f.allowed_file_types ?? ["image"];
  const ext = extension(name);
  if (types.includes("custom") && customExtensions(f).includes(ext)) return "custom";
  const k = kind(ext, mime);
  return types.includes(k) ? k : null;
}

/** The file picker's `accept`: every extension (and media type) the field takes. */
function accept(f: FormField): string {
  const out: string[] = [];
  for (const t of f.allowed_file_types ?? ["image"]) {
    if (t === "custom") out.push(...customExtensions(f).map((e) => `.${e}`));
    else if (t in EXTENSIONS) {
      if (t !== "document") out.push(`${t}/*`);
      out.push(...EXTENSIONS[t as keyof typeof EXTENSIONS].map((e) => `.${e}`));
    }
  }
  return [...new Set(out)].join(",");
}

/** "document, image or .log": what a file field takes, for a message. */
function takes(f: FormField): string {
  const kinds = (f.allowed_file_types ?? ["image"]).filter((t) => t !== "custom");
  const all = [...kinds, ...((f.allowed_file_types ?? []).includes("custom") ? customExtensions(f).map((e) => `.${e}`) : [])];
  return all.length > 1 ? `${all.slice(0, -1).join(", ")} or ${all[all.length - 1]}` : all.join("");
}

function field(f: FormField): Control {
  const label = f.label ?? f.variable;
  const attrs = {
    name: f.variable,
    "data-variable": f.variable,
    "aria-label": label,
    "aria-required": f.required ? "true" : null,
    placeholder: f.required ? label : `${label} (optional)`,
  };
  const required = (): string | null => (f.required ? `${label} is required` : null);
  const caption = (): HTMLElement => h("span", {}, label, f.required ? h("span", { class: "required", title: "required" }, " *") : null);
  const wrap = (el: HTMLElement, ...note: HTMLElement[]): HTMLElement => h("label", { class: "field" }, caption(), el, ...note);
  const given = f.default === null || f.default === "" ? null : f.default;

  if (f.type === "number") {
    const el = h("input", { ...attrs, type: "number", step: "any", inputmode: "decimal" });
    if (given !== null) el.value = String(given);
    return {
      element: wrap(el),
      problem: () => (el.validity.badInput ? `${label} must be a number` : el.value.trim() === "" ? required() : null),
      value: async () => (el.value.trim() === "" ? undefined : Number(el.value)),
    };
  }
  if (f.type === "checkbox") {
    const el = h("input", { ...attrs, type: "checkbox", placeholder: null, checked: given === true });
    const element = h("label", { class: "field check" }, el, caption());
    return { element, problem: () => null, value: async () => el.checked }; // unchecked is an answer: false
  }
  if (f.type === "select") {
    const options = (f.options ?? []).map((o) => h("option", { value: o, selected: o === given }, o));
    const el = h("select", { ...attrs, placeholder: null }, given === null ? h("option", { value: "" }, f.required ? "Choose…" : "(none)") : null, options);
    return { element: wrap(el), problem: () => (el.value === "" ? required() : null), value: async () => el.value };
  }
  if (f.type === "file" || f.type === "file-list") return files(f, attrs, wrap, required);
  const el = f.type === "paragraph" ? h("textarea", { ...attrs, rows: 3, maxlength: f.max_length }) : h("input", { ...attrs, maxlength: f.max_length });
  if (typeof given === "string") el.value = given;
  return {
    element: wrap(el),
    problem: () => {
      if (el.value.trim() === "") return required();
      return f.max_length !== null && el.value.length > f.max_length ? `${label} takes at most ${f.max_length} characters` : null;
    },
    value: async () => el.value,
  };
}

/** A file field: a file picker when it takes uploads (`local_file`), each file uploaded when the form is sent;
 * else a box of URLs (`remote_url`), one a line. A `file-list` takes several, at most its `max_length`. */
function files(
  f: FormField,
  attrs: Record<string, string | null>,
  wrap: (el: HTMLElement, ...note: HTMLElement[]) => HTMLElement,
  required: () => string | null,
): Control {
  const label = f.label ?? f.variable;
  const many = f.type === "file-list";
  const most = many ? (f.max_length ?? 5) : 1;
  const local = (f.allowed_file_upload_methods ?? ["local_file"]).includes("local_file");
  const limit = many ? ` (at most ${most})` : "";
  const note = h("span", { class: "muted note" }, `${takes(f)} files${limit}${local ? "" : ", by URL, one a line"}`);
  const picker = h("input", { ...attrs, type: "file", placeholder: null, multiple: many, accept: accept(f) });
  const urls = h("textarea", { ...attrs, rows: many ? 2 : 1, spellcheck: "false" });
  const chosen = (): { name: string; mime: string; file?: File; url?: string }[] =>
    local
      ? [...(picker.files ?? [])].map((file) => ({ name: file.name, mime: file.type, file }))
      : urls.value.split("\n").map((u) => u.trim()).filter(Boolean).map((url) => ({ name: url, mime: "", url }));
  return {
    element: wrap(local ? picker : urls, note),
    problem: () => {
      const items = chosen();
      if (!items.length) return required();
      if (items.length > most) return many ? `${label} takes at most ${most} files` : `${label} takes one file`;
      const wrong = items.find((i) => fileType(f, i.name, i.mime) === null);
      return wrong ? `${label} takes ${takes(f)} files, not ${wrong.name}` : null;
    },
    value: async (upload) => {
      const mappings: FileMapping[] = [];
      for (const i of chosen()) {
        const type = fileType(f, i.name, i.mime)!;
        if (i.file) mappings.push({ type, transfer_method: "local_file", upload_file_id: await upload(i.file) });
        else mappings.push({ type, transfer_method: "remote_url", url: i.url });
      }
      if (!mappings.length) return undefined;
      return many ? mappings : mappings[0];
    },
  };
}

export function inputForm(fields: FormField[]): InputForm {
  const controls = fields.map(field);
  return {
    element: h("div", { class: "inputs" }, controls.map((c) => c.element)),
    check: () => controls.map((c) => c.problem()).find((p) => p !== null) ?? null,
    values: async (upload) => {
      const out: Record<string, unknown> = {};
      for (const [i, c] of controls.entries()) {
        const v = await c.value(upload);
        if (v !== undefined) out[fields[i].variable] = v;
      }
      return out;
    },
  };
}
