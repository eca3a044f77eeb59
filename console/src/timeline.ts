// The bookings timeline's geometry and words. Pure.

import type { BookingItem } from "./types";
import { formatTime } from "./time";

export interface Block {
  booking: BookingItem;
  /** Percent of the day from its start, and width in percent (clamped to the day). */
  left: number;
  width: number;
  label: string;
}

/** Company names by id, so attribution reads "Contoso", not "contoso". */
export type CompanyNames = ReadonlyMap<string, string>;

export function layoutBlocks(
  bookings: BookingItem[],
  from: Date,
  to: Date,
  zone: string,
  companies: CompanyNames = new Map(),
): Block[] {
  const span = to.getTime() - from.getTime();
  return bookings
    .filter((b) => b.status !== "cancelled" && b.status !== "released")
    .map((b) => {
      const s = Math.max(new Date(b.start).getTime(), from.getTime());
      const e = Math.min(new Date(b.end).getTime(), to.getTime());
      const left = ((s - from.getTime()) / span) * 100;
      const width = Math.max(((e - s) / span) * 100, 0.6);
      return { booking: b, left: round(left), width: round(Math.min(width, 100 - left)), label: bookingLabel(b, zone, companies) };
    })
    .filter((b) => b.width > 0)
    .sort((a, b) => a.left - b.left);
}

const ATTRIBUTION_WORDS: Record<string, string> = {
  user: "registered user",
  company: "company by email domain",
  default_user: "the default user",
  unattributed: "not attributed",
};

export function attributionText(b: BookingItem, companies: CompanyNames = new Map()): string {
  const a = b.attribution;
  if (!a) return b.source === "platform" && b.booker ? `booked by ${b.booker.name}` : "";
  const company = a.companyId ? (companies.get(a.companyId) ?? a.companyId) : null;
  const who = a.userEmail ?? company ?? "";
  const kind = ATTRIBUTION_WORDS[a.kind] ?? a.kind;
  if (a.kind === "unattributed") return a.reason ? `not attributed (${a.reason.replace(/_/g, " ")})` : "not attributed";
  return `${who} (${kind})`;
}

export function sourceText(b: BookingItem): string {
  return b.source === "outlook" ? "Outlook" : "Platform";
}

export function bookingLabel(b: BookingItem, zone: string, companies: CompanyNames = new Map()): string {
  const time = `${formatTime(b.start, zone)}–${formatTime(b.end, zone)}`;
  const title = b.title ? ` ${b.title}` : b.source === "outlook" ? " (subject not stored)" : "";
  const by = attributionText(b, companies);
  return `${time}${title}, ${sourceText(b)} booking${by ? `, ${by}` : ""}`;
}

/** Hour marks for the scale: every `step` hours, positioned in percent (DST days stay right). */
export function hourMarks(from: Date, to: Date, zone: string, step = 3): { left: number; label: string }[] {
  const span = to.getTime() - from.getTime();
  const marks: { left: number; label: string }[] = [];
  for (let t = from.getTime(); t < to.getTime(); t += 3600_000) {
    const label = formatTime(new Date(t).toISOString(), zone);
    if (Number(label.slice(0, 2)) % step === 0 && label.endsWith(":00")) marks.push({ left: round(((t - from.getTime()) / span) * 100), label });
  }
  return marks;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
