// The API client: a fresh token before every call (MSAL caches and refreshes it), problem+json
// turned into ApiError, network failures into NetworkError (after one retry for safe methods).

import { parseProblem, type Problem } from "./problem";

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail || problem.title);
    this.name = "ApiError";
  }
  get status(): number {
    return this.problem.status;
  }
}

/** The API could not be reached (offline, DNS, CORS, a reset connection, a gateway error). */
export class NetworkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NetworkError";
  }
}

/** The session ended: someone must sign in again (the app asks, keeping the page). */
export class SignInRequired extends Error {
  constructor(message = "Your session has ended") {
    super(message);
    this.name = "SignInRequired";
  }
}

export type TokenProvider = (options: { forceRefresh: boolean }) => Promise<string>;

export interface ApiClientOptions {
  base: string;
  token: TokenProvider;
  fetch?: typeof fetch;
  /** Extra attempts for safe methods (GET, PUT, DELETE) after a network failure or a 502/503/504. */
  retries?: number;
  retryDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

export interface RequestOptions {
  query?: Record<string, string | number | undefined | null>;
  body?: unknown;
  /** A raw body (e.g. text/csv) with its content type, instead of JSON. */
  raw?: { body: string; contentType: string };
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** A 2xx body as a Blob, byte for byte (a download: text() would drop a CSV's BOM). */
  blob?: boolean;
}

const IDEMPOTENT = new Set(["GET", "PUT", "DELETE", "HEAD"]);
const TRANSIENT = new Set([502, 503, 504]);

export class ApiClient {
  private readonly fetchFn: typeof fetch;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly options: ApiClientOptions) {
    this.fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
    this.retries = options.retries ?? 1;
    this.retryDelayMs = options.retryDelayMs ?? 800;
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  get<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("GET", path, opts);
  }
  put<T>(path: string, body: unknown, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("PUT", path, { ...opts, body });
  }
  post<T>(path: string, body: unknown, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("POST", path, { ...opts, body });
  }
  delete(path: string, opts: RequestOptions = {}): Promise<void> {
    return this.request<void>("DELETE", path, opts);
  }

  /** One page of a list route: `{value, nextLink}` (docs/API.md "Lists and paging"). */
  page<T>(path: string, opts: RequestOptions = {}): Promise<ListPage<T>> {
    return this.get<ListPage<T>>(path, opts);
  }

  /** The page after `previous` of the same list, or null when it was the last. */
  next<T>(path: string, previous: ListPage<T>, opts: RequestOptions = {}): Promise<ListPage<T>> | null {
    const token = continuationOf(previous.nextLink);
    if (token === null) return null;
    return this.page<T>(path, { ...opts, query: { ...opts.query, continuationToken: token } });
  }

  /** Every item of a list route, page after page (at most `maxPages`, a guard against a loop). */
  async all<T>(path: string, opts: RequestOptions = {}, maxPages = 100): Promise<T[]> {
    let page = await this.page<T>(path, opts);
    const items = [...page.value];
    for (let n = 1; n < maxPages; n++) {
      const next = this.next(path, page, opts);
      if (next === null) break;
      page = await next;
      items.push(...page.value);
    }
    return items;
  }

  url(path: string, query?: RequestOptions["query"]): string {
    const base = this.options.base.replace(/\/$/, "");
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
    const qs = q.toString();
    return `${base}${path}${qs ? `?${qs}` : ""}`;
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = this.url(path, opts.query);
    let forceRefresh = false;
    let attempt = 0;
    for (;;) {
      const token = await this.options.token({ forceRefresh });
      const headers: Record<string, string> = { Accept: "application/json", ...opts.headers, Authorization: `Bearer ${token}` };
      let body: string | undefined;
      if (opts.raw) {
        body = opts.raw.body;
        headers["Content-Type"] = opts.raw.contentType;
      } else if (opts.body !== undefined) {
        body = JSON.stringify(opts.body);
        headers["Content-Type"] = "application/json";
      }
      let response: Response;
      try {
        response = await this.fetchFn(url, { method, headers, body, signal: opts.signal ?? null, credentials: "omit" });
      } catch (err) {
        if (isAbort(err)) throw err;
        if (IDEMPOTENT.has(method) && attempt < this.retries) {
          attempt += 1;
          await this.sleep(this.retryDelayMs * attempt);
          continue;
        }
        throw new NetworkError("BookingBridge could not be reached. Check your connection and retry.");
      }
      if (response.status === 401 && !forceRefresh) {
        forceRefresh = true; // a token the API no longer accepts: get a new one once
        continue;
      }
      if (response.status === 401) throw new SignInRequired();
      if (TRANSIENT.has(response.status) && IDEMPOTENT.has(method) && attempt < this.retries) {
        attempt += 1;
        await this.sleep(retryAfterMs(response) ?? this.retryDelayMs * attempt);
        continue;
      }
      if (opts.blob && response.ok) return (await response.blob()) as T;
      return (await readBody(response)) as T;
    }
  }
}

async function readBody(response: Response): Promise<unknown> {
  const type = response.headers.get("Content-Type") ?? "";
  const text = response.status === 204 ? "" : await response.text();
  let value: unknown = text;
  if (text && /json/i.test(type)) {
    try {
      value = JSON.parse(text);
    } catch {
      value = text;
    }
  }
  if (response.ok) return text ? value : undefined;
  if (TRANSIENT.has(response.status) && !/problem\+json/i.test(type)) {
    throw new NetworkError(`BookingBridge is not answering right now (HTTP ${response.status}). Retry in a moment.`);
  }
  throw new ApiError(parseProblem(response.status, value, response.statusText));
}

function retryAfterMs(response: Response): number | null {
  const v = response.headers.get("Retry-After");
  if (!v) return null;
  const s = Number(v);
  return Number.isFinite(s) ? Math.min(Math.max(s, 0), 10) * 1000 : null;
}

function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

export interface ListPage<T> {
  value: T[];
  nextLink: string | null;
}

/** The `continuationToken` a nextLink carries. Only the token is taken: the next request goes to
 * this client's own base URL with the caller's query, never to a host named in the response. */
export function continuationOf(nextLink: string | null): string | null {
  if (!nextLink) return null;
  const token = new URL(nextLink, "http://x.invalid/").searchParams.get("continuationToken");
  return token || null;
}

/** Path segment encoding for ids and email addresses. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}
