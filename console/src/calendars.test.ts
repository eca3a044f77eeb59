import { describe, expect, it } from "vitest";
import { calendarKey, groupCalendars, planChanges, toOption } from "./calendars";
import type { Calendar, Resource } from "./types";

const room = (name: string, mailbox: string, extra: Partial<Calendar> = {}): Calendar => ({
  id: `cal-${name}`,
  name,
  owner: { name, address: mailbox },
  kind: "room",
  canEdit: true,
  mailbox,
  ...extra,
});

describe("groupCalendars", () => {
  it("groups rooms by room list, then other rooms, own and shared calendars", () => {
    const r1 = room("Alpha", "alpha@contoso.com");
    const r2 = room("Beta", "beta@contoso.com");
    const own = { ...room("Calendar", "admin@contoso.com"), kind: "personal" as const };
    const shared = { ...room("Team", "team@contoso.com"), kind: "shared" as const };
    const groups = groupCalendars([r1, r2, own, shared], [{ name: "Floor 1", rooms: [r1] }]);
    expect(groups.map((g) => g.label)).toEqual(["Rooms: Floor 1", "Rooms in no room list", "Own calendars", "Shared with the account"]);
    expect(groups[0]?.options.map((o) => o.mailbox)).toEqual(["alpha@contoso.com"]);
    expect(groups[1]?.options.map((o) => o.mailbox)).toEqual(["beta@contoso.com"]);
  });

  it("disables a room the connection cannot reach and says why", () => {
    const o = toOption(room("Gamma", "gamma@contoso.com", { id: null, canEdit: false, reason: "access_denied" }));
    expect(o.disabled).toBe(true);
    expect(o.why).toContain("may not read or write");
    expect(o.label).toContain("unavailable");
  });
});

describe("planChanges", () => {
  const res = (id: string, mapped: string | null, paid = false): Resource => ({
    id,
    name: id,
    kind: "room",
    paid,
    timeZone: "UTC",
    capacity: null,
    sync: {
      status: mapped ? "synced" : "not_synced",
      reason: null,
      calendar: mapped ? { id: `cal-${mapped}`, name: mapped, mailbox: `${mapped}@c.com` } : null,
      lastSyncAt: null,
      lagSeconds: null,
    },
  });

  it("unmaps before it maps and skips what did not change", () => {
    const a = toOption(room("a", "a@c.com"));
    const b = toOption(room("b", "b@c.com"));
    const chosen = new Map([
      ["r1", b],
      ["r2", null],
      ["r3", a],
      ["paid", a],
    ]);
    expect(planChanges([res("r1", "a"), res("r2", "b"), res("r3", "a"), res("paid", null, true)], chosen)).toEqual([
      { resourceId: "r2", action: "unmap" },
      { resourceId: "r1", action: "map", calendarId: "cal-b", mailbox: "b@c.com" },
    ]);
    expect(calendarKey("A@C.com", "x")).toBe("a@c.com|x");
  });
});
