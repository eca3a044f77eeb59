import { describe, expect, it } from "vitest";

import { analyticsRange, csvFileName, daysBetween, minutes, percent } from "./analytics";

describe("analytics page parts", () => {
  it("defaults to the four closed weeks up to yesterday, grouped by day", () => {
    expect(analyticsRange({}, "2026-03-30")).toEqual({ from: "2026-03-02", to: "2026-03-29", groupBy: "day" });
    expect(analyticsRange({ from: "2026-01-01", to: "2026-12-31", groupBy: "company" }, "2026-03-30")).toEqual({
      from: "2026-01-01",
      to: "2026-12-31",
      groupBy: "company",
    });
    expect(analyticsRange({ groupBy: "floor" }, "2026-03-30").groupBy).toBe("day");
  });

  it("counts days with both ends included, across a DST change", () => {
    expect(daysBetween("2026-03-29", "2026-03-29")).toBe(1);
    expect(daysBetween("2026-03-01", "2026-03-31")).toBe(31);
    expect(daysBetween("2026-01-01", "2026-12-31")).toBe(365);
  });

  it("formats rates and minutes, saying n/a where there is nothing to divide", () => {
    expect([percent(0.1234), percent(1), percent(null)]).toEqual(["12.3%", "100%", "n/a"]);
    expect([minutes(0), minutes(45), minutes(90), minutes(null)]).toEqual(["0 min", "45 min", "1 h 30 min", "n/a"]);
  });

  it("names the CSV after the building, the range and the grouping", () => {
    expect(csvFileName("hq", "2026-01-01", "2026-01-31", "week")).toBe("analytics-hq-2026-01-01-to-2026-01-31-by-week.csv");
  });
});
