// The management API client: every call carries the admin key kept in this tab's session storage.

const KEY = "promptd.admin-key";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

export function adminKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setAdminKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export type Params = Record<string, string | number | string[] | null | undefined>;

export function query(params: Params): string {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) if (v !== "") q.append(name, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

let onUnauthorized: () => void = () => {};
export function whenUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

export async function api<T>(path: string, init: RequestInit = {}, key: string | null = adminKey()): Promise<T> {
  const headers = new Headers(init.headers);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  if (init.body) headers.set("Content-Type", "application/json");
  const resp = await fetch(`/admin/v1${path}`, { ...init, headers });
  const body = resp.headers.get("content-type")?.startsWith("application/json") ? await resp.json() : null;
  if (!resp.ok) {
    const err = body?.error ?? { code: "http_error", message: `HTTP ${resp.status}`, param: null };
    if (resp.status === 401 && key !== null && key === adminKey()) onUnauthorized();
    throw new ApiError(resp.status, err.code, err.message, err.param);
  }
  return body as T;
}

// --- the shapes the management API returns (docs/management-api.md) ---------------------------------------------

export interface Percentiles {
  p50: number | null;
  p95: number | null;
}

export interface Stats {
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  tokens: number;
  cost: Record<string, number>;
  latency_ms: Percentiles;
  ttft_ms: Percentiles;
}

/** Requests refused before any model call (they leave no record): counted per project, key, face, status, code. */
export interface Rejection {
  project: string | null;
  key_id?: string | null;
  face: string;
  status: number;
  code: string;
  requests: number;
  last_at: number | null;
}

export interface Overview {
  start: number;
  end: number;
  bucket: number;
  series: (Stats & { t: number; rejected: number })[];
  totals: Stats & { rejected: number };
  breakdown: (Stats & { project: string; model: string })[];
  rejections: Rejection[];
}

export interface UserSpend extends Stats {
  project: string;
  user: string | null;
}

export interface LogRow {
  id: string;
  created_at: number;
  project: string;
  face: string;
  model: string;
  provider: string;
  user: string | null;
  session_id: string | null;
  campaign: string | null;
  status: string;
  error_code: string | null;
  labels: Record<string, string> | null;
  tags: string[] | null;
  query: string | null;
  answer_preview: string | null;
  latency: number | null;
  ttft: number | null;
  total_tokens: number;
  total_price: string;
  currency: string;
  request_id: string | null;
}

export interface Attempt {
  model?: string;
  provider?: string;
  status?: string;
  error?: string | null;
  started?: number;
  error_code?: string | null;
  duration?: number;
  ttft?: number | null;
  usage?: { prompt_tokens?: number; completion_tokens?: number };
  cost?: string;
  [k: string]: unknown;
}

/** A knowledge segment given to the prompt (Dify's retriever_resources). */
export interface RetrieverResource {
  position: number;
  dataset_name: string;
  document_name: string;
  segment_id: string;
  score: number;
  content: string;
}

export interface Message extends LogRow {
  catalog_version: string | null;
  inputs: Record<string, unknown> | null;
  prompt: { role: string; content: unknown }[] | null;
  answer: string;
  error: string | null;
  finish_reason: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  prompt_price: string;
  completion_price: string;
  upstream_model: string;
  attempts: Attempt[] | null;
  retriever_resources: RetrieverResource[] | null;
  feedbacks: { rating: string; content: string | null; created_at: number }[];
  metric_feedback: { metric: string; value: number; reason: string | null; details: string | null; created_at: number }[];
}

export interface SessionRow {
  session_id: string;
  project: string;
  turns: number;
  errors: number;
  first_at: number;
  last_at: number;
  user: string | null;
}

export interface Turn extends LogRow {
  answer: string;
  input: string | null;
  choice_index: number;
}

export interface CampaignModel {
  model: string;
  requests: number;
  errors: number;
  feedback_count: number;
  metric_mean: number | null;
  metric_ci95: [number, number] | null;
  cost: string;
  currency: string | null;
  latency_ms: Percentiles;
  ttft_ms: Percentiles;
}

export interface Campaign {
  key: string;
  id: string;
  project: string;
  status: string;
  metric: string;
  higher_is_better: boolean;
  traffic_split: number;
  models: CampaignModel[];
  comparisons: { models: [string, string]; p_value: number | null; significant: boolean }[];
  leader: string | null;
  significant: boolean;
  alpha: number;
  series?: { start: number | null; bucket: number | null; models: Record<string, { t: number; n: number; mean: number | null }[]> };
}

export interface ProjectSummary {
  project: string;
  name: string;
  mode: string;
  description: string;
  models: string[];
  default_model: string;
  campaigns: string[];
}

export interface ModelInfo {
  name: string;
  type: string;
  price: Record<string, string>;
  deployments: { provider: string; kind: string; model: string; weight: number }[];
  fallbacks: string[];
}

export interface CampaignInfo {
  key: string;
  id: string;
  models: string[];
  traffic_split: number;
  metric: string;
  status: string;
}

/** One variable of a project's input form, as the catalog declares it (catalog/schema.py `FormField`). */
export interface FormField {
  type: "text-input" | "paragraph" | "select" | "number" | "checkbox" | "file" | "file-list";
  variable: string;
  label: string | null;
  required: boolean;
  options: string[] | null;
  default: string | number | boolean | null;
  /** text-input, paragraph: characters; file-list: files */
  max_length: number | null;
  /** file, file-list: the types of file taken (image, document, audio, video, custom) */
  allowed_file_types: string[] | null;
  /** file, file-list: for type custom, the extensions taken (".log") */
  allowed_file_extensions: string[] | null;
  /** file, file-list: local_file (an upload's id), remote_url */
  allowed_file_upload_methods: string[] | null;
}

export interface ProjectDetail extends Omit<ProjectSummary, "models" | "campaigns"> {
  config: Record<string, unknown> & {
    prompt: string | null;
    system_prompt: string | null;
    system_prompt_template: string | null;
    inputs: FormField[];
    tools: Record<string, { description: string; enabled: boolean; parameters: unknown }>;
    metrics: Record<string, { kind: string; higher_is_better: boolean }>;
  };
  models: ModelInfo[];
  campaigns: CampaignInfo[];
}

export interface Key {
  id: string;
  project: string;
  name: string;
  prefix: string;
  role: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  state: string;
  limits: Record<string, unknown>;
  key?: string;
  /** What the key spent in the current UTC day and month (absent on a key just created). */
  spend?: Record<"day" | "month", { requests: number; tokens: number; cost: Record<string, string> }>;
  /** Per budget it has: the limit, what was spent in its window and what remains. */
  budget?: Partial<Record<"cost_per_day" | "cost_per_month", { window: string; limit: string; spent: string; remaining: string; resets_at: number }>>;
}
