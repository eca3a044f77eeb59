// Times in the building's time zone (IANA), always shown with the zone. Pure, via Intl.

const parts = (zone: string) =>
  new Intl.DateTimeFormat("en-GB", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });

function fields(date: Date, zone: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of parts(zone).formatToParts(date)) if (p.type !== "literal") out[p.type] = Number(p.value);
  return out;
}

/** The zone's offset from UTC at that instant, in minutes (Amsterdam in winter: 60). */
export function offsetMinutes(zone: string, date: Date): number {
  const f = fields(date, zone);
  const asUtc = Date.UTC(f["year"] ?? 0, (f["month"] ?? 1) - 1, f["day"] ?? 1, f["hour"] ?? 0, f["minute"] ?? 0, f["second"] ?? 0);
  return Math.round((asUtc - Math.floor(date.getTime() / 1000) * 1000) / 60000);
}

export function isValidZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-GB", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? "-" : "+";
  const m = Math.abs(minutes);
  return `UTC${sign}${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
}

/** "Europe/Amsterdam (UTC+01:00)": the zone, shown next to every time. */
export function zoneLabel(zone: string, at: Date = new Date()): string {
  return `${zone} (${formatOffset(offsetMinutes(zone, at))})`;
}

export function formatTime(iso: string, zone: string): string {
  return new Intl.DateTimeFormat("en-GB", { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(
    new Date(iso),
  );
}

export function formatDateTime(iso: string | null | undefined, zone: string): string {
  if (!iso) return "never";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return new Intl.DateTimeFormat("en-GB", {
    timeZone: zone,
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  }).format(d);
}

/** "2026-12-04" today in the zone. */
export function todayIn(zone: string, now: Date = new Date()): string {
  const f = fields(now, zone);
  return `${f["year"]}-${pad(f["month"])}-${pad(f["day"])}`;
}

/** A wall-clock time in the zone ("2026-12-04T09:00") as the UTC instant it names. */
export function zonedToUtc(local: string, zone: string): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(local);
  if (!m) throw new RangeError(`not a local date-time: ${local}`);
  const [, y, mo, d, hh = "0", mm = "0", ss = "0"] = m;
  const guess = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(hh), Number(mm), Number(ss));
  let t = guess - offsetMinutes(zone, new Date(guess)) * 60000;
  t = guess - offsetMinutes(zone, new Date(t)) * 60000; // settles across a DST change
  return new Date(t);
}

/** A UTC instant as the zone's wall-clock "YYYY-MM-DDTHH:mm" (for datetime-local inputs). */
export function utcToZonedInput(iso: string, zone: string): string {
  const f = fields(new Date(iso), zone);
  return `${f["year"]}-${pad(f["month"])}-${pad(f["day"])}T${pad(f["hour"])}:${pad(f["minute"])}`;
}

/** One local day in the zone as a UTC range: 23 or 25 hours on DST days. */
export function dayRange(date: string, zone: string): { from: Date; to: Date } {
  const from = zonedToUtc(date, zone);
  const next = new Date(Date.UTC(Number(date.slice(0, 4)), Number(date.slice(5, 7)) - 1, Number(date.slice(8, 10)) + 1));
  const to = zonedToUtc(next.toISOString().slice(0, 10), zone);
  return { from, to };
}

export function addDays(date: string, days: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** RFC 3339 in UTC, whole seconds ("2026-12-04T08:00:00Z"), as the API prefers. */
export function isoZ(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "n/a";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60 ? `${s % 60} s` : ""}`.trim();
  const h = Math.floor(s / 3600);
  const min = Math.floor((s % 3600) / 60);
  return h < 48 ? `${h} h${min ? ` ${min} min` : ""}` : `${Math.floor(h / 24)} days`;
}

/** The building's zone: the one the building states (GET /buildings/{b}); else the one most of its
 * resources use; else the browser's. */
export function buildingZone(
  building: { timeZone?: string | null } | null,
  resources: { timeZone?: string | null }[],
  fallback?: string,
): string {
  if (building?.timeZone && isValidZone(building.timeZone)) return building.timeZone;
  const counts = new Map<string, number>();
  for (const r of resources) if (r.timeZone && isValidZone(r.timeZone)) counts.set(r.timeZone, (counts.get(r.timeZone) ?? 0) + 1);
  let best: string | null = null;
  for (const [zone, n] of counts) if (best === null || n > (counts.get(best) ?? 0)) best = zone;
  return best ?? fallback ?? Intl.DateTimeFormat().resolvedOptions().timeZone ?? "UTC";
}

function pad(n: number | undefined): string {
  return String(n ?? 0).padStart(2, "0");
}
