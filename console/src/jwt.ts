// Reading (never verifying: the API does that) an access token's payload for display decisions.

export type Claims = Record<string, unknown>;

export function decodePayload(token: string): Claims | null {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const value: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Claims) : null;
  } catch {
    return null;
  }
}

/** The `buildings` claim, a list or comma-separated string (as shared/api/auth.py reads it). */
export function buildingsOf(claims: Claims | null): string[] {
  const raw = claims?.["buildings"];
  const items = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(",") : [];
  const out = items.map((b) => String(b).trim()).filter((b) => b !== "");
  return [...new Set(out)].sort();
}

export function rolesOf(claims: Claims | null): string[] {
  const raw = claims?.["roles"];
  return Array.isArray(raw) ? raw.map(String) : [];
}
