// Calendar dropdown contents: own, shared, and room mailboxes grouped by room list; rooms the
// connection cannot reach are listed disabled with why. Plus the save plan. Pure.

import { reasonText } from "./reasons";
import type { Calendar, Resource } from "./types";

export interface CalendarOption {
  key: string;
  label: string;
  calendarId: string | null;
  mailbox: string;
  disabled: boolean;
  why: string | null;
  mappedResourceId: string | null;
}

export interface CalendarGroup {
  label: string;
  options: CalendarOption[];
}

export function calendarKey(mailbox: string, calendarId: string): string {
  return `${mailbox.toLowerCase()}|${calendarId}`;
}

export function toOption(c: Calendar): CalendarOption {
  const usable = c.canEdit && c.id !== null;
  const why = usable ? null : (reasonText(c.reason ?? (c.id === null ? "access_denied" : "not_writable"))?.text ?? null);
  const owner = c.owner.address ?? c.mailbox;
  const base = c.kind === "room" || c.name === owner ? `${c.name} (${owner})` : `${c.name} (${owner})`;
  return {
    key: c.id === null ? `${c.mailbox.toLowerCase()}|` : calendarKey(c.mailbox, c.id),
    label: usable ? base : `${base}: unavailable, ${lowerFirst(why ?? "cannot be mapped")}`,
    calendarId: c.id,
    mailbox: c.mailbox,
    disabled: !usable,
    why,
    mappedResourceId: c.mappedResourceId ?? null,
  };
}

/**
 * Groups for the dropdown. `roomLists` maps a room list's name to its rooms (from
 * GET calendars?roomList=); rooms in no list and the account's own and shared calendars follow.
 */
export function groupCalendars(all: Calendar[], roomLists: { name: string; rooms: Calendar[] }[] = []): CalendarGroup[] {
  const groups: CalendarGroup[] = [];
  const seen = new Set<string>();
  const take = (label: string, calendars: Calendar[]) => {
    const options = calendars
      .map(toOption)
      .filter((o) => !seen.has(o.key))
      .sort((a, b) => a.label.localeCompare(b.label));
    options.forEach((o) => seen.add(o.key));
    if (options.length) groups.push({ label, options });
  };
  for (const list of roomLists) take(`Rooms: ${list.name}`, list.rooms);
  take(roomLists.length ? "Rooms in no room list" : "Rooms", all.filter((c) => c.kind === "room"));
  take("Own calendars", all.filter((c) => c.kind === "personal"));
  take("Shared with the account", all.filter((c) => c.kind === "shared"));
  return groups;
}

export type Change =
  | { resourceId: string; action: "map"; calendarId: string; mailbox: string }
  | { resourceId: string; action: "unmap" };

/** What Save does: unmaps first (so a calendar moved between two resources is free), then maps. */
export function planChanges(
  resources: Resource[],
  chosen: Map<string, CalendarOption | null>,
): Change[] {
  const unmaps: Change[] = [];
  const maps: Change[] = [];
  for (const r of resources) {
    if (!chosen.has(r.id) || r.paid) continue;
    const want = chosen.get(r.id) ?? null;
    const cal = r.sync?.calendar ?? null;
    const current = cal ? calendarKey(cal.mailbox ?? "", cal.id) : null;
    if (want === null) {
      if (current !== null) unmaps.push({ resourceId: r.id, action: "unmap" });
    } else if (want.key !== current && want.calendarId !== null) {
      maps.push({ resourceId: r.id, action: "map", calendarId: want.calendarId, mailbox: want.mailbox });
    }
  }
  return [...unmaps, ...maps];
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}
