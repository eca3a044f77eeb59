// problem+json (RFC 9457) from the API: parsed, and rendered in words next to what caused it.

import { reasonText } from "./reasons";

export interface FieldProblem {
  field: string;
  message: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  reason?: string;
  errors: FieldProblem[];
  extra: Record<string, unknown>;
}

export function parseProblem(status: number, body: unknown, statusText = ""): Problem {
  const b = body !== null && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const errors = Array.isArray(b["errors"])
    ? (b["errors"] as unknown[]).flatMap((e): FieldProblem[] => {
        if (e === null || typeof e !== "object") return [];
        const r = e as Record<string, unknown>;
        const field = typeof r["field"] === "string" ? r["field"] : "";
        const message = typeof r["message"] === "string" ? r["message"] : "is invalid";
        return [{ field, message }];
      })
    : [];
  const { type, title, detail, reason, status: _s, ...rest } = b;
  const extra = Object.fromEntries(Object.entries(rest).filter(([k]) => k !== "errors"));
  return {
    type: typeof type === "string" ? type : "about:blank",
    title: typeof title === "string" ? title : statusText || `HTTP ${status}`,
    status: typeof _s === "number" ? _s : status,
    detail: typeof detail === "string" ? detail : typeof body === "string" && body.length < 500 ? body : "",
    ...(typeof reason === "string" ? { reason } : {}),
    errors,
    extra,
  };
}

/** The words to show: the API's detail, and what the reason means and how to fix it. */
export function describeProblem(problem: Problem): string {
  const explained = reasonText(problem.reason);
  const prefix = problem.status === 409 ? "Conflict: " : problem.status === 422 && problem.reason ? "Not possible: " : "";
  const parts: string[] = [];
  if (explained && problem.reason) parts.push(explained.text);
  if (problem.detail) parts.push(problem.detail);
  if (!parts.length) parts.push(problem.title);
  if (explained?.fix) parts.push(explained.fix);
  if (problem.status === 401) parts.push("Your sign-in was not accepted; sign in again.");
  if (problem.status === 403) parts.push("Your account may not do this for this building.");
  return prefix + unique(parts).map(sentence).join(" ");
}

/** Field name → message, for showing each invalid field next to its control. */
export function fieldErrors(problem: Problem): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of problem.errors) {
    const prev = out.get(e.field);
    out.set(e.field, prev ? `${prev}; ${e.message}` : e.message);
  }
  return out;
}

function unique(items: string[]): string[] {
  const seen = new Set<string>();
  return items.filter((s) => {
    const key = s
      .toLowerCase()
      .replace(/\b(this|that|the)\b/g, "")
      .replace(/[^a-z0-9]+/g, "");
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function sentence(s: string): string {
  const t = s.trim();
  return /[.!?)]$/.test(t) ? t : `${t}.`;
}
