import { describe, expect, it } from "vitest";
import { dayRange } from "./time";
import { bookingLabel, hourMarks, layoutBlocks } from "./timeline";
import type { BookingItem } from "./types";

const AMS = "Europe/Amsterdam";
const day = dayRange("2026-12-04", AMS);
const booking = (over: Partial<BookingItem>): BookingItem => ({
  id: "b",
  source: "platform",
  status: "confirmed",
  resourceId: "r",
  start: "2026-12-04T11:00:00Z",
  end: "2026-12-04T12:00:00Z",
  ...over,
});

describe("timeline", () => {
  it("places a booking by its local time", () => {
    const [block] = layoutBlocks([booking({})], day.from, day.to, AMS);
    expect(block?.left).toBe(50); // 12:00 local
    expect(block?.width).toBe(4.17);
  });

  it("clamps a booking that started the day before and drops cancelled and released ones", () => {
    const blocks = layoutBlocks(
      [
        booking({ start: "2026-12-03T20:00:00Z", end: "2026-12-04T05:00:00Z" }),
        booking({ status: "cancelled" }),
        booking({ status: "released" }),
      ],
      day.from,
      day.to,
      AMS,
    );
    expect(blocks).toHaveLength(1);
    expect(blocks[0]?.left).toBe(0);
  });

  it("says source and attribution in words", () => {
    expect(
      bookingLabel(
        booking({ source: "outlook", title: null, attribution: { kind: "company", companyId: "contoso", userEmail: null, reason: "domain" } }),
        AMS,
      ),
    ).toBe("12:00–13:00 (subject not stored), Outlook booking, contoso (company by email domain)");
    expect(
      bookingLabel(
        booking({ source: "outlook", title: null, attribution: { kind: "company", companyId: "contoso", userEmail: null, reason: "domain" } }),
        AMS,
        new Map([["contoso", "Contoso Ltd"]]),
      ),
    ).toBe("12:00–13:00 (subject not stored), Outlook booking, Contoso Ltd (company by email domain)");
    expect(bookingLabel(booking({ title: "Standup", booker: { email: "a@c.com", name: "Ann" } }), AMS)).toBe(
      "12:00–13:00 Standup, Platform booking, booked by Ann",
    );
  });

  it("marks hours in the zone, also on a 25-hour day", () => {
    expect(hourMarks(day.from, day.to, AMS).map((m) => m.label)).toEqual(["00:00", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00"]);
    const autumn = dayRange("2026-10-25", AMS);
    expect((autumn.to.getTime() - autumn.from.getTime()) / 3600_000).toBe(25);
    expect(hourMarks(autumn.from, autumn.to, AMS).map((m) => m.label)).toContain("21:00");
  });
});
