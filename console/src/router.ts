// Routing by location hash: #/buildings, #/b/{building}/{page}[?query]. Pure: parse and format only.

export const BUILDING_PAGES = [
  "m365",
  "resources",
  "people",
  "settings",
  "bookings",
  "analytics",
  "health",
  "checks",
  "audit",
] as const;
export type BuildingPage = (typeof BUILDING_PAGES)[number];

export const PAGE_TITLES: Record<BuildingPage, string> = {
  m365: "Microsoft 365",
  resources: "Resource sync",
  people: "Companies and users",
  settings: "Settings",
  bookings: "Bookings",
  analytics: "Analytics",
  health: "Sync health",
  checks: "Go-live check",
  audit: "Audit trail",
};

export type Route =
  | { name: "buildings" }
  | { name: "building"; building: string; page: BuildingPage; query: Record<string, string> }
  | { name: "notfound"; hash: string };

// The API's id rule (shared/api/openapi.py ID_SCHEMA).
const ID = /^[A-Za-z0-9._-]{1,64}$/;

export function isBuildingId(value: string): boolean {
  return ID.test(value);
}

/** Whether a hash is one of ours (`#/...` or empty), not an MSAL response or an in-page anchor. */
export function isRouteHash(hash: string): boolean {
  return hash === "" || hash === "#" || hash.startsWith("#/");
}

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, "");
  const [pathPart = "", queryPart = ""] = splitOnce(raw, "?");
  const query: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(queryPart)) query[k] = v;
  const parts = pathPart.split("/").filter((p) => p !== "");
  if (parts.length === 0 || (parts.length === 1 && parts[0] === "buildings")) {
    return { name: "buildings" };
  }
  if (parts[0] === "b" && parts.length >= 2 && parts.length <= 3) {
    const building = safeDecode(parts[1] ?? "");
    const page = parts[2] ?? "m365";
    if (building !== null && isBuildingId(building) && isBuildingPage(page)) {
      return { name: "building", building, page, query };
    }
  }
  return { name: "notfound", hash };
}

export function formatRoute(route: Route): string {
  switch (route.name) {
    case "buildings":
      return "#/buildings";
    case "notfound":
      return route.hash || "#/buildings";
    case "building": {
      const query = new URLSearchParams(
        Object.entries(route.query).filter(([, v]) => v !== ""),
      ).toString();
      return `#/b/${encodeURIComponent(route.building)}/${route.page}${query ? `?${query}` : ""}`;
    }
  }
}

export function buildingHref(building: string, page: BuildingPage, query: Record<string, string> = {}): string {
  return formatRoute({ name: "building", building, page, query });
}

export function routeTitle(route: Route): string {
  switch (route.name) {
    case "buildings":
      return "Buildings";
    case "notfound":
      return "Page not found";
    case "building":
      return PAGE_TITLES[route.page];
  }
}

function isBuildingPage(value: string): value is BuildingPage {
  return (BUILDING_PAGES as readonly string[]).includes(value);
}

function splitOnce(value: string, sep: string): [string, string] {
  const i = value.indexOf(sep);
  return i < 0 ? [value, ""] : [value.slice(0, i), value.slice(i + 1)];
}

function safeDecode(value: string): string | null {
  try {
    return decodeURIComponent(value);
  } catch {
    return null;
  }
}
