import { describe, expect, it } from "vitest";
import { buildingHref, formatRoute, isRouteHash, parseRoute } from "./router";

describe("parseRoute", () => {
  it("opens on the building list", () => {
    expect(parseRoute("")).toEqual({ name: "buildings" });
    expect(parseRoute("#/")).toEqual({ name: "buildings" });
    expect(parseRoute("#/buildings")).toEqual({ name: "buildings" });
  });

  it("reads a building page and its query", () => {
    expect(parseRoute("#/b/hq-1/bookings?date=2026-12-04")).toEqual({
      name: "building",
      building: "hq-1",
      page: "bookings",
      query: { date: "2026-12-04" },
    });
  });

  it("defaults a building to its Microsoft 365 page", () => {
    expect(parseRoute("#/b/hq")).toMatchObject({ name: "building", page: "m365" });
  });

  it("refuses unknown pages and bad building ids", () => {
    expect(parseRoute("#/b/hq/nope").name).toBe("notfound");
    expect(parseRoute("#/b/h%20q/m365").name).toBe("notfound");
    expect(parseRoute("#/b/%E0%A4%A/m365").name).toBe("notfound");
    expect(parseRoute("#/x").name).toBe("notfound");
  });

  it("round-trips through formatRoute", () => {
    const href = buildingHref("hq", "audit", { from: "2026-12-01T00:00", limit: "50", to: "" });
    expect(href).toBe("#/b/hq/audit?from=2026-12-01T00%3A00&limit=50");
    expect(formatRoute(parseRoute(href))).toBe(href);
  });
});

describe("isRouteHash", () => {
  it("tells our routes from MSAL responses and anchors", () => {
    expect(isRouteHash("#/b/hq/m365")).toBe(true);
    expect(isRouteHash("")).toBe(true);
    expect(isRouteHash("#code=abc&state=xyz")).toBe(false);
    expect(isRouteHash("#main")).toBe(false);
  });
});
