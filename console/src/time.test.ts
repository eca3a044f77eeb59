import { describe, expect, it } from "vitest";
import {
  addDays,
  buildingZone,
  dayRange,
  formatDateTime,
  formatDuration,
  formatTime,
  isoZ,
  offsetMinutes,
  todayIn,
  utcToZonedInput,
  zoneLabel,
  zonedToUtc,
} from "./time";

const AMS = "Europe/Amsterdam";

describe("time zones", () => {
  it("knows the offset in winter and summer", () => {
    expect(offsetMinutes(AMS, new Date("2026-12-04T12:00:00Z"))).toBe(60);
    expect(offsetMinutes(AMS, new Date("2026-07-01T12:00:00Z"))).toBe(120);
    expect(offsetMinutes("America/New_York", new Date("2026-12-04T12:00:00Z"))).toBe(-300);
    expect(offsetMinutes("Asia/Kolkata", new Date("2026-12-04T12:00:00Z"))).toBe(330);
  });

  it("labels the zone", () => {
    expect(zoneLabel(AMS, new Date("2026-12-04T12:00:00Z"))).toBe("Europe/Amsterdam (UTC+01:00)");
    expect(zoneLabel("America/New_York", new Date("2026-12-04T12:00:00Z"))).toBe("America/New_York (UTC-05:00)");
  });

  it("formats in the building's zone, not the browser's", () => {
    expect(formatTime("2026-12-04T08:00:00Z", AMS)).toBe("09:00");
    expect(formatTime("2026-12-04T08:00:00Z", "Asia/Tokyo")).toBe("17:00");
    expect(formatDateTime("2026-12-04T08:00:05Z", AMS)).toBe("4 Dec 2026, 09:00:05");
    expect(formatDateTime(null, AMS)).toBe("never");
  });

  it("turns wall-clock times into instants and back", () => {
    expect(isoZ(zonedToUtc("2026-12-04T09:00", AMS))).toBe("2026-12-04T08:00:00Z");
    expect(isoZ(zonedToUtc("2026-07-01T09:00", AMS))).toBe("2026-07-01T07:00:00Z");
    expect(utcToZonedInput("2026-12-04T08:00:00Z", AMS)).toBe("2026-12-04T09:00");
  });

  it("gives a day as a UTC range, 23 hours on the spring DST day", () => {
    const d = dayRange("2026-12-04", AMS);
    expect(isoZ(d.from)).toBe("2026-12-03T23:00:00Z");
    expect(isoZ(d.to)).toBe("2026-12-04T23:00:00Z");
    const spring = dayRange("2026-03-29", AMS);
    expect((spring.to.getTime() - spring.from.getTime()) / 3600000).toBe(23);
  });

  it("knows today in the zone", () => {
    expect(todayIn("Asia/Tokyo", new Date("2026-12-04T20:00:00Z"))).toBe("2026-12-05");
    expect(todayIn(AMS, new Date("2026-12-04T20:00:00Z"))).toBe("2026-12-04");
    expect(addDays("2026-12-31", 1)).toBe("2027-01-01");
  });

  it("says durations in words", () => {
    expect(formatDuration(3)).toBe("3 s");
    expect(formatDuration(125)).toBe("2 min 5 s");
    expect(formatDuration(3660)).toBe("1 h 1 min");
    expect(formatDuration(null)).toBe("n/a");
  });

  it("takes the building's own zone, else the one most resources use", () => {
    expect(buildingZone({ timeZone: "Asia/Tokyo" }, [{ timeZone: AMS }])).toBe("Asia/Tokyo");
    expect(buildingZone(null, [{ timeZone: AMS }, { timeZone: "UTC" }, { timeZone: AMS }])).toBe(AMS);
    expect(buildingZone({ timeZone: "Not/AZone" }, [{ timeZone: AMS }])).toBe(AMS);
    expect(buildingZone(null, [], "UTC")).toBe("UTC");
    expect(buildingZone(null, [{ timeZone: "Not/AZone" }], "UTC")).toBe("UTC");
  });
});
