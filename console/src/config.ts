// GET /api/console/config.json: the contract between the console and the app that serves it.

export interface ConsoleConfig {
  clientId: string;
  authority: string;
  scopes: string[];
  redirectUri: string;
  apiBase: string;
  knownAuthorities: string[];
}

export function parseConfig(value: unknown): ConsoleConfig {
  const v = (value ?? {}) as Record<string, unknown>;
  const missing: string[] = [];
  const str = (k: string): string => {
    const x = v[k];
    if (typeof x !== "string" || x === "") missing.push(k);
    return typeof x === "string" ? x : "";
  };
  const list = (k: string): string[] => {
    const x = v[k];
    if (!Array.isArray(x) || x.some((i) => typeof i !== "string")) missing.push(k);
    return Array.isArray(x) ? x.map(String) : [];
  };
  const config = {
    clientId: str("clientId"),
    authority: str("authority"),
    scopes: list("scopes"),
    redirectUri: str("redirectUri"),
    apiBase: typeof v["apiBase"] === "string" ? v["apiBase"] : "/api",
    knownAuthorities: list("knownAuthorities"),
  };
  if (missing.length) throw new Error(`config.json lacks ${missing.join(", ")}`);
  return config;
}

export async function loadConfig(fetchFn: typeof fetch = fetch): Promise<ConsoleConfig> {
  const response = await fetchFn("config.json", { cache: "no-store", credentials: "omit" });
  if (!response.ok) throw new Error(`config.json answered ${response.status}`);
  return parseConfig(await response.json());
}
